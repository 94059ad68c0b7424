//! A node as the scheduler sees it: what it offers (allocatable, labels, taints, cordon) and
//! what is already on it (the pods assigned or assumed there, their requests and host ports).
//!
//! Invariants: `requested`, `non_zero_*` and `used_ports` are always the sums over `pods`:
//! every change goes through [`NodeInfo::add_pod`] / [`NodeInfo::remove_pod`]. Replacing the
//! Node object ([`NodeInfo::set_node`]) keeps the pods.

use crate::plugins::ports::HostPort;
use crate::pod::{PodInfo, PodKey};
use crate::resources::Resource;
use k8s_openapi::api::core::v1::{Node, Taint};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a Node object says about scheduling, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSpec {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `status.allocatable` (or `status.capacity` when allocatable is not set, as the
    /// apiserver's defaulting would have copied it).
    pub allocatable: Resource,
}

impl NodeSpec {
    /// Parses `node`. A malformed quantity counts as zero; the message says which.
    pub fn parse(node: &Node) -> (NodeSpec, Option<String>) {
        let status = node.status.as_ref();
        let list = status.and_then(|s| s.allocatable.as_ref()).or_else(|| status.and_then(|s| s.capacity.as_ref()));
        let (allocatable, problem) = match list.map(|l| Resource::from_list(l, "status.allocatable")) {
            Some(Ok(r)) => (r, None),
            Some(Err(e)) => (Resource::default(), Some(e.to_string())),
            None => (Resource::default(), None),
        };
        let spec = node.spec.as_ref();
        (
            NodeSpec {
                name: node.metadata.name.clone().unwrap_or_default(),
                labels: node.metadata.labels.clone().unwrap_or_default(),
                taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
                unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
                allocatable,
            },
            problem,
        )
    }
}

/// A node and the pods counted on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The node's own side.
    pub spec: NodeSpec,
    /// Sum of the pods' requests.
    pub requested: Resource,
    /// Sum of the pods' non-zero CPU requests (scoring).
    pub non_zero_milli_cpu: i64,
    /// Sum of the pods' non-zero memory requests (scoring).
    pub non_zero_memory: i64,
    /// The pods counted here (bound, or assumed while their binding is in flight).
    pub pods: Vec<Arc<PodInfo>>,
    /// Host ports in use, one entry per claiming container port.
    pub used_ports: Vec<HostPort>,
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(spec: NodeSpec) -> NodeInfo {
        NodeInfo { spec, ..Default::default() }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Replaces the node's own side, keeping the pods.
    pub fn set_node(&mut self, spec: NodeSpec) {
        self.spec = spec;
    }

    /// Counts `pod` here.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requested);
        self.non_zero_milli_cpu = self.non_zero_milli_cpu.saturating_add(pod.requests.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_add(pod.requests.non_zero_memory);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Stops counting the pod with `key`; returns it if it was here.
    pub fn remove_pod(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| &p.key == key)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests.requested);
        self.non_zero_milli_cpu = self.non_zero_milli_cpu.saturating_sub(pod.requests.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_sub(pod.requests.non_zero_memory);
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        Some(pod)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for table tests.
    use super::*;
    use serde_json::{Value, json};

    /// A node from JSON `metadata` extras, `spec` and `allocatable`.
    pub fn node(name: &str, labels: Value, spec: Value, allocatable: Value) -> NodeInfo {
        let v = json!({"metadata": {"name": name, "labels": labels}, "spec": spec, "status": {"allocatable": allocatable}});
        let n: Node = serde_json::from_value(v).expect("a node");
        NodeInfo::new(NodeSpec::parse(&n).0)
    }

    /// A plain node with `cpu`, `memory` and 110 pods.
    pub fn sized(name: &str, cpu: &str, memory: &str) -> NodeInfo {
        node(name, json!({}), json!({}), json!({"cpu": cpu, "memory": memory, "pods": "110"}))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::pod::testing::requesting;
    use serde_json::json;

    #[test]
    fn sums_follow_the_pods() {
        let mut n = sized("n", "4", "8Gi");
        n.add_pod(Arc::new(requesting("a", "1", "1Gi")));
        n.add_pod(Arc::new(requesting("b", "", "")));
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.non_zero_milli_cpu, 1100, "the best-effort pod counts 100m for scoring only");
        assert!(n.remove_pod(&PodKey::new("default", "a")).is_some());
        assert_eq!(n.requested.milli_cpu, 0);
        assert_eq!(n.non_zero_memory, 200 * 1024 * 1024);
        assert!(n.remove_pod(&PodKey::new("default", "a")).is_none());
    }

    #[test]
    fn allocatable_falls_back_to_capacity_and_bad_quantities_are_reported() {
        let v = json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2", "pods": "10"}}});
        let (s, problem) = NodeSpec::parse(&serde_json::from_value(v).expect("node"));
        assert_eq!((s.allocatable.milli_cpu, s.allocatable.pods, problem), (2000, 10, None));
        let v = json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "two"}}});
        let (s, problem) = NodeSpec::parse(&serde_json::from_value(v).expect("node"));
        assert_eq!(s.allocatable.milli_cpu, 0);
        assert!(problem.is_some_and(|p| p.contains("status.allocatable[cpu]")));
    }
}
