//! **No pod is created twice for one slot.** A ReplicaSet controller creates a pod only for a
//! missing replica: at every pod creation in the store's order, the ReplicaSet's active pods
//! (the new one included) number at most the replicas its controller may be reaching for — the
//! largest `spec.replicas` among the versions it has not yet superseded with a
//! `status.observedGeneration` ([`super::index`]). A controller that trusts a stale cache
//! without expectations (it does not see its own creations yet, or forgets them across a
//! restart) creates a second pod for a slot it already filled, and this catches it at that
//! creation.
//!
//! Pods created for a ReplicaSet that is not in the store are not judged (a controller may
//! still be finishing a sync when the ReplicaSet is deleted; the garbage collector removes
//! them).

use super::index::Index;
use crate::history::{History, Violation};

/// The checker's name.
pub const NAME: &str = "one_pod_per_slot";

/// Violations of the guarantee in `h`.
pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut index = Index::default();
    for e in &h.events {
        let touched = index.apply(e);
        let Some(rs) = touched.created_for else { continue };
        let (Some(allowed), Some(entry)) = (index.rs_allowed(&rs), index.replicaset(&rs)) else { continue };
        let active = index.active_pods(&rs);
        if active > allowed {
            out.push(Violation {
                checker: NAME,
                revision: Some(e.revision),
                message: format!(
                    "{} was created for {} which then had {active} active pods; its controller may want at most {allowed} (spec.replicas {})",
                    e.key, entry.key, entry.replicas
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{History as H, pod, rs};

    fn run(h: H) -> Vec<Violation> {
        check(&History { events: h.events, ..Default::default() })
    }

    #[test]
    fn filling_replacing_and_scaling_pass() {
        let mut h = H::default();
        h.put(rs("web", "r").replicas(2).build());
        h.put(pod("a", "a").owner("r").build());
        h.put(pod("b", "b").owner("r").build());
        // a pod fails and is replaced, one is deleted and replaced
        h.put(pod("a", "a").owner("r").phase("Failed").build());
        h.put(pod("c", "c").owner("r").build());
        h.put(pod("b", "b").owner("r").terminating().build());
        h.put(pod("d", "d").owner("r").build());
        // scaled down 2 → 1 and, before the controller observed it, a replacement landed
        h.put(rs("web", "r").replicas(1).generation(2, 1).build());
        h.put(pod("c", "c").owner("r").phase("Failed").build());
        h.put(pod("e", "e").owner("r").build());
        assert_eq!(run(h), vec![]);
    }

    #[test]
    fn a_second_pod_for_a_filled_slot_is_caught() {
        let mut h = H::default();
        h.put(rs("web", "r").replicas(2).build());
        h.put(pod("a", "a").owner("r").build());
        h.put(pod("b", "b").owner("r").build());
        h.put(pod("c", "c").owner("r").build());
        let v = run(h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("then had 3 active pods; its controller may want at most 2"), "{}", v[0]);
    }

    #[test]
    fn a_creation_after_the_scale_down_was_observed_is_caught() {
        let mut h = H::default();
        h.put(rs("web", "r").replicas(2).build());
        h.put(pod("a", "a").owner("r").build());
        h.put(pod("b", "b").owner("r").build());
        h.put(rs("web", "r").replicas(1).generation(2, 2).build());
        h.put(pod("b", "b").owner("r").terminating().build());
        h.put(pod("c", "c").owner("r").build());
        let v = run(h);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn pods_of_a_replicaset_that_is_gone_are_not_judged() {
        let mut h = H::default();
        h.put(pod("a", "a").owner("gone").build());
        h.put(pod("b", "b").owner("gone").build());
        assert_eq!(run(h), vec![]);
    }
}
