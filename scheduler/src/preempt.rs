//! Preemption (kube's DefaultPreemption PostFilter): when a pod fits nowhere, find the node
//! where evicting the fewest, least important lower-priority pods makes it fit.
//!
//! Invariants:
//! - Only nodes refused for reasons eviction can fix (`Code::Unschedulable`: resources,
//!   ports) are tried; the others are "Preemption is not helpful for scheduling".
//! - Only pods of strictly lower priority are ever victims.
//! - On a node, all lower-priority pods are removed, the pod must then fit, and victims are
//!   reprieved one by one from the most important down (higher priority, then older), so the
//!   victim set is minimal in that order.
//! - The node is chosen as kube's `pickOneNodeForPreemption` does (PodDisruptionBudgets are
//!   not served, so that criterion is equal everywhere): lowest highest-victim priority, lowest
//!   sum of priorities, fewest victims, latest start of the most important victims, first.

use crate::message::nodes_unavailable;
use crate::node::NodeInfo;
use crate::plugins::{Code, Status};
use crate::pod::PodInfo;
use crate::schedule::{Nominated, filter_with_nominated};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";
/// For nodes whose refusal eviction cannot fix.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// For nodes with no lower-priority pod.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Where to make room and whom to evict.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The node the preemptor is nominated to.
    pub node: String,
    /// The pods to evict, most important first.
    pub victims: Vec<Arc<PodInfo>>,
}

/// kube's `PodEligibleToPreemptOthers`: `Err` carries the message for the event.
pub fn eligible(pod: &PodInfo, nominated_node: Option<&NodeInfo>) -> Result<(), String> {
    if pod.never_preempts {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    // A pod that already preempted waits for its victims to go rather than evicting more.
    if let Some(node) = nominated_node
        && node.pods.iter().any(|p| p.deleting && p.priority < pod.priority)
    {
        return Err("not eligible due to a terminating pod on the nominated node.".into());
    }
    Ok(())
}

/// Higher priority first, then the pod that started earlier (kube's `MoreImportantPod`).
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority.cmp(&a.priority).then(a.start_time.unwrap_or(i64::MAX).cmp(&b.start_time.unwrap_or(i64::MAX)))
}

/// The minimal victims on `node`, or why evicting cannot help there.
pub fn select_victims_on_node(pod: &PodInfo, node: &NodeInfo, nominated: &Nominated) -> Result<Vec<Arc<PodInfo>>, Status> {
    let mut potential: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if potential.is_empty() {
        return Err(Status::new(NAME, Code::UnschedulableAndUnresolvable, NO_VICTIMS));
    }
    let mut trial = node.clone();
    for p in &potential {
        trial.remove_pod(&p.key);
    }
    filter_with_nominated(pod, &trial, nominated)?;
    potential.sort_by(|a, b| more_important(a, b));
    let mut victims = Vec::new();
    for p in potential {
        trial.add_pod(p.clone());
        if filter_with_nominated(pod, &trial, nominated).is_err() {
            trial.remove_pod(&p.key);
            victims.push(p);
        }
    }
    if victims.is_empty() {
        return Err(Status::new(NAME, Code::UnschedulableAndUnresolvable, NO_VICTIMS));
    }
    Ok(victims)
}

/// The ordering key of a candidate (smaller is better), kube's criteria in order.
fn rank(c: &Candidate) -> (i32, i64, usize, std::cmp::Reverse<i64>) {
    let highest = c.victims.first().map(|v| v.priority).unwrap_or(i32::MIN);
    let sum: i64 = c.victims.iter().map(|v| i64::from(v.priority) + (1i64 << 31)).sum();
    let earliest_of_highest =
        c.victims.iter().filter(|v| v.priority == highest).map(|v| v.start_time.unwrap_or(i64::MAX)).min().unwrap_or(i64::MAX);
    (highest, sum, c.victims.len(), std::cmp::Reverse(earliest_of_highest))
}

/// Finds the best node to preempt on. `statuses` are the filter refusals of the failed attempt
/// (every node's, since nothing fit). `Err` is the `preemption: …` message.
pub fn preempt(
    pod: &PodInfo,
    nodes: &[&NodeInfo],
    statuses: &BTreeMap<String, Status>,
    nominated: &Nominated,
) -> Result<Candidate, String> {
    let nominated_node = pod.nominated_node.as_deref().and_then(|n| nodes.iter().find(|x| x.name() == n)).copied();
    eligible(pod, nominated_node).map_err(|m| format!("preemption: {m}"))?;
    let mut why: BTreeMap<&str, Status> = BTreeMap::new();
    let mut candidates = Vec::new();
    for node in nodes {
        match statuses.get(node.name()) {
            Some(s) if s.code == Code::UnschedulableAndUnresolvable => {
                why.insert(node.name(), Status::new(NAME, Code::UnschedulableAndUnresolvable, NOT_HELPFUL));
            }
            _ => match select_victims_on_node(pod, node, nominated) {
                Ok(victims) => candidates.push(Candidate { node: node.name().to_string(), victims }),
                Err(s) => {
                    why.insert(node.name(), s);
                }
            },
        }
    }
    let best = candidates.into_iter().enumerate().min_by(|(i, a), (j, b)| rank(a).cmp(&rank(b)).then(i.cmp(j))).map(|(_, c)| c);
    best.ok_or_else(|| format!("preemption: {}", nodes_unavailable(nodes.len(), why.values())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::{node, sized};
    use crate::plugins::run_filters;
    use crate::pod::testing::{pod, pod_with};
    use serde_json::json;

    fn prio(name: &str, priority: i32, cpu: &str, started: i64) -> Arc<PodInfo> {
        let t = jiff::Timestamp::from_second(started).map(|t| t.to_string()).unwrap_or_default();
        Arc::new(pod_with(
            name,
            json!({"priority": priority, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}),
            json!({"startTime": t}),
        ))
    }

    fn statuses(p: &PodInfo, nodes: &[&NodeInfo]) -> BTreeMap<String, Status> {
        nodes.iter().filter_map(|n| run_filters(p, n).err().map(|s| (n.name().to_string(), s))).collect()
    }

    fn names(v: &[Arc<PodInfo>]) -> Vec<&str> {
        v.iter().map(|p| p.key.name()).collect()
    }

    #[test]
    fn victims_are_minimal_and_least_important() {
        let mut n = sized("n", "4", "8Gi");
        for p in [prio("old-low", 1, "1", 100), prio("new-low", 1, "1", 200), prio("mid", 5, "1", 50), prio("high", 100, "1", 10)] {
            n.add_pod(p);
        }
        type Row<'a> = (&'a str, Arc<PodInfo>, Result<Vec<&'a str>, &'a str>);
        let table: Vec<Row> = vec![
            ("needs one core: the newest lowest goes", prio("p", 10, "1", 0), Ok(vec!["new-low"])),
            ("needs two: both lowest go, mid is reprieved", prio("p", 10, "2", 0), Ok(vec!["old-low", "new-low"])),
            ("needs three: mid goes too", prio("p", 10, "3", 0), Ok(vec!["mid", "old-low", "new-low"])),
            ("needs four: even with all lower gone, high stays", prio("p", 10, "4", 0), Err("Insufficient cpu")),
            ("equal priority is never a victim", prio("p", 1, "1", 0), Err(NO_VICTIMS)),
        ];
        for (name, p, want) in table {
            let got = select_victims_on_node(&p, &n, &Nominated::new());
            match (got, want) {
                (Ok(v), Ok(w)) => assert_eq!(names(&v), w, "{name}"),
                (Err(s), Err(w)) => assert_eq!(s.reasons[0], w, "{name}"),
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn the_node_with_the_least_important_victims_is_chosen() {
        let mut a = sized("a", "2", "8Gi");
        a.add_pod(prio("a-mid", 5, "2", 100));
        let mut b = sized("b", "2", "8Gi");
        b.add_pod(prio("b-low1", 1, "1", 100));
        b.add_pod(prio("b-low2", 1, "1", 100));
        let mut c = sized("c", "2", "8Gi");
        c.add_pod(prio("c-low", 1, "2", 100));
        let p = prio("p", 10, "2", 0);
        let all = [&a, &b, &c];
        let got = preempt(&p, &all, &statuses(&p, &all), &Nominated::new()).expect("a candidate");
        assert_eq!((got.node.as_str(), names(&got.victims)), ("c", vec!["c-low"]), "lowest priority, then fewest victims");
        let got = preempt(&p, &[&a, &b], &statuses(&p, &[&a, &b]), &Nominated::new()).expect("a candidate");
        assert_eq!(got.node, "b", "lower highest-victim priority beats fewer victims");
        // Same priorities and counts: the node whose most important victim started last.
        let mut d = sized("d", "2", "8Gi");
        d.add_pod(prio("d-low", 1, "2", 300));
        let got = preempt(&p, &[&c, &d], &statuses(&p, &[&c, &d]), &Nominated::new()).expect("a candidate");
        assert_eq!(got.node, "d");
    }

    #[test]
    fn preemption_explains_itself_as_kube_does() {
        let mut full = sized("full", "1", "1Gi");
        full.add_pod(prio("same", 10, "1", 0));
        let tainted = node(
            "tainted",
            json!({}),
            json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
            json!({"cpu": "8", "pods": "10"}),
        );
        let p = prio("p", 10, "1", 0);
        let all = [&full, &tainted];
        let msg = preempt(&p, &all, &statuses(&p, &all), &Nominated::new()).expect_err("nothing to evict");
        assert_eq!(
            msg,
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        let never = pod(
            "p",
            json!({"priority": 100, "preemptionPolicy": "Never", "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        assert_eq!(
            preempt(&never, &all, &statuses(&never, &all), &Nominated::new()).err().as_deref(),
            Some("preemption: not eligible due to preemptionPolicy=Never.")
        );
    }

    #[test]
    fn a_pod_waiting_for_its_victims_does_not_preempt_again() {
        let mut n = sized("n", "1", "1Gi");
        n.add_pod(Arc::new(pod_with("going", json!({"priority": 1, "nodeName": "n"}), json!({}))));
        let mut deleting = (*n.pods[0].pod).clone();
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        n.remove_pod(&n.pods[0].key.clone());
        n.add_pod(Arc::new(PodInfo::parse(Arc::new(deleting))));
        let p = pod_with("p", json!({"priority": 10}), json!({"nominatedNodeName": "n"}));
        assert_eq!(eligible(&p, Some(&n)).err().as_deref(), Some("not eligible due to a terminating pod on the nominated node."));
        assert!(eligible(&p, None).is_ok());
    }
}
