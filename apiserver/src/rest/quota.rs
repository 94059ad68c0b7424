//! ResourceQuota admission without races (access/INTEGRATION.md §4.1; on by default, as kube's):
//! the quota check and the object's write are one guarded etcd Txn.
//!
//! Invariants:
//! - A create in a namespace with quotas reads them (with their mod_revisions), asks
//!   keel-access which to charge ([`keel_access::admission::quota::check`], kube's arithmetic
//!   and 403s), and writes each charged quota's new `status.used` in the object's Txn, each
//!   guarded by the revision it was read at. Two creates racing for the last unit both
//!   compute `used = hard`; one Txn holds, the other finds a quota changed, reads again and
//!   gets `exceeded quota`. So `status.used` is never behind or ahead of what is stored
//!   (stricter than kube, whose admission writes the quota first and the object second).
//! - A delete gives back, in its Txn, what the object used; a pod update that makes it
//!   terminal gives back its compute usage (kube's controller would, later). A pod is given
//!   back what it was charged: its deletion grace period does not count here.
//! - A quota's create or spec change sets `status.hard = spec.hard` and recomputes
//!   `status.used` from the store (pods of the namespace, counts of the objects named), so a
//!   new quota enforces at once.
//! - Whether a namespace has quotas at all is asked of the watch cache (so a quota created a
//!   moment ago may miss a write racing with it, as kube's informer-fed admission may); the
//!   quotas themselves are read from the store.
//! - Events are not charged (kube's default `count/events` is only counted if asked); nor
//!   are ResourceQuotas themselves.

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::{self, Resource, meta};
use crate::rest::Api;
use crate::storage::{GuardedPut, Stored, decode, keys};
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use keel_access::admission::quantity::Quantity;
use keel_access::admission::quota::{self as core, Charge, Subject};
use keel_access::admission::resources::{ResourceList, to_kube};
use serde_json::{Value, json};

/// Whether the quota machinery looks at writes of `res`.
fn charged(api: &Api, res: &Resource) -> bool {
    api.admission_plugins.contains("ResourceQuota") && res.namespaced && res.plural != "resourcequotas" && res.kind != "Event"
}

/// The namespace's quotas, as stored (with their revisions) and typed. The watch cache says
/// first whether there are any (most namespaces have none, and most writes then cost nothing);
/// when it holds some, the store is read, so the revisions the Txn guards are current.
async fn quotas(api: &Api, ns: &str) -> Result<Vec<(Stored, ResourceQuota)>, ApiError> {
    let prefix = format!("/registry/resourcequotas/{ns}/");
    if let Some(res) = registry::find("", "v1", "resourcequotas")
        && !api.caches.of(res).await?.any_under(&prefix)
    {
        return Ok(Vec::new());
    }
    let (kvs, _) = api.store.list_all(&prefix).await?;
    let mut out = Vec::new();
    for s in kvs {
        let mut q: ResourceQuota =
            serde_json::from_value(decode(&s)?).map_err(|e| ApiError::Store(format!("stored resourcequota: {e}")))?;
        q.metadata.resource_version = Some(s.mod_revision.to_string());
        out.push((s, q));
    }
    Ok(out)
}

fn pod_of(obj: &Value) -> Result<Pod, ApiError> {
    serde_json::from_value(obj.clone()).map_err(|e| ApiError::BadRequest(format!("ResourceQuota: {e}")))
}

/// What `obj` (of `res`) uses; for pods, also the pod (quota scopes select pods). `charged`:
/// what it was charged (deletion grace not counted).
fn usage(res: &Resource, obj: &Value, now: jiff::Timestamp, was_charged: bool) -> Result<(Option<Pod>, ResourceList), ApiError> {
    if res.group.is_empty() && res.plural == "pods" {
        let pod = pod_of(obj)?;
        let mut seen = pod.clone();
        if was_charged {
            seen.metadata.deletion_timestamp = None;
        }
        let u = core::pod_usage(&seen, now).map_err(ApiError::Access)?;
        return Ok((Some(pod), u));
    }
    Ok((None, core::object_count_usage(res.group, res.plural)))
}

/// The quota writes of `charges` (new `status.used` each), guarded by the revisions read.
fn puts(found: &[(Stored, ResourceQuota)], charges: Vec<Charge>) -> Result<Vec<GuardedPut>, ApiError> {
    let mut out = Vec::new();
    for c in charges {
        let Some((stored, _)) = found.iter().find(|(_, q)| q.metadata.name.as_deref() == Some(c.name.as_str())) else { continue };
        let mut v = decode(stored)?;
        let used = serde_json::to_value(to_kube(&c.used)).map_err(|e| ApiError::Store(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            let status = o.entry("status").or_insert_with(|| json!({}));
            if let Some(st) = status.as_object_mut() {
                st.insert("used".into(), used);
            }
        }
        out.push(GuardedPut { key: stored.key.clone(), revision: stored.mod_revision, value: meta::for_store(&v) });
    }
    Ok(out)
}

/// The quota writes a create of `obj` needs, or kube's 403 when a quota would be exceeded.
/// Read afresh on every attempt of the create's Txn.
pub async fn charge_create(api: &Api, call: &Call, obj: &Value) -> Result<Vec<GuardedPut>, ApiError> {
    let res = call.target.res;
    let Some(ns) = call.target.namespace.as_deref().filter(|_| charged(api, res)) else { return Ok(Vec::new()) };
    let found = quotas(api, ns).await?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let (pod, usage) = usage(res, obj, api.clock.now(), false)?;
    let subject = pod.as_ref().map_or(Subject::Other, Subject::Pod);
    let md: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
        serde_json::from_value(obj.get("metadata").cloned().unwrap_or_default()).unwrap_or_default();
    let typed: Vec<ResourceQuota> = found.iter().map(|(_, q)| q.clone()).collect();
    let charges = core::check(&typed, subject, &usage, None, (res.group, res.plural), &md).map_err(ApiError::Access)?;
    puts(&found, charges)
}

/// The quota writes that give back what `old` used, when it is deleted (`new` None) or
/// updated to `new` (only pods shrink: when they become terminal).
pub async fn release(api: &Api, call: &Call, old: &Value, new: Option<&Value>) -> Result<Vec<GuardedPut>, ApiError> {
    let res = call.target.res;
    let ns = old.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    if ns.is_empty() || !charged(api, res) || (new.is_some() && res.plural != "pods") {
        return Ok(Vec::new());
    }
    let now = api.clock.now();
    let (pod, before) = usage(res, old, now, true)?;
    let after = match new {
        Some(n) => usage(res, n, now, true)?.1,
        None => ResourceList::new(),
    };
    let freed: ResourceList = before
        .iter()
        .map(|(k, v)| (k, *v, after.get(k).copied().unwrap_or(Quantity::ZERO)))
        .filter(|(_, v, a)| a < v)
        .map(|(k, v, a)| (k.clone(), v - a))
        .collect();
    if freed.is_empty() {
        return Ok(Vec::new());
    }
    let found = quotas(api, ns).await?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let typed: Vec<ResourceQuota> = found.iter().map(|(_, q)| q.clone()).collect();
    let subject = pod.as_ref().map_or(Subject::Other, Subject::Pod);
    puts(&found, core::release(&typed, subject, &freed).map_err(ApiError::Access)?)
}

/// The served resource a quota's `count/<resource>[.<group>]` or legacy name counts.
fn counted(name: &str) -> Option<&'static Resource> {
    let (plural, group) = match name.strip_prefix("count/") {
        Some(rest) => rest.split_once('.').unwrap_or((rest, "")),
        None if matches!(name, "services" | "secrets" | "configmaps" | "persistentvolumeclaims" | "replicationcontrollers") => (name, ""),
        None => return None,
    };
    if plural == "pods" {
        return None;
    }
    registry::RESOURCES.iter().find(|r| r.plural == plural && r.group == group)
}

/// A quota being created or updated (not through `/status`): `status.hard` is its
/// `spec.hard` and `status.used` is recomputed from what the namespace holds.
pub async fn fill_status(api: &Api, call: &Call, quota: &mut Value) -> Result<(), ApiError> {
    let res = call.target.res;
    if !(res.group.is_empty() && res.plural == "resourcequotas") || call.target.sub.is_some() {
        return Ok(());
    }
    let ns = quota.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    let q: ResourceQuota = serde_json::from_value(quota.clone()).map_err(|e| ApiError::BadRequest(format!("ResourceQuota: {e}")))?;
    let hard = q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    let mut pods = Vec::new();
    let mut counts = ResourceList::new();
    if let Some(pods_res) = registry::find("", "v1", "pods") {
        let (kvs, _) = api.store.list_all(&keys::prefix(pods_res, Some(&ns))).await?;
        for s in kvs {
            pods.push(pod_of(&decode(&s)?)?);
        }
    }
    for name in hard.keys() {
        if let Some(r) = counted(name) {
            let n = api.store.keys(&keys::prefix(r, Some(&ns))).await?.len();
            counts.insert(name.clone(), Quantity::from_units(i64::try_from(n).unwrap_or(i64::MAX)));
        }
    }
    let mut for_used = q.clone();
    for_used.status = None;
    let used = core::recompute_used(&for_used, &pods, &counts, api.clock.now()).map_err(ApiError::Access)?;
    let used = serde_json::to_value(to_kube(&used)).map_err(|e| ApiError::Store(e.to_string()))?;
    if let Some(o) = quota.as_object_mut() {
        o.insert("status".into(), json!({"hard": hard, "used": used}));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_names_count_the_resources_kube_counts() {
        let names = |n: &str| counted(n).map(|r| r.qualified());
        assert_eq!(names("count/configmaps"), Some("configmaps".into()));
        assert_eq!(names("configmaps"), Some("configmaps".into()));
        assert_eq!(names("count/deployments.apps"), Some("deployments.apps".into()));
        assert_eq!(names("count/pods"), None, "pods are counted from the pods themselves");
        assert_eq!(names("cpu"), None);
        assert_eq!(names("count/widgets.example.com"), None, "not served");
    }
}
