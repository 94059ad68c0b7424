//! One scheduling attempt for one pod (kube's `schedulePod`): filter nodes until enough are
//! feasible, score those, pick the best, breaking ties at random.
//!
//! Invariants:
//! - Nodes are visited round-robin from where the previous attempt stopped, and the search
//!   stops after `num_feasible_nodes_to_find` feasible nodes (kube's adaptive
//!   percentageOfNodesToScore: all nodes below 100, 42 % of 1,000, never below 5 % or 100).
//! - When no node fits, every node has been visited, so the explanation covers all of them.
//! - Filtering counts nominated pods of equal or higher priority on their node (they were
//!   promised the room by preemption); the pod's own nomination does not count against it.
//! - Ties are broken with the randomness passed in (reservoir sampling as kube's
//!   `selectHost`), so a seed makes a run repeatable.

use crate::message::FitError;
use crate::node::NodeInfo;
use crate::plugins::fit::Strategy;
use crate::plugins::{self, Filtered};
use crate::pod::PodInfo;
use crate::score::{self, Weights};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// kube's `minFeasibleNodesToFind`.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// kube's `minFeasibleNodesPercentageToFind`.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Pods nominated to nodes by preemption, by node name.
pub type Nominated = BTreeMap<String, Vec<Arc<PodInfo>>>;

/// Tunables of the algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlgorithmConfig {
    /// `percentageOfNodesToScore`: 0 means kube's adaptive rule.
    pub percentage_of_nodes_to_score: u32,
    /// NodeResourcesFit's scoring strategy.
    pub strategy: Strategy,
    /// Score plugin weights.
    pub weights: Weights,
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        AlgorithmConfig { percentage_of_nodes_to_score: 0, strategy: Strategy::LeastAllocated, weights: Weights::default() }
    }
}

/// kube's `numFeasibleNodesToFind`.
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut p = percentage as usize;
    if p == 0 {
        p = 50usize.saturating_sub(num_all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (num_all_nodes * p.min(100) / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Runs the filters for `pod` on `node`, with the nominated pods that outrank it counted.
pub fn filter_with_nominated(pod: &PodInfo, node: &NodeInfo, nominated: &Nominated) -> Filtered {
    if nominated.is_empty() {
        return plugins::run_filters(pod, node);
    }
    let extra: Vec<&Arc<PodInfo>> =
        nominated.get(node.name()).into_iter().flatten().filter(|n| n.key != pod.key && n.priority >= pod.priority).collect();
    if extra.is_empty() {
        return plugins::run_filters(pod, node);
    }
    let mut with = node.clone();
    for n in extra {
        with.add_pod(n.clone());
    }
    plugins::run_filters(pod, &with)
}

/// Where a pod goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The chosen node.
    pub node: String,
    /// How many nodes were filtered.
    pub evaluated: usize,
    /// How many of those fit.
    pub feasible: usize,
}

/// The algorithm with its round-robin position.
#[derive(Clone, Debug, Default)]
pub struct Algorithm {
    /// Its settings.
    pub config: AlgorithmConfig,
    next_start: usize,
}

impl Algorithm {
    /// An algorithm with `config`, starting at the first node.
    pub fn new(config: AlgorithmConfig) -> Algorithm {
        Algorithm { config, next_start: 0 }
    }

    /// Finds a node for `pod` among `nodes` (in a stable order), or says why none fits.
    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        nominated: &Nominated,
        rng: &mut impl Rng,
    ) -> Result<Placement, FitError> {
        let all = nodes.len();
        if all == 0 {
            return Err(FitError::default());
        }
        let want = num_feasible_nodes_to_find(self.config.percentage_of_nodes_to_score, all);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(all));
        let mut statuses = BTreeMap::new();
        let start = self.next_start % all;
        let mut visited = 0;
        for i in 0..all {
            if feasible.len() >= want {
                break;
            }
            let node = nodes[(start + i) % all];
            visited += 1;
            match filter_with_nominated(pod, node, nominated) {
                Ok(()) => feasible.push(node),
                Err(s) => {
                    statuses.insert(node.name().to_string(), s);
                }
            }
        }
        self.next_start = (start + visited) % all;
        if feasible.is_empty() {
            return Err(FitError { num_all_nodes: all, statuses, post_filter: None });
        }
        let chosen = if feasible.len() == 1 {
            feasible[0]
        } else {
            let scores = score::prioritize(pod, &feasible, self.config.strategy, self.config.weights);
            feasible[select_host(&scores, rng)]
        };
        Ok(Placement { node: chosen.name().to_string(), evaluated: visited, feasible: feasible.len() })
    }
}

/// The index of the highest score; among equals, each is equally likely (reservoir sampling).
pub fn select_host(scores: &[i64], rng: &mut impl Rng) -> usize {
    let (mut best, mut max, mut count) = (0usize, i64::MIN, 0u32);
    for (i, s) in scores.iter().copied().enumerate() {
        if s > max {
            (best, max, count) = (i, s, 1);
        } else if s == max {
            count += 1;
            if rng.random_range(0..count) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::{node, sized};
    use crate::pod::testing::{pod, requesting};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    #[test]
    fn feasible_node_counts_follow_kube() {
        let table = [
            (0, 1, 1),
            (0, 99, 99),
            (0, 100, 100),
            (0, 1000, 420),
            (0, 5000, 500),
            (0, 6000, 300),
            (0, 100_000, 5000),
            (10, 1000, 100),
            (50, 1000, 500),
            (100, 1000, 1000),
            (200, 1000, 1000),
        ];
        for (percentage, nodes, want) in table {
            assert_eq!(num_feasible_nodes_to_find(percentage, nodes), want, "{percentage}% of {nodes}");
        }
    }

    #[test]
    fn ties_are_broken_by_the_seed_and_spread_evenly() {
        let scores = [5, 9, 9, 1, 9];
        let mut rng = StdRng::seed_from_u64(7);
        let mut hits = [0u32; 5];
        for _ in 0..3000 {
            hits[select_host(&scores, &mut rng)] += 1;
        }
        assert_eq!((hits[0], hits[3]), (0, 0), "only the best are chosen");
        for i in [1, 2, 4] {
            assert!((800..1200).contains(&hits[i]), "even spread: {hits:?}");
        }
        let pick = |seed| select_host(&scores, &mut StdRng::seed_from_u64(seed));
        assert_eq!(pick(42), pick(42), "same seed, same choice");
        assert_eq!(select_host(&[3, 7, 2], &mut StdRng::seed_from_u64(1)), 1);
    }

    #[test]
    fn the_best_scoring_feasible_node_wins() {
        let small = sized("small", "1", "1Gi");
        let big = sized("big", "8", "16Gi");
        let tainted = node(
            "tainted",
            json!({}),
            json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}),
            json!({"cpu": "64", "memory": "64Gi", "pods": "10"}),
        );
        let mut alg = Algorithm::default();
        let mut rng = StdRng::seed_from_u64(0);
        let nodes = [&small, &big, &tainted];
        let got = alg.schedule(&requesting("p", "500m", "512Mi"), &nodes, &Nominated::new(), &mut rng).expect("fits");
        assert_eq!((got.node.as_str(), got.evaluated, got.feasible), ("big", 3, 2), "least allocated prefers the emptier node");
        alg.config.strategy = Strategy::MostAllocated;
        let got = alg.schedule(&requesting("p", "500m", "512Mi"), &nodes, &Nominated::new(), &mut rng).expect("fits");
        assert_eq!(got.node, "small", "most allocated packs");
        let e = alg.schedule(&requesting("p", "16", ""), &nodes, &Nominated::new(), &mut rng).expect_err("fits nowhere");
        assert_eq!(e.message(), "0/3 nodes are available: 1 node(s) had untolerated taint {k: }, 2 Insufficient cpu.");
        let e = alg.schedule(&requesting("p", "1", ""), &[], &Nominated::new(), &mut rng).expect_err("no nodes");
        assert_eq!(e.message(), "no nodes available to schedule pods");
    }

    #[test]
    fn the_search_stops_early_and_resumes_round_robin() {
        let nodes: Vec<NodeInfo> = (0..200).map(|i| sized(&format!("n{i:03}"), "4", "4Gi")).collect();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut alg = Algorithm::default();
        let mut rng = StdRng::seed_from_u64(0);
        let p = requesting("p", "1", "1Gi");
        let first = alg.schedule(&p, &refs, &Nominated::new(), &mut rng).expect("fits");
        assert_eq!((first.evaluated, first.feasible), (100, 100), "50 - 200/125 = 49 % of 200 is 98, raised to the minimum 100");
        let second = alg.schedule(&p, &refs, &Nominated::new(), &mut rng).expect("fits");
        assert!(second.node.as_str() >= "n100", "the second attempt starts where the first stopped: {}", second.node);
    }

    #[test]
    fn nominated_pods_of_higher_priority_hold_their_room() {
        let n = sized("n", "2", "4Gi");
        let mut nominated = Nominated::new();
        nominated.insert(
            "n".into(),
            vec![Arc::new(pod(
                "big",
                json!({"priority": 100, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}}}]}),
            ))],
        );
        let low = pod("low", json!({"priority": 1, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}));
        let high =
            pod("high", json!({"priority": 1000, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}));
        assert!(filter_with_nominated(&low, &n, &nominated).is_err(), "a lower-priority pod may not take the nominated room");
        assert!(filter_with_nominated(&high, &n, &nominated).is_ok(), "a higher-priority pod ignores lower nominations");
        let big_again =
            pod("big", json!({"priority": 100, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}}}]}));
        assert!(filter_with_nominated(&big_again, &n, &nominated).is_ok(), "its own nomination does not count against it");
    }
}
