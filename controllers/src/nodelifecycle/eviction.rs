//! The taint eviction controller (kube's `pkg/controller/tainteviction`, formerly the
//! NoExecute taint manager): a pod on a node with NoExecute taints it does not tolerate is
//! deleted at once; one that tolerates them for `tolerationSeconds` is deleted when the
//! shortest of those runs out, counted from when this controller first saw the taints; a pod
//! that tolerates them forever stays. Before deleting it adds the `DisruptionTarget` condition.
//!
//! Invariant: the countdown start of a pod is kept per pod key and cleared as soon as its node
//! has no NoExecute taint it needs to tolerate, so a node that recovers cancels evictions.

use super::taints::{self, NO_EXECUTE, Stay};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::{Kind, Recorder};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use crate::shared::BY_NODE;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The controller.
pub struct TaintEvictionController {
    ctx: Context,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    recorder: Recorder,
    /// When each pod's countdown started (our clock).
    started: Mutex<HashMap<ObjectKey, Timestamp>>,
}

fn no_execute(node: &Node) -> Vec<Taint> {
    taints::taints(node).iter().filter(|t| t.effect == NO_EXECUTE).cloned().collect()
}

impl TaintEvictionController {
    /// The controller, with its handlers registered.
    pub fn new(ctx: &Context) -> Arc<TaintEvictionController> {
        let c = Arc::new(TaintEvictionController {
            ctx: ctx.clone(),
            nodes: ctx.shared.nodes.clone(),
            pods: ctx.shared.pods.clone(),
            queue: Queue::new("taint_eviction_controller", Some(ctx.metrics.clone())),
            recorder: ctx.recorder.for_component("taint-eviction-controller"),
            started: Mutex::new(HashMap::new()),
        });
        let q = c.queue.clone();
        c.pods.on_change(move |ch: &Change<'_, Pod>| {
            let p = ch.object();
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                q.add(ObjectKey::of(p));
            }
        });
        let (q, pods) = (c.queue.clone(), c.pods.clone());
        c.nodes.on_change(move |ch: &Change<'_, Node>| {
            let changed = match ch {
                Change::Added(n) | Change::Deleted(n) => !no_execute(n).is_empty(),
                Change::Updated { old, new } => no_execute(old) != no_execute(new),
            };
            if changed {
                for p in pods.by_index(BY_NODE, ch.object().metadata.name.as_deref().unwrap_or_default()) {
                    q.add(ObjectKey::of(p.as_ref()));
                }
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    fn cancel(&self, key: &ObjectKey) {
        self.started.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    async fn evict(&self, pod: &Pod, key: &ObjectKey) -> Result<()> {
        self.recorder.record(pod, Kind::Normal, "TaintManagerEviction", format!("Marking for deletion Pod {key}"));
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let now = self.ctx.clock.now();
        let mut conds = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        if !conds.iter().any(|c| c.type_ == "DisruptionTarget") {
            conds.push(k8s_openapi::api::core::v1::PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByTaintManager".into()),
                message: Some("Taint manager: deleting due to NoExecute taint".into()),
                last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
                ..Default::default()
            });
            let patch = json!({"status": {"conditions": conds}});
            if let Err(e) = api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch)).await {
                let e = Error::from(e);
                if e.is_not_found() {
                    return Ok(());
                }
                tracing::debug!(pod = %key, "DisruptionTarget condition: {e}");
            }
        }
        match api.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }
}

impl Reconcile for TaintEvictionController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.pods.is_synced() || !self.nodes.is_synced() {
            return Err(Error::NotSynced("pods/nodes"));
        }
        let Some(pod) = self.pods.get(key) else {
            self.cancel(key);
            return Ok(Action::Done);
        };
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let node = self.nodes.get(&ObjectKey::cluster(node_name));
        let (Some(node), None) = (node, pod.metadata.deletion_timestamp.as_ref()) else {
            self.cancel(key);
            return Ok(Action::Done);
        };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        match taints::stay(&no_execute(&node), &tolerations) {
            Stay::Forever => {
                self.cancel(key);
                Ok(Action::Done)
            }
            Stay::Evict => {
                self.cancel(key);
                self.evict(&pod, key).await?;
                Ok(Action::Done)
            }
            Stay::For(d) => {
                let now = self.ctx.clock.now();
                let start = *self.started.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_insert(now);
                let due = start.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)).unwrap_or(Timestamp::MAX);
                if now >= due {
                    self.cancel(key);
                    self.evict(&pod, key).await?;
                    return Ok(Action::Done);
                }
                let left = Duration::try_from(due.duration_since(now)).unwrap_or(Duration::from_secs(1));
                Ok(Action::RequeueAfter(left))
            }
        }
    }
}
