//! Feeders: tasks that keep a keel-access state (the RBAC policy, the Node authorizer's graph)
//! equal to one resource's watch cache, as kube's informers feed its authorizers. A feeder
//! applies the cache's current objects, then every change after them; after a reset or a
//! lagged receiver it lists again and removes what disappeared meanwhile.
//!
//! Invariant: after the feeder has applied a list at revision R and every change up to R', the
//! state holds exactly the objects the cache holds at R' (level-triggered: applying an object
//! twice is harmless, so replays cost nothing). `synced` fires once the first list is applied,
//! so the server can wait for it before it serves (kube waits for its RBAC informers).

use crate::registry::{self, Resource};
use crate::rest::Api;
use crate::storage::cache::Change;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// An object's `(namespace, name)` (namespace empty for cluster-scoped kinds).
pub type Id = (String, String);

/// What a feeder applies: an object that exists now, or one that is gone.
pub enum Update<'a> {
    /// The object as it is now (added or changed).
    Put(&'a Value),
    /// The object with this id was deleted.
    Remove(&'a Id),
}

/// The object's `(namespace, name)`.
pub fn id(v: &Value) -> Id {
    let m = |k: &str| v.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or_default().to_string();
    (m("namespace"), m("name"))
}

/// The served resource `group/v1/plural`, if it is served.
pub fn resource(group: &str, plural: &str) -> Option<&'static Resource> {
    registry::find(group, "v1", plural)
}

/// Follows `res`'s cache into `apply` for as long as the server runs (spawn it in the
/// server's task set); `synced` hears once the first list is applied.
pub async fn follow(api: Arc<Api>, res: &'static Resource, apply: impl Fn(Update<'_>) + Send + 'static, synced: oneshot::Sender<()>) {
    let mut synced = Some(synced);
    let mut known: BTreeSet<Id> = BTreeSet::new();
    loop {
        let start = match api.caches.of(res).await.and_then(|c| c.start(None)) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("feeder {}: {e}", res.plural);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let now: BTreeSet<Id> = start.initial.iter().map(|o| id(&o.value)).collect();
        for gone in known.difference(&now) {
            apply(Update::Remove(gone));
        }
        for o in &start.initial {
            apply(Update::Put(&o.value));
        }
        known = now;
        if let Some(s) = synced.take() {
            // Nobody waiting is fine: the server may have stopped waiting.
            let _ = s.send(());
        }
        let mut live = start.live;
        loop {
            let change = match live.recv().await {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            match &*change {
                Change::Event { revision, new, prev } if *revision > start.revision => match (new, prev) {
                    (Some(n), _) => {
                        known.insert(id(&n.value));
                        apply(Update::Put(&n.value));
                    }
                    (None, Some(p)) => {
                        let gone = id(&p.value);
                        known.remove(&gone);
                        apply(Update::Remove(&gone));
                    }
                    (None, None) => {}
                },
                Change::Reset => break,
                _ => {}
            }
        }
    }
}
