//! RBAC for keel-access: the default policy written at bootstrap when authorization is on
//! (create-if-absent, kube's `rbac/bootstrap-roles` post-start hook; `admin`, `edit`, `view`
//! already aggregated), and one feeder per RBAC resource that keeps keel-access's
//! [`SharedPolicy`] equal to the watch cache: the current objects, then every change; after a
//! reset or a lagged receiver it lists again and drops what disappeared.
//!
//! Not yet (see INTEGRATION.md §2–3): requests are not held back until the first list is
//! applied (a request in the first moments after start may be refused), escalation checks on
//! RBAC writes, the review endpoints (`kubectl auth can-i`).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::{self, Resource};
use crate::rest::Api;
use crate::rest::object::create_object;
use crate::storage::cache::Change;
use keel_access::rbac::SharedPolicy;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

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

fn id(v: &Value) -> (String, String) {
    let m = |k: &str| v.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or_default().to_string();
    (m("namespace"), m("name"))
}

/// Puts `obj` (an object of `plural`) into the policy, or removes `(namespace, name)`.
fn apply(policy: &SharedPolicy, plural: &str, obj: Option<&Value>, gone: Option<&(String, String)>) {
    policy.update(|p| {
        if let Some((ns, name)) = gone {
            match plural {
                "clusterroles" => p.remove_cluster_role(name),
                "clusterrolebindings" => p.remove_cluster_role_binding(name),
                "roles" => p.remove_role(ns, name),
                _ => p.remove_role_binding(ns, name),
            }
        }
        let Some(v) = obj else { return };
        let decoded = match plural {
            "clusterroles" => serde_json::from_value(v.clone()).map(|r| p.upsert_cluster_role(r)),
            "clusterrolebindings" => serde_json::from_value(v.clone()).map(|b| p.upsert_cluster_role_binding(b)),
            "roles" => serde_json::from_value(v.clone()).map(|r| p.upsert_role(r)),
            _ => serde_json::from_value(v.clone()).map(|b| p.upsert_role_binding(b)),
        };
        if let Err(e) = decoded {
            tracing::warn!("rbac {plural} {:?}: {e}", id(v));
        }
    });
}

/// Follows one RBAC resource's cache into the policy, for as long as the server runs.
async fn follow(api: Arc<Api>, plural: &'static str, policy: SharedPolicy) {
    let mut known: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        let start = match resource(plural) {
            Ok(res) => match api.caches.of(res).await.and_then(|c| c.start(None)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("rbac feeder {plural}: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            Err(_) => return,
        };
        let now: BTreeSet<(String, String)> = start.initial.iter().map(|o| id(&o.value)).collect();
        for gone in known.difference(&now) {
            apply(&policy, plural, None, Some(gone));
        }
        for o in &start.initial {
            apply(&policy, plural, Some(&o.value), None);
        }
        known = now;
        let mut live = start.live;
        loop {
            let change = match live.recv().await {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            match &*change {
                Change::Event { revision, new, prev } if *revision > start.revision => {
                    let gone = match (new, prev) {
                        (None, Some(p)) => Some(id(&p.value)),
                        _ => None,
                    };
                    if let Some(g) = &gone {
                        known.remove(g);
                    }
                    if let Some(n) = new {
                        known.insert(id(&n.value));
                    }
                    apply(&policy, plural, new.as_ref().map(|n| &n.value), gone.as_ref());
                }
                Change::Reset => break,
                _ => {}
            }
        }
    }
}

/// Starts the feeders (one task per RBAC resource in the server's task set).
pub fn feed(api: &Arc<Api>, policy: &SharedPolicy) {
    for plural in PLURALS {
        api.spawner.spawn(follow(api.clone(), plural, policy.clone()));
    }
}
