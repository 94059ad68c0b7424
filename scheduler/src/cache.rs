//! The scheduler's view of the cluster: nodes with the pods counted on them, fed by the
//! informers and by the scheduler's own *assumptions* (a pod sent for binding is counted on
//! its node at once, before the informer shows it bound, so the next pod does not take the
//! same room).
//!
//! Invariants:
//! - Every pod counted on a node is in `pods` with that node, and the other way round.
//! - An assumed pod stays counted until the informer confirms it (bound there: the
//!   assumption becomes the real thing), shows it bound elsewhere (moved), it is deleted, or
//!   its binding fails ([`Cache::forget`]).
//! - Terminal pods (Succeeded/Failed) hold nothing.
//! - A node that disappears keeps its pods accounted (the node may come back, the pods will be
//!   deleted by their controllers) but is no longer offered to pods.
//! - Nominated pods (preemptors waiting for their victims to go) are tracked per node.

use crate::node::{NodeInfo, NodeSpec};
use crate::pod::{PodInfo, PodKey};
use crate::schedule::Nominated;
use k8s_openapi::api::core::v1::Node;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Debug)]
struct Placed {
    node: String,
    /// Counted here by our own decision, not yet seen bound by the informer.
    assumed: bool,
    /// The binding request of an assumed pod has succeeded.
    bound: bool,
}

/// What an informer event changed, for the queue's decision to retry unschedulable pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Something that may let a pending pod fit (node added or loosened, pod gone).
    MayHelp,
    /// Nothing a pending pod could gain from.
    Nothing,
}

#[derive(Debug)]
struct Slot {
    /// The Node object exists (a removed node with pods left keeps its slot).
    exists: bool,
    info: NodeInfo,
}

/// Nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, Slot>,
    existing: usize,
    pods: HashMap<PodKey, Placed>,
    nominated: Nominated,
    nominated_of: HashMap<PodKey, String>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Adds or updates a node. Returns whether pending pods may now fit, and a problem with
    /// the node's quantities if there is one.
    pub fn upsert_node(&mut self, node: &Node) -> (Change, Option<String>) {
        let (spec, problem) = NodeSpec::parse(node);
        let name = spec.name.clone();
        let change = match self.nodes.get_mut(&name) {
            Some(slot) => {
                let added = !slot.exists;
                slot.exists = true;
                let old = std::mem::replace(&mut slot.info.spec, spec);
                if added {
                    self.existing += 1;
                }
                if added || old != slot.info.spec { Change::MayHelp } else { Change::Nothing }
            }
            None => {
                self.nodes.insert(name, Slot { exists: true, info: NodeInfo::new(spec) });
                self.existing += 1;
                Change::MayHelp
            }
        };
        (change, problem)
    }

    /// Removes a node (its pods stay accounted until they go).
    pub fn remove_node(&mut self, name: &str) {
        let Some(slot) = self.nodes.get_mut(name) else { return };
        if slot.exists {
            slot.exists = false;
            self.existing -= 1;
        }
        if slot.info.pods.is_empty() {
            self.nodes.remove(name);
        }
    }

    /// Replaces the node set after a relist: nodes not in `names` are removed.
    pub fn retain_nodes(&mut self, names: &BTreeSet<String>) {
        let gone: Vec<String> = self.nodes.iter().filter(|(n, s)| s.exists && !names.contains(*n)).map(|(n, _)| n.clone()).collect();
        for n in gone {
            self.remove_node(&n);
        }
    }

    fn unplace(&mut self, key: &PodKey) -> Option<Placed> {
        let placed = self.pods.remove(key)?;
        if let Some(slot) = self.nodes.get_mut(&placed.node) {
            slot.info.remove_pod(key);
            if slot.info.pods.is_empty() && !slot.exists {
                self.nodes.remove(&placed.node);
            }
        }
        Some(placed)
    }

    fn place(&mut self, info: Arc<PodInfo>, node: &str, assumed: bool) {
        let key = info.key.clone();
        self.nodes
            .entry(node.to_string())
            .or_insert_with(|| Slot { exists: false, info: NodeInfo::new(NodeSpec { name: node.to_string(), ..Default::default() }) })
            .info
            .add_pod(info);
        self.pods.insert(key, Placed { node: node.to_string(), assumed, bound: false });
    }

    /// Applies a pod as the informer delivered it. Returns whether pending pods may now fit.
    pub fn update_pod(&mut self, info: Arc<PodInfo>) -> Change {
        let key = info.key.clone();
        self.set_nominated(&info);
        let target = info.node_name.clone().filter(|_| !info.terminal);
        let current = self.pods.get(&key).map(|p| (p.node.clone(), p.assumed));
        match (target, current) {
            (Some(node), Some((old, _))) if node == old => {
                // Confirmed (or a later version of a bound pod): count the newest object.
                self.unplace(&key);
                self.place(info, &node, false);
                Change::Nothing
            }
            (Some(node), Some(_)) => {
                // Bound elsewhere than we assumed (another scheduler won): move it.
                self.unplace(&key);
                self.place(info, &node, false);
                Change::MayHelp
            }
            (Some(node), None) => {
                self.place(info, &node, false);
                Change::Nothing
            }
            (None, Some((_, true))) if !info.terminal && !info.deleting => Change::Nothing, // our binding is in flight
            (None, Some(_)) => {
                self.unplace(&key);
                Change::MayHelp
            }
            (None, None) => Change::Nothing,
        }
    }

    /// Forgets a deleted pod. Returns whether pending pods may now fit.
    pub fn remove_pod(&mut self, key: &PodKey) -> Change {
        self.clear_nominated(key);
        if self.unplace(key).is_some() { Change::MayHelp } else { Change::Nothing }
    }

    /// After a relist: pods not in `keys` are gone, except assumed ones whose binding is still
    /// in flight (the list may predate it).
    pub fn retain_pods(&mut self, keys: &BTreeSet<PodKey>) {
        let gone: Vec<PodKey> =
            self.pods.iter().filter(|(k, p)| (!p.assumed || p.bound) && !keys.contains(*k)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.unplace(&k);
        }
        let nominated_gone: Vec<PodKey> = self.nominated_of.keys().filter(|k| !keys.contains(*k)).cloned().collect();
        for k in nominated_gone {
            self.clear_nominated(&k);
        }
    }

    /// Counts `info` on `node` while its binding is in flight.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key.clone();
        self.unplace(&key);
        self.clear_nominated(&key);
        self.place(info, node, true);
    }

    /// Drops an assumption (the binding failed). Does nothing if the pod was confirmed since.
    pub fn forget(&mut self, key: &PodKey) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.unplace(key);
        }
    }

    /// Marks an assumption's binding as done: it stays counted until the informer confirms it,
    /// but a relist that does not show the pod drops it (the pod was deleted meanwhile).
    pub fn finish_binding(&mut self, key: &PodKey) {
        if let Some(p) = self.pods.get_mut(key) {
            p.bound = true;
        }
    }

    /// Whether the pod is counted on a node by assumption only.
    pub fn is_assumed(&self, key: &PodKey) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// Whether the pod is counted on some node.
    pub fn is_placed(&self, key: &PodKey) -> bool {
        self.pods.contains_key(key)
    }

    /// The nodes pods may go to, by name.
    pub fn nodes(&self) -> Vec<&NodeInfo> {
        self.nodes.values().filter(|s| s.exists).map(|s| &s.info).collect()
    }

    /// One existing node.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|s| s.exists).map(|s| &s.info)
    }

    /// How many nodes exist.
    pub fn node_count(&self) -> usize {
        self.existing
    }

    /// The pods counted on `node` by assumption whose binding has not finished.
    pub fn binding_on(&self, node: &str) -> Vec<PodKey> {
        self.pods.iter().filter(|(_, p)| p.node == node && p.assumed && !p.bound).map(|(k, _)| k.clone()).collect()
    }

    /// Nominated pods by node.
    pub fn nominated(&self) -> &Nominated {
        &self.nominated
    }

    /// Records (or clears) `info`'s nomination as its status says, unless it is assigned.
    pub fn set_nominated(&mut self, info: &Arc<PodInfo>) {
        match info.nominated_node.clone().filter(|_| info.is_pending()) {
            Some(node) => self.nominate(info.clone(), &node),
            None => self.clear_nominated(&info.key),
        }
    }

    /// Nominates `info` to `node` (preemption made room there for it).
    pub fn nominate(&mut self, info: Arc<PodInfo>, node: &str) {
        self.clear_nominated(&info.key);
        self.nominated_of.insert(info.key.clone(), node.to_string());
        self.nominated.entry(node.to_string()).or_default().push(info);
    }

    fn clear_nominated(&mut self, key: &PodKey) {
        if let Some(node) = self.nominated_of.remove(key)
            && let Some(list) = self.nominated.get_mut(&node)
        {
            list.retain(|p| &p.key != key);
            if list.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::testing::{pod, pod_with};
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "pods": "10"}}})).expect("node")
    }

    fn bound(name: &str, node: &str, cpu: &str) -> Arc<PodInfo> {
        Arc::new(pod(name, json!({"nodeName": node, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]})))
    }

    fn pending(name: &str, cpu: &str) -> Arc<PodInfo> {
        Arc::new(pod(name, json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]})))
    }

    fn used(c: &Cache, n: &str) -> i64 {
        c.node(n).map(|n| n.requested.milli_cpu).unwrap_or(-1)
    }

    #[test]
    fn assumptions_count_until_confirmed_or_forgotten() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4"));
        c.upsert_node(&node("n2", "4"));
        c.assume(pending("a", "1"), "n1");
        assert_eq!(used(&c, "n1"), 1000, "counted at once");
        assert_eq!(c.update_pod(pending("a", "1")), Change::Nothing, "a status update before the bind shows keeps the assumption");
        assert_eq!(used(&c, "n1"), 1000);
        c.update_pod(bound("a", "n1", "1"));
        assert!(!c.is_assumed(&PodKey::new("default", "a")), "confirmed");
        c.forget(&PodKey::new("default", "a"));
        assert_eq!(used(&c, "n1"), 1000, "forgetting a confirmed pod does nothing");
        c.assume(pending("b", "2"), "n1");
        c.forget(&PodKey::new("default", "b"));
        assert_eq!(used(&c, "n1"), 1000, "a failed binding frees the room");
        c.assume(pending("d", "1"), "n1");
        assert_eq!(c.update_pod(bound("d", "n2", "1")), Change::MayHelp, "someone else bound it elsewhere");
        assert_eq!((used(&c, "n1"), used(&c, "n2")), (1000, 1000));
    }

    #[test]
    fn terminal_and_deleted_pods_free_their_room() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4"));
        c.update_pod(bound("a", "n1", "1"));
        c.update_pod(bound("b", "n1", "1"));
        let done = Arc::new(pod_with(
            "a",
            json!({"nodeName": "n1", "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}),
            json!({"phase": "Succeeded"}),
        ));
        assert_eq!(c.update_pod(done), Change::MayHelp);
        assert_eq!(c.remove_pod(&PodKey::new("default", "b")), Change::MayHelp);
        assert_eq!(used(&c, "n1"), 0);
    }

    #[test]
    fn nodes_come_and_go_and_only_relevant_updates_help() {
        let mut c = Cache::new();
        assert_eq!(c.upsert_node(&node("n1", "4")).0, Change::MayHelp);
        assert_eq!(c.upsert_node(&node("n1", "4")).0, Change::Nothing, "a heartbeat-only update");
        assert_eq!(c.upsert_node(&node("n1", "8")).0, Change::MayHelp, "more room");
        c.update_pod(bound("a", "n1", "1"));
        c.remove_node("n1");
        assert!(c.nodes().is_empty(), "a removed node is not offered");
        assert_eq!(c.upsert_node(&node("n1", "8")).0, Change::MayHelp);
        assert_eq!(used(&c, "n1"), 1000, "its pods were still accounted");
        c.update_pod(bound("x", "ghost", "1"));
        assert!(c.node("ghost").is_none(), "a pod on an unknown node is counted but the node is not offered");
        c.retain_nodes(&BTreeSet::new());
        assert_eq!(c.node_count(), 0);
    }

    #[test]
    fn a_relist_drops_what_is_gone_but_keeps_bindings_in_flight() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4"));
        c.update_pod(bound("a", "n1", "1"));
        c.assume(pending("b", "1"), "n1");
        c.retain_pods(&BTreeSet::new());
        assert_eq!(used(&c, "n1"), 1000, "only the assumed pod is left");
        assert!(c.is_assumed(&PodKey::new("default", "b")));
    }

    #[test]
    fn nominations_follow_the_pods() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4"));
        let p = Arc::new(pod_with("p", json!({"priority": 10}), json!({"nominatedNodeName": "n1"})));
        c.update_pod(p);
        assert_eq!(c.nominated().get("n1").map(Vec::len), Some(1));
        c.update_pod(bound("p", "n1", "1"));
        assert!(c.nominated().is_empty(), "bound: no longer nominated");
        c.nominate(pending("q", "1"), "n1");
        c.remove_pod(&PodKey::new("default", "q"));
        assert!(c.nominated().is_empty());
    }
}
