//! kube-scheduler's explanation of a failed attempt (`FitError.Error()`), the text users see in
//! `kubectl describe pod`:
//!
//! ```text
//! 0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..
//! ```
//!
//! Invariants: every reason of every refusing node is counted once per node; the
//! `"<count> <reason>"` strings are sorted as strings (so `"10 …"` sorts before `"2 …"`, as in
//! kube); the preemption part is appended as `" <message>."` (its own message ends with a dot,
//! hence kube's double dot).

use crate::plugins::Status;
use std::collections::BTreeMap;

/// kube's `ErrNoNodesAvailable`.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// Why a pod fits nowhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes the cluster has.
    pub num_all_nodes: usize,
    /// Each refusing node's status, by node name.
    pub statuses: BTreeMap<String, Status>,
    /// What preemption said (`preemption: …`), when it ran.
    pub post_filter: Option<String>,
}

/// `0/N nodes are available: <counts>.` for a set of per-node statuses.
pub fn nodes_unavailable<'a>(num_all_nodes: usize, statuses: impl IntoIterator<Item = &'a Status>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses {
        for r in &s.reasons {
            *counts.entry(r.as_ref()).or_insert(0) += 1;
        }
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut msg = format!("0/{num_all_nodes} nodes are available:");
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    msg
}

impl FitError {
    /// The message, byte for byte as kube-scheduler writes it.
    pub fn message(&self) -> String {
        if self.num_all_nodes == 0 {
            return NO_NODES.to_string();
        }
        let mut msg = nodes_unavailable(self.num_all_nodes, self.statuses.values());
        if let Some(p) = self.post_filter.as_deref().filter(|p| !p.is_empty()) {
            msg.push_str(&format!(" {p}."));
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{Code, Status};

    fn st(reasons: &[&'static str]) -> Status {
        Status { plugin: "x", code: Code::Unschedulable, reasons: reasons.iter().map(|r| (*r).into()).collect() }
    }

    fn err(statuses: Vec<(&str, Status)>, all: usize, post: Option<&str>) -> FitError {
        FitError {
            num_all_nodes: all,
            statuses: statuses.into_iter().map(|(n, s)| (n.to_string(), s)).collect(),
            post_filter: post.map(String::from),
        }
    }

    #[test]
    fn messages_are_kube_schedulers() {
        let table: Vec<(&str, FitError, &str)> = vec![
            (
                "the issue's example",
                err(
                    vec![
                        ("a", st(&["node(s) had untolerated taint {dedicated: gpu}"])),
                        ("b", st(&["Insufficient cpu"])),
                        ("c", st(&["Insufficient cpu"])),
                    ],
                    3,
                    Some(
                        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.",
                    ),
                ),
                "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod..",
            ),
            (
                "a node with two shortfalls counts in both",
                err(vec![("a", st(&["Insufficient cpu", "Insufficient memory"])), ("b", st(&["Insufficient memory"]))], 2, None),
                "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory.",
            ),
            (
                "counts sort as strings, as kube's sort.Strings does",
                err(
                    (0..12)
                        .map(|i| {
                            (
                                ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "na", "nb"][i],
                                st(&[if i < 10 { "Too many pods" } else { "node(s) were unschedulable" }]),
                            )
                        })
                        .collect(),
                    12,
                    None,
                ),
                "0/12 nodes are available: 10 Too many pods, 2 node(s) were unschedulable.",
            ),
            (
                "not eligible for preemption",
                err(vec![("a", st(&["Insufficient cpu"]))], 1, Some("preemption: not eligible due to preemptionPolicy=Never.")),
                "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never..",
            ),
            ("no nodes at all", err(vec![], 0, None), "no nodes available to schedule pods"),
        ];
        for (name, e, want) in table {
            assert_eq!(e.message(), want, "{name}");
        }
    }
}
