//! The scheduler's writes to pods: the Binding, the `PodScheduled=False` condition (and
//! `nominatedNodeName`) of a pod that fits nowhere, and the deletion of preemption victims.
//! Each request has a deadline; each answer is classified so the driver knows whether to
//! forget, requeue or drop the pod.
//!
//! Invariant: [`Binder::bind`] checks the fencing handle immediately before sending, so a
//! scheduler that has lost (or cannot prove) its lease never sends a Binding.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use std::time::Duration;

/// How a write ended.
#[derive(Debug)]
pub enum Outcome {
    /// Done.
    Ok,
    /// 409: someone else wrote first (already bound).
    Conflict(String),
    /// 404: the pod is gone.
    NotFound,
    /// Not sent: this instance may not act (not the leader, or its lease could not be
    /// renewed in time).
    NotLeader,
    /// Anything else (network, timeout, 5xx, invalid).
    Failed(String),
}

/// Who may act: the fencing check run before every write.
pub trait Fence: Send + Sync + 'static {
    /// Whether this instance may write now.
    fn may_act(&self) -> bool;
}

impl Fence for keel_leader::Leadership {
    fn may_act(&self) -> bool {
        self.is_leader()
    }
}

/// No leader election (`--leader-elect=false`): always allowed.
pub struct Always;

impl Fence for Always {
    fn may_act(&self) -> bool {
        true
    }
}

/// Writes to pods through the apiserver.
#[derive(Clone)]
pub struct Binder {
    client: kube::Client,
    timeout: Duration,
}

fn classify(r: Result<Result<(), kube::Error>, tokio::time::error::Elapsed>) -> Outcome {
    match r {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(kube::Error::Api(s))) if s.is_conflict() => Outcome::Conflict(s.message.clone()),
        Ok(Err(kube::Error::Api(s))) if s.is_not_found() => Outcome::NotFound,
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::Failed("request timed out".into()),
    }
}

impl Binder {
    /// A binder over `client`; every request gives up after `timeout`.
    pub fn new(client: kube::Client, timeout: Duration) -> Binder {
        Binder { client, timeout }
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// POSTs `pods/<name>/binding` to `node`, if `fence` allows it at the moment of sending.
    pub async fn bind(&self, namespace: &str, name: &str, uid: &str, node: &str, fence: &dyn Fence) -> Outcome {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        if !fence.may_act() {
            return Outcome::NotLeader;
        }
        let api = self.pods(namespace);
        let pp = PostParams::default();
        let send = api.create_subresource::<_, serde_json::Value>("binding", name, &pp, &binding);
        classify(tokio::time::timeout(self.timeout, async { send.await.map(|_| ()) }).await)
    }

    /// Sets `PodScheduled=False` (`reason`, `message`) and, when given, `nominatedNodeName`, with
    /// a strategic merge patch of the status (conditions merge by type).
    pub async fn set_unschedulable(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
        message: &str,
        nominated: Option<&str>,
        now: Timestamp,
    ) -> Outcome {
        let mut status = json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
            "lastProbeTime": null, "lastTransitionTime": now.to_string(),
        }]});
        if let Some(n) = nominated {
            status["nominatedNodeName"] = json!(n);
        }
        let api = self.pods(namespace);
        let patch = Patch::Strategic(json!({"status": status}));
        let pp = PatchParams::default();
        let send = api.patch_status(name, &pp, &patch);
        classify(tokio::time::timeout(self.timeout, async { send.await.map(|_| ()) }).await)
    }

    /// Deletes a preemption victim (graceful: the pod's own grace period), only that
    /// incarnation (`uid` precondition).
    pub async fn delete_victim(&self, namespace: &str, name: &str, uid: &str, fence: &dyn Fence) -> Outcome {
        if !fence.may_act() {
            return Outcome::NotLeader;
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..Default::default()
        };
        let api = self.pods(namespace);
        let send = api.delete(name, &dp);
        classify(tokio::time::timeout(self.timeout, async { send.await.map(|_| ()) }).await)
    }
}
