//! What happens to an object's dependents (objects whose `ownerReferences` name its uid) when
//! it is deleted, by `propagationPolicy`:
//!
//! - `Orphan`: the dependents stay, with the reference to the owner removed;
//! - `Background` (the default): the owner goes now, its dependents right after (in a task of
//!   their own, as Kubernetes' garbage collector does it after the DELETE returns);
//! - `Foreground`: the dependents go first, then the owner, before the DELETE returns.
//!
//! Dependents are deleted with the same policy, so whole trees go (Deployment → ReplicaSets →
//! Pods). A dependent with finalizers is marked for deletion instead.

use crate::error::ApiError;
use crate::registry::meta;
use crate::registry::{RESOURCES, Resource};
use crate::rest::Api;
use crate::storage::keys::prefix;
use crate::storage::{Stored, Written, decode};
use serde_json::Value;
use std::sync::Arc;

/// How dependents are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Keep them, without the owner reference.
    Orphan,
    /// Delete them after the owner.
    Background,
    /// Delete them before the owner.
    Foreground,
}

/// The policy of a DELETE: `propagationPolicy` (body or query), or the deprecated
/// `orphanDependents`; Background when neither is given.
pub fn policy(body: Option<&Value>, query: Option<&str>) -> Result<Policy, ApiError> {
    let given = body.and_then(|b| b.get("propagationPolicy")).and_then(Value::as_str).or(query);
    match given {
        Some("Orphan") => Ok(Policy::Orphan),
        Some("Background") => Ok(Policy::Background),
        Some("Foreground") => Ok(Policy::Foreground),
        Some(other) => Err(ApiError::BadRequest(format!("unknown propagationPolicy {other:?}: Orphan, Background or Foreground"))),
        None if body.and_then(|b| b.get("orphanDependents")).and_then(Value::as_bool) == Some(true) => Ok(Policy::Orphan),
        None => Ok(Policy::Background),
    }
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

/// The dependents of the object with `uid` (in `namespace`, or anywhere for a cluster-scoped owner).
async fn dependents(api: &Api, uid: &str, namespace: Option<&str>) -> Result<Vec<(&'static Resource, Stored, Value)>, ApiError> {
    let mut out = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.namespaced || namespace.is_none()) {
        let (kvs, _) = api.store.list_all(&prefix(r, namespace)).await?;
        for s in kvs {
            let v = decode(&s)?;
            if owned_by(&v, uid) {
                out.push((r, s, v));
            }
        }
    }
    Ok(out)
}

/// Deletes (or, with finalizers, marks) one stored object, then its dependents by `policy`.
async fn remove(api: Arc<Api>, s: Stored, mut obj: Value, policy: Policy) -> Result<(), ApiError> {
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
    if policy == Policy::Foreground {
        Box::pin(settle(api.clone(), uid.clone(), ns.clone(), policy)).await?;
    }
    let finalizers = obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    if finalizers {
        if obj.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null) {
            meta::mark_deleting(&mut obj, &api.now_rfc3339());
            api.store.put_if(&s.key, meta::for_store(&obj), s.mod_revision, 0).await?;
        }
    } else if let Written::Guard(_) = api.store.delete_if(&s.key, s.mod_revision).await? {
        // Changed meanwhile: its writer's version stands (the next delete will see it).
        return Ok(());
    }
    if policy == Policy::Background {
        Box::pin(settle(api, uid, ns, policy)).await?;
    }
    Ok(())
}

/// Applies `policy` to the dependents of `uid` (the owner itself is handled by the caller).
pub async fn settle(api: Arc<Api>, uid: String, namespace: Option<String>, policy: Policy) -> Result<(), ApiError> {
    if uid.is_empty() {
        return Ok(());
    }
    for (_, s, mut v) in dependents(&api, &uid, namespace.as_deref()).await? {
        match policy {
            Policy::Orphan => {
                if let Some(refs) = v.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                    refs.retain(|r| r["uid"] != uid.as_str());
                    if refs.is_empty()
                        && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("ownerReferences");
                    }
                }
                api.store.put_if(&s.key, meta::for_store(&v), s.mod_revision, 0).await?;
            }
            _ => remove(api.clone(), s, v, policy).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_policy_comes_from_the_body_the_query_or_the_default() {
        assert_eq!(policy(Some(&json!({"propagationPolicy": "Orphan"})), None).ok(), Some(Policy::Orphan));
        assert_eq!(policy(None, Some("Foreground")).ok(), Some(Policy::Foreground));
        assert_eq!(policy(Some(&json!({"orphanDependents": true})), None).ok(), Some(Policy::Orphan));
        assert_eq!(policy(None, None).ok(), Some(Policy::Background));
        assert!(policy(Some(&json!({"propagationPolicy": "Sometimes"})), None).is_err());
    }

    #[test]
    fn ownership_is_by_uid() {
        let rs = json!({"metadata": {"ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "u1"}]}});
        assert!(owned_by(&rs, "u1"));
        assert!(!owned_by(&rs, "u2"));
        assert!(!owned_by(&json!({"metadata": {}}), "u1"));
    }
}
