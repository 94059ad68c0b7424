//! Building planted histories for the checkers' tests: objects as the apiserver stores them,
//! with only the fields the checkers read.

use crate::history::{Op, Revision, StoreEvent};
use serde_json::{Value, json};
use std::time::Duration;

/// A history under construction: each put or delete takes the next revision.
#[derive(Default)]
pub struct History {
    pub events: Vec<StoreEvent>,
    pub now: Duration,
}

impl History {
    /// Puts `(key, object)`; its revision.
    pub fn put(&mut self, (key, object): (String, Value)) -> Revision {
        let revision = Revision(self.events.len() as i64 + 1);
        self.events.push(StoreEvent { revision, key, op: Op::Put, object: Some(object), seen: self.now });
        revision
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &str) -> Revision {
        let revision = Revision(self.events.len() as i64 + 1);
        self.events.push(StoreEvent { revision, key: key.into(), op: Op::Delete, object: None, seen: self.now });
        revision
    }

    /// Later events are seen at `secs`.
    pub fn at(&mut self, secs: u64) {
        self.now = Duration::from_secs(secs);
    }
}

/// A pod.
#[derive(Clone)]
pub struct Pod(Value, String);

/// A pod `name` with `uid` in namespace `default`.
pub fn pod(name: &str, uid: &str) -> Pod {
    Pod(json!({"metadata": {"name": name, "namespace": "default", "uid": uid}, "spec": {}, "status": {"phase": "Pending"}}), name.into())
}

impl Pod {
    pub fn node(mut self, n: &str) -> Pod {
        self.0["spec"]["nodeName"] = json!(n);
        self
    }
    pub fn owner(mut self, rs_uid: &str) -> Pod {
        self.0["metadata"]["ownerReferences"] = json!([{"kind": "ReplicaSet", "name": "rs", "uid": rs_uid, "controller": true}]);
        self
    }
    pub fn terminating(mut self) -> Pod {
        self.0["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        self
    }
    pub fn phase(mut self, p: &str) -> Pod {
        self.0["status"]["phase"] = json!(p);
        self
    }
    pub fn ready(mut self) -> Pod {
        self.0["status"]["phase"] = json!("Running");
        self.0["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        self
    }
    pub fn build(self) -> (String, Value) {
        (format!("/registry/pods/default/{}", self.1), self.0)
    }
}

/// A ReplicaSet.
#[derive(Clone)]
pub struct Rs(Value, String);

/// A ReplicaSet `name` with `uid`, generation 1 observed, 1 replica.
pub fn rs(name: &str, uid: &str) -> Rs {
    Rs(
        json!({"metadata": {"name": name, "namespace": "default", "uid": uid, "generation": 1},
               "spec": {"replicas": 1}, "status": {"observedGeneration": 1}}),
        name.into(),
    )
}

impl Rs {
    pub fn replicas(mut self, n: i64) -> Rs {
        self.0["spec"]["replicas"] = json!(n);
        self
    }
    /// `metadata.generation` and `status.observedGeneration`.
    pub fn generation(mut self, generation: i64, observed: i64) -> Rs {
        self.0["metadata"]["generation"] = json!(generation);
        self.0["status"]["observedGeneration"] = json!(observed);
        self
    }
    pub fn owner(mut self, d_uid: &str) -> Rs {
        self.0["metadata"]["ownerReferences"] = json!([{"kind": "Deployment", "name": "d", "uid": d_uid, "controller": true}]);
        self
    }
    pub fn image(mut self, image: &str) -> Rs {
        self.0["spec"]["template"] = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": image}},
                                            "spec": {"containers": [{"name": "c", "image": image}]}});
        self
    }
    pub fn build(self) -> (String, Value) {
        (format!("/registry/replicasets/default/{}", self.1), self.0)
    }
}

/// A Deployment.
#[derive(Clone)]
pub struct Deploy(Value, String);

/// A Deployment `name` with `uid`: 3 replicas, maxSurge 1, generation 1 observed, image `v1`.
pub fn deploy(name: &str, uid: &str) -> Deploy {
    Deploy(
        json!({"metadata": {"name": name, "namespace": "default", "uid": uid, "generation": 1},
               "spec": {"replicas": 3, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}},
               "status": {"observedGeneration": 1}}),
        name.into(),
    )
}

impl Deploy {
    pub fn replicas(mut self, n: i64) -> Deploy {
        self.0["spec"]["replicas"] = json!(n);
        self
    }
    pub fn generation(mut self, generation: i64, observed: i64) -> Deploy {
        self.0["metadata"]["generation"] = json!(generation);
        self.0["status"]["observedGeneration"] = json!(observed);
        self
    }
    pub fn image(mut self, image: &str) -> Deploy {
        self.0["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        self
    }
    /// `status.replicas`, `updatedReplicas`, `availableReplicas`, `readyReplicas`.
    pub fn status(mut self, replicas: i64, updated: i64, available: i64) -> Deploy {
        for (f, v) in [("replicas", replicas), ("updatedReplicas", updated), ("availableReplicas", available), ("readyReplicas", available)]
        {
            self.0["status"][f] = json!(v);
        }
        self
    }
    pub fn build(self) -> (String, Value) {
        (format!("/registry/deployments/default/{}", self.1), self.0)
    }
}
