//! **Every Deployment's rollout stays within its bounds** (`replicas + maxSurge`, computed as
//! kube does: [`crate::objects::max_total_pods`]), in the two forms Kubernetes guarantees:
//!
//! 1. *ReplicaSet sizes*: at every revision the `spec.replicas` of a Deployment's ReplicaSets
//!    sum to at most the bound its controller may be reaching for (the largest
//!    `replicas + maxSurge` among its versions not yet superseded by
//!    `status.observedGeneration`, so a scale-down the controller has not acted on yet is not
//!    a violation). This is kube's `NewRSNewReplicas` rule: the new ReplicaSet grows only into
//!    room the old ones left.
//! 2. *Pods*: no pod creation brings the Deployment's active pods (not terminating, not
//!    finished — the pods kube's controller counts) above that bound, except by pods its other
//!    ReplicaSets hold beyond their own `spec.replicas` (an old ReplicaSet that was scaled down
//!    and whose controller has not yet marked the extra pods for deletion: kube runs each
//!    ReplicaSet's controller on its own, so the new ReplicaSet's creation can land first), and
//!    except by pods the creating ReplicaSet holds beyond its `spec.replicas` up to what its
//!    controller may still be reaching for (a scale-down its `status.observedGeneration` has
//!    not reached: it replaces a deleted pod for the spec it last saw, as kube's does).
//!
//! A planted deployment controller that scales the new ReplicaSet up without scaling the old
//! one down breaks rule 1; a ReplicaSet controller that creates beyond its spec breaks rule 2
//! (and [`super::one_pod_per_slot`]).

use super::index::Index;
use crate::history::{History, Violation};

/// The checker's name.
pub const NAME: &str = "rollout_bounds";

/// Violations of the guarantee in `h`.
pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut index = Index::default();
    // Deployments breaking rule 1 now: a breach is reported when it starts, not at every event.
    let mut breaching = std::collections::BTreeSet::new();
    for e in &h.events {
        let touched = index.apply(e);
        for d in &touched.deployments {
            let (Some(allowed), Some(entry)) = (index.deployment_allowed(d), index.deployment(d)) else { continue };
            let sized: i64 = index.replicasets_of(d).map(|(_, r)| r.replicas).sum();
            if sized <= allowed {
                breaching.remove(d);
            } else if breaching.insert(d.clone()) {
                out.push(Violation {
                    checker: NAME,
                    revision: Some(e.revision),
                    message: format!(
                        "the ReplicaSets of {} ask for {sized} replicas; its controller may reach for at most {allowed} (replicas + maxSurge now {})",
                        entry.key, entry.max_total
                    ),
                });
            }
        }
        let Some(rs) = touched.created_for else { continue };
        let Some(d) = index.replicaset(&rs).and_then(|r| r.owner.clone()) else { continue };
        let (Some(allowed), Some(entry)) = (index.deployment_allowed(&d), index.deployment(&d)) else { continue };
        let (mut active, mut leaving) = (0, 0);
        for (uid, r) in index.replicasets_of(&d) {
            let n = index.active_pods(uid);
            active += n;
            if uid != rs {
                leaving += (n - r.replicas).max(0);
            } else {
                // Its own controller may still be filling a larger spec it has not seen
                // superseded (a scale-down not yet observed): those pods are its, not a surge.
                let reach = index.rs_allowed(uid).unwrap_or(r.replicas);
                leaving += (n.min(reach) - r.replicas).max(0);
            }
        }
        if active > allowed + leaving {
            out.push(Violation {
                checker: NAME,
                revision: Some(e.revision),
                message: format!(
                    "{} brought {} to {active} active pods, above its bound {allowed} (replicas + maxSurge now {}) and the {leaving} pods its scaled-down ReplicaSets still hold",
                    e.key, entry.key, entry.max_total
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{History as H, deploy, pod, rs};

    fn run(h: H) -> Vec<Violation> {
        check(&History { events: h.events, ..Default::default() })
    }

    /// A rolling update of 3 replicas, maxSurge 1, maxUnavailable 0, from v1 to v2, as kube's
    /// controllers write it; `planted` changes one step.
    fn rollout(planted: &str) -> H {
        let mut h = H::default();
        h.put(deploy("web", "d").build());
        h.put(rs("web-1", "r1").owner("d").image("v1").replicas(3).build());
        for p in ["a", "b", "c"] {
            h.put(pod(p, p).owner("r1").ready().build());
        }
        h.put(deploy("web", "d").image("v2").generation(2, 1).build());
        let surge = if planted == "surge-too-far" { 2 } else { 1 };
        h.put(rs("web-2", "r2").owner("d").image("v2").replicas(surge).build());
        h.put(deploy("web", "d").image("v2").generation(2, 2).build());
        h.put(pod("x", "x").owner("r2").build());
        if planted == "extra-pod" {
            h.put(pod("y", "y").owner("r2").build());
        }
        h.put(pod("x", "x").owner("r2").ready().build());
        h.put(rs("web-1", "r1").owner("d").image("v1").replicas(2).generation(2, 1).build());
        h.put(rs("web-2", "r2").owner("d").image("v2").replicas(2).build());
        // the new ReplicaSet's pod lands before the old one's deletion (kube's race, allowed)
        h.put(pod("y", "y").owner("r2").build());
        h.put(pod("a", "a").owner("r1").terminating().build());
        h
    }

    #[test]
    fn a_rolling_update_with_kubes_race_passes() {
        assert_eq!(run(rollout("")), vec![]);
    }

    #[test]
    fn a_scale_down_not_yet_acted_on_passes() {
        let mut h = H::default();
        h.put(deploy("web", "d").replicas(5).build());
        h.put(rs("web-1", "r1").owner("d").replicas(5).build());
        h.put(deploy("web", "d").replicas(2).generation(2, 1).build());
        h.put(rs("web-1", "r1").owner("d").replicas(2).build());
        h.put(deploy("web", "d").replicas(2).generation(2, 2).build());
        assert_eq!(run(h), vec![]);
    }

    #[test]
    fn surging_beyond_max_surge_is_caught() {
        let v = run(rollout("surge-too-far"));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("ask for 5 replicas; its controller may reach for at most 4"), "{}", v[0]);
    }

    #[test]
    fn a_pod_beyond_the_bound_is_caught() {
        let v = run(rollout("extra-pod"));
        assert!(v.iter().any(|v| v.message.contains("brought /registry/deployments/default/web to 5 active pods")), "{v:?}");
    }

    /// The soak's seed 2026 at r608 and r11428: the Deployment controller scaled the ReplicaSet
    /// down, and before the ReplicaSet's controller observed that it replaced a deleted pod for
    /// the spec it had seen.
    fn replacement_for_an_unobserved_spec(rs_observed: i64) -> H {
        let mut h = H::default();
        h.put(deploy("web", "d").replicas(4).build());
        h.put(rs("web-1", "r1").owner("d").replicas(4).build());
        for p in ["a", "b", "c", "e"] {
            h.put(pod(p, p).owner("r1").ready().build());
        }
        h.delete("/registry/pods/default/a");
        h.put(deploy("web", "d").replicas(1).generation(2, 1).build());
        h.put(rs("web-1", "r1").owner("d").replicas(1).generation(2, rs_observed).build());
        h.put(deploy("web", "d").replicas(1).generation(2, 2).build());
        h.put(pod("f", "f").owner("r1").build());
        h
    }

    #[test]
    fn a_replicaset_replacing_a_pod_for_a_spec_it_has_not_seen_superseded_passes() {
        assert_eq!(run(replacement_for_an_unobserved_spec(1)), vec![]);
    }

    #[test]
    fn a_replicaset_creating_after_it_observed_its_scale_down_is_caught() {
        let v = run(replacement_for_an_unobserved_spec(2));
        assert!(v.iter().any(|v| v.message.contains("brought /registry/deployments/default/web to 4 active pods")), "{v:?}");
    }

    #[test]
    fn ignoring_a_scale_down_the_controller_observed_is_caught() {
        let mut h = H::default();
        h.put(deploy("web", "d").replicas(5).build());
        h.put(rs("web-1", "r1").owner("d").replicas(5).build());
        h.put(deploy("web", "d").replicas(2).generation(2, 2).build());
        let v = run(h);
        assert_eq!(v.len(), 1, "{v:?}");
    }
}
