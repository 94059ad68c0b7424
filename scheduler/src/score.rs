//! Scoring as the default profile does it: each score plugin rates every feasible node,
//! plugins whose raw scores are not already 0–100 are normalised, and the weighted sum ranks
//! the nodes.
//!
//! Weights (kube-scheduler's default profile, the plugins Keel runs): NodeResourcesFit 1,
//! NodeResourcesBalancedAllocation 1, NodeAffinity 2, TaintToleration 3.
//! Normalisation is `DefaultNormalizeScore`: scale so the best node has 100 (NodeAffinity), or
//! the reverse so the node with the fewest untolerated soft taints has 100 (TaintToleration).

use crate::node::NodeInfo;
use crate::plugins::fit::{self, MAX_NODE_SCORE, Strategy};
use crate::plugins::{affinity, taints};
use crate::pod::PodInfo;

/// Plugin weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// NodeResourcesFit.
    pub fit: i64,
    /// NodeResourcesBalancedAllocation.
    pub balanced: i64,
    /// NodeAffinity (preferred terms).
    pub affinity: i64,
    /// TaintToleration (PreferNoSchedule).
    pub taints: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { fit: 1, balanced: 1, affinity: 2, taints: 3 }
    }
}

/// kube's `DefaultNormalizeScore`: scales `scores` to 0..=100 by the maximum; `reverse` turns
/// "more is worse" into "more is better". All zeros stay 0 (or all 100 when reversed).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// The weighted total of every plugin's (normalised) score, one per node, in `nodes`' order.
pub fn prioritize(pod: &PodInfo, nodes: &[&NodeInfo], strategy: Strategy, w: Weights) -> Vec<i64> {
    let mut totals: Vec<i64> = nodes.iter().map(|n| w.fit * fit::score(pod, n, strategy) + w.balanced * fit::balanced(pod, n)).collect();
    if !pod.affinity.preferred.is_empty() {
        let mut s: Vec<i64> = nodes.iter().map(|n| affinity::score(pod, n)).collect();
        default_normalize(&mut s, false);
        totals.iter_mut().zip(s).for_each(|(t, s)| *t += w.affinity * s);
    }
    let mut s: Vec<i64> = nodes.iter().map(|n| taints::score(pod, n)).collect();
    default_normalize(&mut s, true);
    totals.iter_mut().zip(s).for_each(|(t, s)| *t += w.taints * s);
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::node;
    use crate::pod::testing::{pod, requesting};
    use serde_json::json;

    #[test]
    fn normalisation_follows_default_normalize_score() {
        let table: Vec<(&str, Vec<i64>, bool, Vec<i64>)> = vec![
            ("scaled to the max", vec![10, 5, 0], false, vec![100, 50, 0]),
            ("integer division", vec![3, 1, 2], false, vec![100, 33, 66]),
            ("all zero stay zero", vec![0, 0], false, vec![0, 0]),
            ("reversed: fewest is best", vec![2, 1, 0], true, vec![0, 50, 100]),
            ("reversed all zero: all best", vec![0, 0, 0], true, vec![100, 100, 100]),
            ("empty", vec![], false, vec![]),
        ];
        for (name, mut scores, reverse, want) in table {
            default_normalize(&mut scores, reverse);
            assert_eq!(scores, want, "{name}");
        }
    }

    #[test]
    fn weights_combine_the_plugins() {
        let a = node("a", json!({"zone": "x"}), json!({}), json!({"cpu": "4", "memory": "8Gi", "pods": "10"}));
        let b = node(
            "b",
            json!({}),
            json!({"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}),
            json!({"cpu": "4", "memory": "8Gi", "pods": "10"}),
        );
        let p = requesting("p", "2", "4Gi");
        // fit 50 + balanced 100 + taints (a: 0 untolerated → 100 × 3, b: 1 → 0).
        assert_eq!(prioritize(&p, &[&a, &b], Strategy::LeastAllocated, Weights::default()), vec![450, 150]);
        let preferring = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]}}]}}}),
        );
        let t = prioritize(&preferring, &[&a, &b], Strategy::LeastAllocated, Weights::default());
        // best effort: fit 72 (1 core 100m of 4 → 97, memory 200Mi of 8Gi → 97: (97+97)/2), balanced 0.
        assert_eq!(t[0] - t[1], 2 * 100 + 3 * 100, "affinity (×2) and taints (×3) both favour a");
    }
}
