//! A pod as the scheduler sees it: parsed once when the informer delivers it (requests,
//! compiled node affinity, tolerations, host ports, priority), shared as `Arc<PodInfo>` by the
//! queue, the cache and the nodes it is counted on.
//!
//! Invariants: parsing never fails as a whole. A pod whose requests or affinity cannot be
//! understood gets [`PodInfo::invalid`] set (with a message for its event) and is never
//! scheduled; if it is already on a node it is still counted there (with what could be read).

use crate::plugins::affinity::PodAffinity;
use crate::plugins::ports::{self, HostPort};
use crate::resources::{self, PodRequests};
use k8s_openapi::api::core::v1::{Pod, Toleration};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The scheduler name this scheduler answers to (`spec.schedulerName`'s default).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// `namespace/name`, the key of a pod everywhere in the scheduler.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey(pub String);

impl PodKey {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: &str, name: &str) -> PodKey {
        PodKey(format!("{namespace}/{name}"))
    }

    /// The key of a pod object.
    pub fn of(pod: &Pod) -> PodKey {
        PodKey::new(pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""))
    }

    /// The namespace part.
    pub fn namespace(&self) -> &str {
        self.0.split_once('/').map(|(ns, _)| ns).unwrap_or("")
    }

    /// The name part.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map(|(_, n)| n).unwrap_or(&self.0)
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed pod.
#[derive(Debug)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: PodKey,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.priority` (0 when unset, as kube's `PodPriority`).
    pub priority: i32,
    /// `spec.preemptionPolicy: Never`.
    pub never_preempts: bool,
    /// What it asks for.
    pub requests: PodRequests,
    /// nodeSelector + node affinity, compiled.
    pub affinity: PodAffinity,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// Host ports its containers claim.
    pub host_ports: Vec<HostPort>,
    /// `spec.nodeName` (set: the pod is assigned).
    pub node_name: Option<String>,
    /// `status.nominatedNodeName`.
    pub nominated_node: Option<String>,
    /// `spec.schedulerName` (defaulted).
    pub scheduler_name: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.phase` is Succeeded or Failed: it no longer holds resources.
    pub terminal: bool,
    /// `status.startTime` in seconds since the epoch (preemption prefers to keep older pods).
    pub start_time: Option<i64>,
    /// Why it cannot be scheduled whatever the nodes (malformed quantity or affinity).
    pub invalid: Option<String>,
    /// A hash of what scheduling depends on (spec and labels), to tell a real update from a
    /// status-only one.
    pub spec_hash: u64,
    /// The object itself (for binding, events and status patches).
    pub pod: Arc<Pod>,
}

impl PodInfo {
    /// Parses `pod`.
    pub fn parse(pod: Arc<Pod>) -> PodInfo {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut invalid = None;
        let requests = resources::pod_requests(&spec).unwrap_or_else(|e| {
            invalid = Some(e.to_string());
            PodRequests::default()
        });
        let affinity = PodAffinity::compile(&spec).unwrap_or_else(|e| {
            invalid.get_or_insert(e.to_string());
            PodAffinity::default()
        });
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&spec).unwrap_or_default().hash(&mut h);
        pod.metadata.labels.hash(&mut h);
        PodInfo {
            key: PodKey::of(&pod),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            requests,
            affinity,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            host_ports: ports::host_ports(&spec),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            nominated_node: status.and_then(|s| s.nominated_node_name.clone()).filter(|n| !n.is_empty()),
            scheduler_name: spec.scheduler_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.to_string()),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0.as_second()),
            invalid,
            spec_hash: h.finish(),
            pod,
        }
    }

    /// Whether this pod is waiting for a scheduler (no node yet, not finished, not going away).
    pub fn is_pending(&self) -> bool {
        self.node_name.is_none() && !self.terminal && !self.deleting
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for table tests.
    use super::*;
    use serde_json::{Value, json};

    /// A pod from a JSON `spec` (name `p`, namespace `default`).
    pub fn pod(name: &str, spec: Value) -> PodInfo {
        pod_with(name, spec, json!({}))
    }

    /// A pod with a `status` as well.
    pub fn pod_with(name: &str, spec: Value, status: Value) -> PodInfo {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "x"}]);
        }
        let v = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}, "spec": spec, "status": status});
        PodInfo::parse(Arc::new(serde_json::from_value(v).expect("a pod")))
    }

    /// A pod requesting `cpu` and `memory` (quantity strings; empty = not stated).
    pub fn requesting(name: &str, cpu: &str, memory: &str) -> PodInfo {
        let mut req = serde_json::Map::new();
        if !cpu.is_empty() {
            req.insert("cpu".into(), json!(cpu));
        }
        if !memory.is_empty() {
            req.insert("memory".into(), json!(memory));
        }
        pod(name, json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": req}}]}))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use serde_json::json;

    #[test]
    fn a_malformed_pod_is_marked_invalid_not_rejected() {
        let p = pod("bad", json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "one"}}}]}));
        assert_eq!(
            p.invalid.as_deref(),
            Some(
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"one\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            )
        );
        let p = pod(
            "bad-affinity",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["x"]}]}]}}}}),
        );
        assert!(p.invalid.as_deref().is_some_and(|m| m.contains("must be an integer")), "{:?}", p.invalid);
    }

    #[test]
    fn defaults_are_kubes() {
        let p = pod("p", json!({}));
        assert_eq!(p.priority, 0);
        assert_eq!(p.scheduler_name, "default-scheduler");
        assert!(p.is_pending());
        assert_eq!(p.key.to_string(), "default/p");
        let done = pod_with("d", json!({"nodeName": "n1"}), json!({"phase": "Succeeded"}));
        assert!(done.terminal && !done.is_pending());
    }

    #[test]
    fn the_spec_hash_ignores_status() {
        let a = pod_with("p", json!({}), json!({"phase": "Pending"}));
        let b = pod_with("p", json!({}), json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}));
        let c = pod("p", json!({"priority": 5}));
        assert_eq!(a.spec_hash, b.spec_hash);
        assert_ne!(a.spec_hash, c.spec_hash);
    }
}
