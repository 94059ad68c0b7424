//! RBAC for keel-access: the default policy written at bootstrap when authorization is on
//! (create-if-absent, kube's `rbac/bootstrap-roles` post-start hook; `admin`, `edit`, `view`
//! already aggregated), and one feeder ([`crate::rest::feed`]) per RBAC resource that keeps
//! keel-access's [`SharedPolicy`] equal to the watch cache.
//!
//! The server is ready (and `main.rs` listens) only once every feeder has applied its first
//! list, so no request is decided over a policy still empty. Escalation checks on
//! RBAC writes are [`crate::rest::escalation`]'s, the review endpoints (`kubectl auth can-i`) are [`crate::http::review`]'s.

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::{self, Resource};
use crate::rest::Api;
use crate::rest::feed::{self, Update};
use crate::rest::object::create_object;
use keel_access::rbac::SharedPolicy;
use serde_json::Value;
use std::sync::Arc;

const GROUP: &str = "rbac.authorization.k8s.io";
const PLURALS: &[&str] = &["clusterroles", "clusterrolebindings", "roles", "rolebindings"];

fn resource(plural: &str) -> Result<&'static Resource, ApiError> {
    registry::find(GROUP, "v1", plural).ok_or(ApiError::NoSuchPath)
}

/// Creates the default policy's objects that do not exist.
pub async fn bootstrap_policy(api: &Api) -> Result<(), ApiError> {
    let p = keel_access::rbac::bootstrap::default_policy(true);
    let mut wanted: Vec<(&str, Value)> = Vec::new();
    let json = |v: Result<Value, serde_json::Error>| v.map_err(|e| ApiError::BadRequest(format!("default policy: {e}")));
    for r in &p.cluster_roles {
        wanted.push(("clusterroles", json(serde_json::to_value(r))?));
    }
    for b in &p.cluster_role_bindings {
        wanted.push(("clusterrolebindings", json(serde_json::to_value(b))?));
    }
    for r in &p.roles {
        wanted.push(("roles", json(serde_json::to_value(r))?));
    }
    for b in &p.role_bindings {
        wanted.push(("rolebindings", json(serde_json::to_value(b))?));
    }
    for (plural, obj) in wanted {
        let mut call = Call::internal(resource(plural)?, "keel-apiserver");
        call.target.namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
        match create_object(api, &call, obj).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Puts an object of `plural` into the policy, or removes one.
fn apply(policy: &SharedPolicy, plural: &str, update: Update<'_>) {
    policy.update(|p| {
        let v = match update {
            Update::Remove((ns, name)) => {
                match plural {
                    "clusterroles" => p.remove_cluster_role(name),
                    "clusterrolebindings" => p.remove_cluster_role_binding(name),
                    "roles" => p.remove_role(ns, name),
                    _ => p.remove_role_binding(ns, name),
                }
                return;
            }
            Update::Put(v) => v,
        };
        let decoded = match plural {
            "clusterroles" => serde_json::from_value(v.clone()).map(|r| p.upsert_cluster_role(r)),
            "clusterrolebindings" => serde_json::from_value(v.clone()).map(|b| p.upsert_cluster_role_binding(b)),
            "roles" => serde_json::from_value(v.clone()).map(|r| p.upsert_role(r)),
            _ => serde_json::from_value(v.clone()).map(|b| p.upsert_role_binding(b)),
        };
        if let Err(e) = decoded {
            tracing::warn!("rbac {plural} {:?}: {e}", feed::id(v));
        }
    });
}

/// Starts the feeders (one task per RBAC resource in the server's task set); the receivers hear
/// when each has applied its first list.
pub fn feed(api: &Arc<Api>, policy: &SharedPolicy) -> Vec<tokio::sync::oneshot::Receiver<()>> {
    let mut synced = Vec::new();
    for plural in PLURALS {
        let Ok(res) = resource(plural) else { continue };
        let policy = policy.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        api.spawner.spawn(feed::follow(api.clone(), res, move |u| apply(&policy, plural, u), tx));
        synced.push(rx);
    }
    synced
}
