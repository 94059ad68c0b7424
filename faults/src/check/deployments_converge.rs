//! **After the faults stop, every Deployment converges to its spec within a bound.** From the
//! moment the faults and the workload's changes stopped ([`History::quiet_from`]), each
//! Deployment still in the store at the end must, within `bound`, reach the state
//! `kubectl rollout status` waits for, as the store shows it: its controller observed its
//! latest generation; one ReplicaSet has its pod template (ignoring `pod-template-hash`) and
//! `spec.replicas` equal to the Deployment's, every other one is scaled to 0; that
//! ReplicaSet has exactly that many active pods, each bound and Ready, and the others none;
//! and the Deployment's status says `replicas`, `updatedReplicas` and `availableReplicas` are
//! all the spec's. It must still be so at the end of the history.

use crate::history::{History, State, Violation};
use crate::objects::{self, DEPLOYMENTS};
use serde_json::Value;
use std::time::Duration;

/// The checker's name.
pub const NAME: &str = "deployments_converge";

fn namespace_of(key: &str, prefix: &str) -> Option<String> {
    key.strip_prefix(prefix)?.split('/').next().map(str::to_string)
}

/// Why the Deployment at `key` is not converged in `s` (None when it is).
pub fn unconverged(s: &State, key: &str, d: &Value) -> Option<String> {
    let (Some(uid), Some(ns)) = (objects::uid(d), namespace_of(key, DEPLOYMENTS)) else { return Some("no uid".into()) };
    if objects::terminating(d) {
        return Some("being deleted".into());
    }
    let replicas = objects::replicas(d);
    if objects::observed_generation(d) < objects::generation(d) {
        return Some(format!("generation {} not observed (observed {})", objects::generation(d), objects::observed_generation(d)));
    }
    let template = objects::template_ignoring_hash(d);
    let rs_prefix = format!("{}{ns}/", objects::REPLICASETS);
    let mut current: Option<&str> = None;
    let mut old: Vec<&str> = Vec::new();
    for (rs_key, rs) in s.under(&rs_prefix).filter(|(_, rs)| objects::controlled_by(rs, "Deployment") == Some(uid)) {
        let rs_uid = objects::uid(rs).unwrap_or_default();
        if objects::template_ignoring_hash(rs) == template && current.is_none() {
            if objects::replicas(rs) != replicas {
                return Some(format!("{rs_key} has spec.replicas {} of {replicas}", objects::replicas(rs)));
            }
            current = Some(rs_uid);
        } else {
            if objects::replicas(rs) != 0 {
                return Some(format!("old {rs_key} still has spec.replicas {}", objects::replicas(rs)));
            }
            old.push(rs_uid);
        }
    }
    let Some(current) = current else { return Some("no ReplicaSet has its template".into()) };
    let pod_prefix = format!("{}{ns}/", objects::PODS);
    let (mut ready, mut pending, mut stale) = (0, 0, 0);
    for (_, p) in s.under(&pod_prefix).filter(|(_, p)| objects::active(p)) {
        match objects::controlled_by(p, "ReplicaSet") {
            Some(rs) if rs == current => {
                if objects::node_name(p).is_some() && objects::ready(p) {
                    ready += 1
                } else {
                    pending += 1
                }
            }
            Some(rs) if old.contains(&rs) => stale += 1,
            _ => {}
        }
    }
    if (ready, pending, stale) != (replicas, 0, 0) {
        return Some(format!("{ready} ready, {pending} not ready and {stale} old pods for {replicas} replicas"));
    }
    let status: Vec<i64> = ["replicas", "updatedReplicas", "availableReplicas"].iter().map(|f| objects::status_count(d, f)).collect();
    if status != [replicas; 3] {
        return Some(format!("status says replicas/updated/available {}/{}/{} of {replicas}", status[0], status[1], status[2]));
    }
    None
}

/// Violations of the guarantee in `h` (nothing to judge without [`History::quiet_from`]).
pub fn check(h: &History, bound: Duration) -> Vec<Violation> {
    let Some(quiet) = h.quiet_from else { return Vec::new() };
    let mut s = State::default();
    let mut events = h.events.iter().peekable();
    while let Some(e) = events.next_if(|e| e.seen < quiet) {
        s.apply(e);
    }
    // (key) → when it was first seen converged after `quiet`.
    let mut first: std::collections::BTreeMap<String, Duration> = std::collections::BTreeMap::new();
    let mut note = |s: &State, at: Duration| {
        for (k, d) in s.under(DEPLOYMENTS) {
            if !first.contains_key(k) && unconverged(s, k, d).is_none() {
                first.insert(k.to_string(), at.max(quiet));
            }
        }
    };
    note(&s, quiet);
    for e in events {
        s.apply(e);
        note(&s, e.seen);
    }
    let mut out = Vec::new();
    for (k, d) in s.under(DEPLOYMENTS) {
        match (unconverged(&s, k, d), first.get(k)) {
            (Some(why), _) => out.push(Violation {
                checker: NAME,
                revision: Some(s.revision),
                message: format!("{k} is not converged at the end of the run: {why}"),
            }),
            (None, Some(at)) if *at - quiet > bound => out.push(Violation {
                checker: NAME,
                revision: None,
                message: format!("{k} converged {:?} after the faults stopped (bound {bound:?})", *at - quiet),
            }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{History as H, deploy, pod, rs};

    const BOUND: Duration = Duration::from_secs(60);

    /// A Deployment of 2 replicas rolled from v1 to v2; the faults stop at 10 s and the rollout
    /// finishes at `done_at`; `planted` leaves one thing unfinished.
    fn story(done_at: u64, planted: &str) -> History {
        let mut h = H::default();
        h.put(deploy("web", "d").replicas(2).image("v2").generation(2, 2).build());
        h.put(rs("web-1", "r1").owner("d").image("v1").replicas(1).build());
        h.put(rs("web-2", "r2").owner("d").image("v2").replicas(2).build());
        h.put(pod("a", "a").owner("r1").ready().build());
        h.put(pod("b", "b").owner("r2").node("n").ready().build());
        h.at(done_at);
        h.put(pod("c", "c").owner("r2").node("n").ready().build());
        if planted != "old-pod-left" {
            h.put(rs("web-1", "r1").owner("d").image("v1").replicas(0).build());
            h.put(pod("a", "a").owner("r1").terminating().build());
        }
        if planted != "status-stale" {
            h.put(deploy("web", "d").replicas(2).image("v2").generation(2, 2).status(2, 2, 2).build());
        }
        History { events: h.events, quiet_from: Some(Duration::from_secs(10)), ..Default::default() }
    }

    #[test]
    fn a_rollout_finishing_within_the_bound_passes() {
        assert_eq!(check(&story(40, ""), BOUND), vec![]);
    }

    #[test]
    fn a_late_or_unfinished_rollout_is_caught() {
        let v = check(&story(100, ""), BOUND);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("converged 90s after"), "{}", v[0]);
        for (planted, why) in [("old-pod-left", "old /registry/replicasets/default/web-1 still"), ("status-stale", "status says")] {
            let v = check(&story(40, planted), BOUND);
            assert_eq!(v.len(), 1, "{planted}: {v:?}");
            assert!(v[0].message.contains(why), "{planted}: {}", v[0]);
        }
    }

    #[test]
    fn an_unbound_or_unready_pod_is_not_converged() {
        let mut h = H::default();
        h.put(deploy("web", "d").replicas(1).status(1, 1, 1).build());
        h.put(rs("web-1", "r1").owner("d").image("v1").replicas(1).build());
        h.put(pod("a", "a").owner("r1").ready().build()); // Ready but no node: impossible, still not converged
        let h = History { events: h.events, quiet_from: Some(Duration::ZERO), ..Default::default() };
        let v = check(&h, BOUND);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("0 ready, 1 not ready"), "{}", v[0]);
    }
}
