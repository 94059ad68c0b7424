//! NodeResourcesFit (filter, and the least/most-allocated scores) and
//! NodeResourcesBalancedAllocation (score).
//!
//! Invariants:
//! - The filter compares the pod's *real* request with `allocatable − requested` (requested
//!   includes assumed pods), resource by resource, and lists every shortfall; a resource the
//!   pod does not request is not checked (an overcommitted node still takes zero-CPU pods).
//! - The pod count is always checked: `Too many pods`.
//! - Scores use the *non-zero* CPU/memory (100m / 200Mi per container that states none), so
//!   best-effort pods spread instead of piling onto one node. Balanced allocation uses the real
//!   requests and skips best-effort pods.
//! - Every score is an integer in 0..=100 computed with kube's integer arithmetic.

use super::{Code, Filtered, Status};
use crate::node::NodeInfo;
use crate::pod::PodInfo;
use std::borrow::Cow;

/// The filter/score plugin's name.
pub const NAME: &str = "NodeResourcesFit";
/// The balanced-allocation plugin's name.
pub const BALANCED: &str = "NodeResourcesBalancedAllocation";
/// kube-scheduler's `MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// Refuses a node that lacks room for the pod: `Too many pods`, `Insufficient cpu`, … .
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    let alloc = &node.spec.allocatable;
    if node.pods.len() as i64 + 1 > alloc.pods {
        reasons.push("Too many pods".into());
    }
    let want = &pod.requests.requested;
    if !want.is_zero() {
        let used = &node.requested;
        if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory > 0 && want.memory > alloc.memory - used.memory {
            reasons.push("Insufficient memory".into());
        }
        if want.ephemeral_storage > 0 && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, v) in &want.scalar {
            let free = alloc.scalar.get(name).copied().unwrap_or(0) - used.scalar.get(name).copied().unwrap_or(0);
            if *v > free {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
    }
    if reasons.is_empty() { Ok(()) } else { Err(Status { plugin: NAME, code: Code::Unschedulable, reasons }) }
}

/// Which NodeResourcesFit scoring strategy (`--scoring-strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Prefer the emptiest node (the default): spreads pods.
    LeastAllocated,
    /// Prefer the fullest node that fits: packs pods.
    MostAllocated,
}

fn least(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// NodeResourcesFit's score for the pod on the node: CPU and memory, weight 1 each.
pub fn score(pod: &PodInfo, node: &NodeInfo, strategy: Strategy) -> i64 {
    let alloc = &node.spec.allocatable;
    let pairs = [
        (node.non_zero_milli_cpu.saturating_add(pod.requests.non_zero_milli_cpu), alloc.milli_cpu),
        (node.non_zero_memory.saturating_add(pod.requests.non_zero_memory), alloc.memory),
    ];
    let (mut sum, mut weights) = (0i64, 0i64);
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        sum += match strategy {
            Strategy::LeastAllocated => least(requested, capacity),
            Strategy::MostAllocated => most(requested, capacity),
        };
        weights += 1;
    }
    if weights == 0 { 0 } else { sum / weights }
}

/// NodeResourcesBalancedAllocation: 100 × (1 − the standard deviation of the CPU and memory
/// fractions the node would have with the pod). Best-effort pods score 0 everywhere (kube
/// skips the plugin for them).
pub fn balanced(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let want = &pod.requests.requested;
    if want.milli_cpu == 0 && want.memory == 0 {
        return 0;
    }
    let alloc = &node.spec.allocatable;
    let mut fractions = Vec::with_capacity(2);
    for (requested, capacity) in
        [(node.requested.milli_cpu + want.milli_cpu, alloc.milli_cpu), (node.requested.memory + want.memory, alloc.memory)]
    {
        if capacity == 0 {
            continue;
        }
        fractions.push((requested as f64 / capacity as f64).min(1.0));
    }
    let std = if fractions.len() == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::{node, sized};
    use crate::pod::testing::{pod, requesting};
    use serde_json::json;
    use std::sync::Arc;

    fn reasons(r: Filtered) -> Vec<String> {
        r.err().map(|s| s.reasons.iter().map(|x| x.to_string()).collect()).unwrap_or_default()
    }

    #[test]
    fn the_filter_lists_every_shortfall() {
        let mut n = sized("n", "2", "4Gi");
        n.add_pod(Arc::new(requesting("a", "1500m", "3Gi")));
        let table: Vec<(&str, PodInfo, Vec<&str>)> = vec![
            ("fits", requesting("p", "500m", "1Gi"), vec![]),
            ("cpu short", requesting("p", "501m", "1Gi"), vec!["Insufficient cpu"]),
            ("memory short", requesting("p", "100m", "1025Mi"), vec!["Insufficient memory"]),
            ("both short", requesting("p", "1", "2Gi"), vec!["Insufficient cpu", "Insufficient memory"]),
            ("zero request always fits by resources", requesting("p", "", ""), vec![]),
            ("zero cpu on a full cpu node fits", requesting("p", "0", "1Gi"), vec![]),
            (
                "init container max counts",
                pod(
                    "p",
                    json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}],
                                 "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}),
                ),
                vec!["Insufficient cpu"],
            ),
            (
                "ephemeral storage and extended resources",
                pod(
                    "p",
                    json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"ephemeral-storage": "1Gi", "example.com/gpu": "1"}}}]}),
                ),
                vec!["Insufficient ephemeral-storage", "Insufficient example.com/gpu"],
            ),
        ];
        for (name, p, want) in table {
            assert_eq!(reasons(filter(&p, &n)), want, "{name}");
        }
    }

    #[test]
    fn the_pod_count_is_always_checked() {
        let mut n = node("n", json!({}), json!({}), json!({"cpu": "4", "memory": "4Gi", "pods": "1"}));
        assert!(filter(&requesting("p", "", ""), &n).is_ok());
        n.add_pod(Arc::new(requesting("a", "", "")));
        assert_eq!(reasons(filter(&requesting("p", "", ""), &n)), vec!["Too many pods"]);
        assert_eq!(reasons(filter(&requesting("p", "5", ""), &n)), vec!["Too many pods", "Insufficient cpu"]);
        let no_pods = node("n", json!({}), json!({}), json!({"cpu": "4"}));
        assert_eq!(reasons(filter(&requesting("p", "", ""), &no_pods)), vec!["Too many pods"], "no pods allocatable: nothing fits");
    }

    #[test]
    fn least_and_most_allocated_scores() {
        // 4 cores / 8Gi, 1 core / 2Gi already requested.
        let mut n = sized("n", "4", "8Gi");
        n.add_pod(Arc::new(requesting("a", "1", "2Gi")));
        let table: Vec<(&str, PodInfo, i64, i64)> = vec![
            // cpu (1+1)/4 used → least 50, memory (2+2)/8 → 50.
            ("half used after placing", requesting("p", "1", "2Gi"), 50, 50),
            // cpu 3/4 → least 25, most 75; memory 2Gi+200Mi (floor) → least (8192-2248)*100/8192=72, most 27.
            ("memory unstated counts 200Mi", requesting("p", "2", ""), (25 + 72) / 2, (75 + 27) / 2),
            // best effort: 1.1 cores → least 72, mem 2248Mi → 72.
            ("best effort counts 100m/200Mi", requesting("p", "", ""), 72, 27),
            ("more than the node: least 0, most capped at 100", requesting("p", "8", "16Gi"), 0, 100),
        ];
        for (name, p, want_least, want_most) in table {
            assert_eq!(score(&p, &n, Strategy::LeastAllocated), want_least, "{name}: least");
            assert_eq!(score(&p, &n, Strategy::MostAllocated), want_most, "{name}: most");
        }
        let empty = node("n", json!({}), json!({}), json!({"pods": "10"}));
        assert_eq!(score(&requesting("p", "1", "1Gi"), &empty, Strategy::LeastAllocated), 0, "no allocatable: 0, not a division by zero");
    }

    #[test]
    fn balanced_allocation_scores() {
        let n = sized("n", "4", "8Gi");
        let table: Vec<(&str, PodInfo, i64)> = vec![
            ("same fraction of cpu and memory: 100", requesting("p", "2", "4Gi"), 100),
            ("cpu 1/2, memory 1/8: std 0.1875 → 81", requesting("p", "2", "1Gi"), 81),
            ("all cpu, no memory: std 0.5 → 50", requesting("p", "4", "0"), 50),
            ("fractions above 1 are capped", requesting("p", "8", "0"), 50),
            ("best effort: skipped, 0", requesting("p", "", ""), 0),
        ];
        for (name, p, want) in table {
            assert_eq!(balanced(&p, &n), want, "{name}");
        }
    }
}
