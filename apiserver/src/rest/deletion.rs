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

/// The plan for deleting `obj` (a `res`) with the request's `grace` (gracePeriodSeconds) at `now`.
pub fn plan(res: &Resource, obj: &Value, grace: Option<i64>, now: jiff::Timestamp) -> Plan {
    let grace = grace.map(|g| if g < 0 { 1 } else { g });
    let finalizers = has_finalizers(obj);
    let since = obj.pointer("/metadata/deletionTimestamp").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok());
    if let Some(at) = since {
        let current = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
        return match grace {
            _ if current <= 0 => {
                if finalizers {
                    Plan::Keep
                } else {
                    Plan::Delete
                }
            }
            Some(0) if !finalizers => Plan::Delete,
            Some(p) if p < current => Plan::Mark(marked(obj, at - jiff::SignedDuration::from_secs(current - p), p, false)),
            _ => Plan::Keep,
        };
    }
    match res.strategy.deletion(obj, grace) {
        Deletion::Graceful(p) if p > 0 => Plan::Mark(marked(obj, now + jiff::SignedDuration::from_secs(p), p, true)),
        _ if finalizers => Plan::Mark(marked(obj, now, 0, false)),
        _ => Plan::Delete,
    }
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
        let Plan::Mark(m) = plan(res("pods"), &bound, None, now) else { panic!("graceful") };
        assert_eq!(m["metadata"]["deletionTimestamp"], "2030-01-01T00:00:30Z");
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        // Deleting again: kept as it is, unless the grace is shorter.
        assert_eq!(plan(res("pods"), &m, None, now), Plan::Keep);
        assert_eq!(plan(res("pods"), &m, Some(30), now), Plan::Keep);
        let Plan::Mark(short) = plan(res("pods"), &m, Some(10), now) else { panic!("shortened") };
        assert_eq!(
            (short["metadata"]["deletionTimestamp"].clone(), short["metadata"]["deletionGracePeriodSeconds"].clone()),
            (json!("2030-01-01T00:00:10Z"), json!(10))
        );
        assert_eq!(plan(res("pods"), &m, Some(0), now), Plan::Delete, "the kubelet's final delete");
        let unbound = json!({"metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(plan(res("pods"), &unbound, None, now), Plan::Delete);
        assert_eq!(plan(res("pods"), &bound, Some(0), now), Plan::Delete);
        assert!(matches!(plan(res("pods"), &bound, Some(-5), now), Plan::Mark(ref v) if v["metadata"]["deletionGracePeriodSeconds"] == 1));
    }

    #[test]
    fn finalizers_hold_an_object_with_grace_zero() {
        let now = t("2030-01-01T00:00:00Z");
        let cm = json!({"metadata": {"name": "c", "finalizers": ["f"]}});
        let Plan::Mark(m) = plan(res("configmaps"), &cm, None, now) else { panic!("marked") };
        assert_eq!(
            (m["metadata"]["deletionTimestamp"].clone(), m["metadata"]["deletionGracePeriodSeconds"].clone()),
            (json!("2030-01-01T00:00:00Z"), json!(0))
        );
        assert_eq!(plan(res("configmaps"), &m, None, now), Plan::Keep);
        assert_eq!(plan(res("configmaps"), &json!({"metadata": {"name": "c"}}), Some(30), now), Plan::Delete);
        let bound = json!({"metadata": {"name": "p", "finalizers": ["f"]}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}});
        let Plan::Mark(g) = plan(res("pods"), &bound, None, now) else { panic!("graceful") };
        assert!(
            matches!(plan(res("pods"), &g, Some(0), now), Plan::Mark(ref v) if v["metadata"]["deletionGracePeriodSeconds"] == 0),
            "finalizers keep it"
        );
    }

    #[test]
    fn grace_comes_from_the_body_then_the_query() {
        assert_eq!(grace_of(Some(&json!({"gracePeriodSeconds": 0})), Some("30")).ok(), Some(Some(0)));
        assert_eq!(grace_of(None, Some("30")).ok(), Some(Some(30)));
        assert_eq!(grace_of(Some(&json!({})), None).ok(), Some(None));
        assert!(grace_of(Some(&json!({"gracePeriodSeconds": "x"})), None).is_err());
    }
}
