//! Node health as the node lifecycle controller sees it (kube's `tryUpdateNodeHealth`),
//! without I/O: the controller's own clock decides, never the kubelet's timestamps. A node is
//! heard from when its Ready condition's `lastHeartbeatTime` changes or its Lease's
//! `renewTime` moves forward; when it has not been heard from for the grace period, its Ready,
//! MemoryPressure, DiskPressure and PIDPressure conditions become Unknown ("Kubelet stopped
//! posting node status.").

use super::taints::condition;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;
use std::time::Duration;

/// The conditions that become Unknown when a node goes silent.
pub const WATCHED: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Clone, Debug)]
struct Seen {
    /// Last time (our clock) we heard from the node.
    probe: Timestamp,
    /// The Ready condition as last observed (or written by us).
    ready: Option<NodeCondition>,
    /// The Lease's renewTime as last observed.
    lease_renew: Option<Timestamp>,
}

/// What one observation of a node concluded.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The Ready condition as the node object had it (a fake Unknown one when never posted).
    pub observed: NodeCondition,
    /// The Ready condition after this pass (what `observed` becomes if `update` is written).
    pub current: Option<NodeCondition>,
    /// The node's conditions to write (`nodes/status`), when the node went silent.
    pub update: Option<Vec<NodeCondition>>,
}

/// Per-node observations; one writer (the monitor loop).
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<String, Seen>,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)).unwrap_or(Timestamp::MAX)
}

impl Tracker {
    /// Nothing observed yet.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Forgets a deleted node.
    pub fn forget(&mut self, name: &str) {
        self.seen.remove(name);
    }

    /// Forgets every node not in `names` (deleted).
    pub fn retain(&mut self, names: &[String]) {
        self.seen.retain(|n, _| names.contains(n));
    }

    /// Treats every node as heard from `now` (leaving full disruption).
    pub fn reset_all(&mut self, now: Timestamp) {
        for s in self.seen.values_mut() {
            s.probe = now;
        }
    }

    /// Observes `node` (and its Lease's `renewTime`) at `now`.
    pub fn observe(
        &mut self,
        node: &Node,
        lease_renew: Option<Timestamp>,
        now: Timestamp,
        grace: Duration,
        startup_grace: Duration,
    ) -> Verdict {
        let name = node.metadata.name.clone().unwrap_or_default();
        let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
        let current = condition(node, "Ready").cloned();
        let (observed, grace) = match &current {
            Some(c) => (c.clone(), grace),
            None => (
                NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    last_heartbeat_time: Some(Time(created)),
                    last_transition_time: Some(Time(created)),
                    ..Default::default()
                },
                startup_grace,
            ),
        };
        let prev = self.seen.get(&name).cloned();
        let mut seen = match (&prev, &current) {
            (None, None) => Seen { probe: created, ready: None, lease_renew: None },
            (None, Some(_)) => Seen { probe: now, ready: current.clone(), lease_renew: None },
            (Some(p), _) => {
                let mut s = p.clone();
                match (&p.ready, &current) {
                    (None, Some(_)) | (Some(_), None) => s.probe = now,
                    (Some(old), Some(cur)) if old.last_heartbeat_time != cur.last_heartbeat_time => s.probe = now,
                    _ => {}
                }
                s.ready = current.clone();
                s
            }
        };
        if let Some(r) = lease_renew
            && seen.lease_renew.is_none_or(|old| old < r)
        {
            seen.lease_renew = Some(r);
            seen.probe = now;
        }
        let mut verdict = Verdict { observed: observed.clone(), current: current.clone(), update: None };
        if now > after(seen.probe, grace) {
            let mut conds: Vec<NodeCondition> = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            for ty in WATCHED {
                match conds.iter_mut().find(|c| c.type_ == *ty) {
                    None => conds.push(NodeCondition {
                        type_: ty.to_string(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: Some(Time(created)),
                        last_transition_time: Some(Time(now)),
                    }),
                    Some(c) if c.status != "Unknown" => {
                        c.status = "Unknown".into();
                        c.reason = Some("NodeStatusUnknown".into());
                        c.message = Some("Kubelet stopped posting node status.".into());
                        c.last_transition_time = Some(Time(now));
                    }
                    Some(_) => {}
                }
            }
            let new_ready = conds.iter().find(|c| c.type_ == "Ready").cloned();
            if new_ready.as_ref() != Some(&observed) {
                seen.ready = new_ready.clone();
                verdict.current = new_ready;
                verdict.update = Some(conds);
            }
        }
        self.seen.insert(name, seen);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn node(ready: Option<(&str, i64)>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.metadata.creation_timestamp = Some(Time(ts(0)));
        n.status = Some(NodeStatus {
            conditions: ready.map(|(s, hb)| {
                vec![NodeCondition {
                    type_: "Ready".into(),
                    status: s.into(),
                    last_heartbeat_time: Some(Time(ts(hb))),
                    last_transition_time: Some(Time(ts(0))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        n
    }

    const GRACE: Duration = Duration::from_secs(40);
    const STARTUP: Duration = Duration::from_secs(60);

    // TestMonitorNodeHealthUpdateStatus: a node that stops heartbeating becomes Unknown after
    // the grace period, measured on our clock from when we last saw a change.
    #[test]
    fn a_silent_node_becomes_unknown_after_the_grace_period() {
        let mut t = Tracker::new();
        let n = node(Some(("True", 10)));
        assert!(t.observe(&n, None, ts(100), GRACE, STARTUP).update.is_none(), "first sight: heard now");
        assert!(t.observe(&n, None, ts(140), GRACE, STARTUP).update.is_none(), "exactly the grace period: not yet");
        let v = t.observe(&n, None, ts(141), GRACE, STARTUP);
        let conds = v.update.unwrap_or_default();
        let ready = conds.iter().find(|c| c.type_ == "Ready").cloned().unwrap_or_default();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("Unknown", Some("NodeStatusUnknown")));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(10))), "heartbeat kept");
        assert_eq!(conds.len(), 4, "the pressure conditions are added as never updated");
        assert_eq!(v.observed.status, "True");
    }

    #[test]
    fn heartbeats_and_lease_renewals_both_count() {
        let mut t = Tracker::new();
        t.observe(&node(Some(("True", 10))), None, ts(100), GRACE, STARTUP);
        assert!(t.observe(&node(Some(("True", 130))), None, ts(135), GRACE, STARTUP).update.is_none());
        assert!(t.observe(&node(Some(("True", 130))), None, ts(170), GRACE, STARTUP).update.is_none(), "135 + 40 not passed");
        // Only the lease moves from here on.
        assert!(t.observe(&node(Some(("True", 130))), Some(ts(171)), ts(172), GRACE, STARTUP).update.is_none());
        assert!(t.observe(&node(Some(("True", 130))), Some(ts(171)), ts(212), GRACE, STARTUP).update.is_none());
        assert!(t.observe(&node(Some(("True", 130))), Some(ts(171)), ts(213), GRACE, STARTUP).update.is_some());
    }

    #[test]
    fn a_node_that_never_posted_status_gets_the_startup_grace_from_creation() {
        let mut t = Tracker::new();
        assert!(t.observe(&node(None), None, ts(60), GRACE, STARTUP).update.is_none());
        let v = t.observe(&node(None), None, ts(61), GRACE, STARTUP);
        let ready = v.update.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").unwrap_or_default();
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    }

    #[test]
    fn an_unknown_node_is_not_rewritten_and_a_returning_one_is_heard() {
        let mut t = Tracker::new();
        t.observe(&node(Some(("True", 10))), None, ts(100), GRACE, STARTUP);
        assert!(t.observe(&node(Some(("True", 10))), None, ts(200), GRACE, STARTUP).update.is_some());
        // Our write is now what the cache shows.
        assert!(t.observe(&node(Some(("Unknown", 10))), None, ts(205), GRACE, STARTUP).update.is_none(), "already Unknown");
        let back = t.observe(&node(Some(("True", 300))), None, ts(301), GRACE, STARTUP);
        assert!(back.update.is_none());
        assert_eq!(back.current.map(|c| c.status), Some("True".into()));
    }
}
