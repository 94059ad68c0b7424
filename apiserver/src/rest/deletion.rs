//! What a DELETE does to one object, without I/O (kube-apiserver's `rest.BeforeDelete` and the
//! store's graceful-deletion and finalizer steps). Every delete path uses it: DELETE of an
//! object, deletecollection, eviction and the dependents the garbage collection deletes.
//!
//! - Not yet being deleted: the kind's [`Deletion`] decides. `Graceful(p)` marks the object
//!   (`deletionTimestamp` = now + p, `deletionGracePeriodSeconds` = p, generation + 1): a pod
//!   stays, Terminating, until its kubelet deletes it with grace 0. `Now` deletes it, unless
//!   finalizers remain: then it is marked with grace 0 until they are gone.
//! - Already being deleted with grace p > 0: a shorter grace shortens it (0: gone now, without
//!   finalizers); anything else leaves it as it is.
//! - Already being deleted with grace 0 (finalizers): stays until they are gone.
//!
//! When the controller-manager's garbage collector does the cascade, a DELETE also leaves the
//! finalizers its propagation asks for (`orphan`, `foregroundDeletion`; kube's
//! deletionFinalizersForGarbageCollection), so the object stays until the collector is done.
//!
//! A negative grace period is 1, as in Kubernetes.

use crate::registry::Resource;
use crate::registry::strategy::Deletion;
use serde_json::{Value, json};

/// What to do.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Nothing changes: answer with the object as it is.
    Keep,
    /// Store this: the object marked for deletion (graceful, or waiting for finalizers).
    Mark(Value),
    /// Delete it now.
    Delete,
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn marked(obj: &Value, at: jiff::Timestamp, grace: i64, bump: bool) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("deletionTimestamp".into(), json!(stamp(at)));
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if let Some(g) = m.get("generation").and_then(Value::as_i64).filter(|g| bump && *g > 0) {
            m.insert("generation".into(), json!(g + 1));
        }
    }
    out
}

/// How a DELETE asks for dependents to be treated: its explicit `propagationPolicy` and the
/// deprecated `orphanDependents`, when given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Propagation {
    /// `Orphan`, `Background` or `Foreground`, when given.
    pub policy: Option<String>,
    /// `orphanDependents`, when given.
    pub orphan: Option<bool>,
}

/// The finalizer that has the garbage collector orphan an object's dependents first.
pub const ORPHAN: &str = "orphan";
/// The finalizer that has the garbage collector delete an object's dependents first.
pub const FOREGROUND: &str = "foregroundDeletion";

fn finalizer_list(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

impl Propagation {
    /// kube's shouldOrphanDependents / shouldDeleteDependents.
    fn wants(&self, finalizers: &[String]) -> (bool, bool) {
        if let Some(o) = self.orphan {
            return (o, false);
        }
        match self.policy.as_deref() {
            Some("Orphan") => (true, false),
            Some("Foreground") => (false, true),
            Some(_) => (false, false),
            None => match finalizers.iter().find(|f| *f == ORPHAN || *f == FOREGROUND) {
                Some(f) if f == ORPHAN => (true, false),
                Some(_) => (false, true),
                None => (false, false),
            },
        }
    }

    /// The finalizers a DELETE leaves for the garbage collector (kube's
    /// deletionFinalizersForGarbageCollection): the object's own, with `orphan` or
    /// `foregroundDeletion` as asked; None when that is what it has.
    pub fn finalizers(&self, obj: &Value) -> Option<Vec<String>> {
        let current = finalizer_list(obj);
        let (orphan, foreground) = self.wants(&current);
        let mut out: Vec<String> = current.iter().filter(|f| *f != ORPHAN && *f != FOREGROUND).cloned().collect();
        if orphan {
            out.push(ORPHAN.into());
        }
        if foreground {
            out.push(FOREGROUND.into());
        }
        let same = out.len() == current.len() && out.iter().all(|f| current.contains(f));
        (!same).then_some(out)
    }
}

fn with_finalizers(obj: &Value, finalizers: &[String]) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("finalizers".into(), json!(finalizers));
    }
    out
}

/// The plan for deleting `obj` (a `res`) with the request's `grace` (gracePeriodSeconds) at
/// `now`; with `gc` (the controller-manager's garbage collector does the cascade) the
/// finalizers the request's propagation asks for are part of it.
pub fn plan(res: &Resource, obj: &Value, grace: Option<i64>, now: jiff::Timestamp, gc: Option<&Propagation>) -> Plan {
    let grace = grace.map(|g| if g < 0 { 1 } else { g });
    let since = obj.pointer("/metadata/deletionTimestamp").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let current = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
    if let Some(at) = since
        && current > 0
    {
        // Graceful deletion pending: only a shorter grace changes it (not the finalizers).
        let finalizers = has_finalizers(obj);
        return match grace {
            Some(0) if !finalizers => Plan::Delete,
            Some(p) if p < current => Plan::Mark(marked(obj, at - jiff::SignedDuration::from_secs(current - p), p, false)),
            _ => Plan::Keep,
        };
    }
    let update = gc.and_then(|p| p.finalizers(obj));
    let obj = &update.as_deref().map_or_else(|| obj.clone(), |f| with_finalizers(obj, f));
    let finalizers = has_finalizers(obj);
    if since.is_some() {
        return match (finalizers, update.is_some()) {
            (true, true) => Plan::Mark(obj.clone()),
            (true, false) => Plan::Keep,
            (false, _) => Plan::Delete,
        };
    }
    match res.strategy.deletion(obj, grace) {
        Deletion::Graceful(p) if p > 0 => Plan::Mark(marked(obj, now + jiff::SignedDuration::from_secs(p), p, true)),
        _ if finalizers => Plan::Mark(marked(obj, now, 0, false)),
        _ => Plan::Delete,
    }
}

/// The request's explicit propagation: the DeleteOptions body's `propagationPolicy` (else the
/// query's) and `orphanDependents`.
pub fn propagation_of(opts: Option<&Value>, query: Option<&str>) -> Result<Propagation, crate::error::ApiError> {
    let policy = opts.and_then(|o| o.get("propagationPolicy")).and_then(Value::as_str).or(query).filter(|p| !p.is_empty());
    if let Some(p) = policy.filter(|p| !matches!(*p, "Orphan" | "Background" | "Foreground")) {
        return Err(crate::error::ApiError::BadRequest(format!("unknown propagationPolicy {p:?}: Orphan, Background or Foreground")));
    }
    let orphan = opts.and_then(|o| o.get("orphanDependents")).and_then(Value::as_bool);
    if policy.is_some() && orphan.is_some() {
        return Err(crate::error::ApiError::BadRequest("orphanDependents and propagationPolicy cannot both be set".into()));
    }
    Ok(Propagation { policy: policy.map(str::to_string), orphan })
}

/// The request's `gracePeriodSeconds`: the DeleteOptions body's, else the query's.
pub fn grace_of(opts: Option<&Value>, query: Option<&str>) -> Result<Option<i64>, crate::error::ApiError> {
    if let Some(g) = opts.and_then(|o| o.get("gracePeriodSeconds")).filter(|g| !g.is_null()) {
        return g.as_i64().map(Some).ok_or_else(|| crate::error::ApiError::BadRequest("gracePeriodSeconds must be an integer".into()));
    }
    match query {
        None | Some("") => Ok(None),
        Some(q) => q.parse::<i64>().map(Some).map_err(|_| crate::error::ApiError::BadRequest(format!("invalid gracePeriodSeconds {q:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(plural: &str) -> &'static Resource {
        crate::registry::find("", "v1", plural).unwrap_or_else(|| panic!("{plural} served"))
    }

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn deletes_follow_kubernetes_graceful_deletion() {
        let now = t("2030-01-01T00:00:00Z");
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
        let Plan::Mark(m) = plan(res("pods"), &bound, None, now, None) else { panic!("graceful") };
        assert_eq!(m["metadata"]["deletionTimestamp"], "2030-01-01T00:00:30Z");
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        // Deleting again: kept as it is, unless the grace is shorter.
        assert_eq!(plan(res("pods"), &m, None, now, None), Plan::Keep);
        assert_eq!(plan(res("pods"), &m, Some(30), now, None), Plan::Keep);
        let Plan::Mark(short) = plan(res("pods"), &m, Some(10), now, None) else { panic!("shortened") };
        assert_eq!(
            (short["metadata"]["deletionTimestamp"].clone(), short["metadata"]["deletionGracePeriodSeconds"].clone()),
            (json!("2030-01-01T00:00:10Z"), json!(10))
        );
        assert_eq!(plan(res("pods"), &m, Some(0), now, None), Plan::Delete, "the kubelet's final delete");
        let unbound = json!({"metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(plan(res("pods"), &unbound, None, now, None), Plan::Delete);
        assert_eq!(plan(res("pods"), &bound, Some(0), now, None), Plan::Delete);
        assert!(
            matches!(plan(res("pods"), &bound, Some(-5), now, None), Plan::Mark(ref v) if v["metadata"]["deletionGracePeriodSeconds"] == 1)
        );
    }

    #[test]
    fn finalizers_hold_an_object_with_grace_zero() {
        let now = t("2030-01-01T00:00:00Z");
        let cm = json!({"metadata": {"name": "c", "finalizers": ["f"]}});
        let Plan::Mark(m) = plan(res("configmaps"), &cm, None, now, None) else { panic!("marked") };
        assert_eq!(
            (m["metadata"]["deletionTimestamp"].clone(), m["metadata"]["deletionGracePeriodSeconds"].clone()),
            (json!("2030-01-01T00:00:00Z"), json!(0))
        );
        assert_eq!(plan(res("configmaps"), &m, None, now, None), Plan::Keep);
        assert_eq!(plan(res("configmaps"), &json!({"metadata": {"name": "c"}}), Some(30), now, None), Plan::Delete);
        let bound = json!({"metadata": {"name": "p", "finalizers": ["f"]}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}});
        let Plan::Mark(g) = plan(res("pods"), &bound, None, now, None) else { panic!("graceful") };
        assert!(
            matches!(plan(res("pods"), &g, Some(0), now, None), Plan::Mark(ref v) if v["metadata"]["deletionGracePeriodSeconds"] == 0),
            "finalizers keep it"
        );
    }

    #[test]
    fn with_the_collector_a_delete_leaves_the_finalizers_its_propagation_asks_for() {
        let now = t("2030-01-01T00:00:00Z");
        let gc = |policy: Option<&str>, orphan: Option<bool>| Propagation { policy: policy.map(str::to_string), orphan };
        let cm = json!({"metadata": {"name": "c", "finalizers": ["mine"]}});
        let Plan::Mark(m) = plan(res("configmaps"), &cm, None, now, Some(&gc(Some("Orphan"), None))) else { panic!("marked") };
        assert_eq!(m["metadata"]["finalizers"], json!(["mine", "orphan"]));
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 0);
        let bare = json!({"metadata": {"name": "c"}});
        let Plan::Mark(f) = plan(res("configmaps"), &bare, None, now, Some(&gc(Some("Foreground"), None))) else { panic!("marked") };
        assert_eq!(f["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        assert_eq!(plan(res("configmaps"), &bare, None, now, Some(&gc(Some("Background"), None))), Plan::Delete, "the collector follows");
        assert_eq!(plan(res("configmaps"), &bare, None, now, Some(&gc(None, None))), Plan::Delete);
        // A second DELETE with the other policy swaps them; one with none leaves them.
        let Plan::Mark(swapped) = plan(res("configmaps"), &f, None, now, Some(&gc(None, Some(true)))) else { panic!("swapped") };
        assert_eq!(swapped["metadata"]["finalizers"], json!(["orphan"]));
        assert_eq!(plan(res("configmaps"), &f, None, now, Some(&gc(None, None))), Plan::Keep);
    }

    #[test]
    fn grace_comes_from_the_body_then_the_query() {
        assert_eq!(grace_of(Some(&json!({"gracePeriodSeconds": 0})), Some("30")).ok(), Some(Some(0)));
        assert_eq!(grace_of(None, Some("30")).ok(), Some(Some(30)));
        assert_eq!(grace_of(Some(&json!({})), None).ok(), Some(None));
        assert!(grace_of(Some(&json!({"gracePeriodSeconds": "x"})), None).is_err());
    }
}
