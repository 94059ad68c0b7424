//! **At most one scheduler and one controller-manager act at any instant.** Each act a
//! leader-elected component reports is placed at the revision its write committed
//! ([`crate::locate`]); the store's revisions are one total order, so "at once" means
//! "interleaved in that order". Two rules:
//!
//! 1. *The act's holder held the Lease there*: the component's Lease, as of the last Lease
//!    version before the act's revision, names the act's holder. A leader that kept acting
//!    after another took the Lease over (no fencing, or a fence looser than the Lease) breaks
//!    it. keel-leader's rule — act only before `last renewal sent + renewDeadline` — leaves
//!    `leaseDuration − renewDeadline` (5 s by default) for an act in flight to land before a
//!    standby may take over; a write that takes longer than that to commit breaks it too, as it
//!    would in Kubernetes.
//! 2. *Terms never go back*: in revision order, the terms (`leaseTransitions`) of one
//!    component's acts never decrease, and one term has one holder.
//!
//! Acts that are not in the history are the lost-write checker's business, not this one's.

use crate::history::{Component, History, HolderId, Op, Revision, Term, Violation};
use crate::locate::Location;
use serde_json::Value;
use std::collections::BTreeMap;

/// The checker's name.
pub const NAME: &str = "single_leader";

/// One version of a Lease: who held it from this revision on, and in which term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The revision of this version.
    pub revision: Revision,
    /// `spec.holderIdentity` (None when empty or the Lease is gone).
    pub holder: Option<HolderId>,
    /// `spec.leaseTransitions`.
    pub term: Term,
}

/// The versions of `component`'s Lease in `h`, in revision order.
pub fn lease_history(h: &History, component: Component) -> Vec<LeaseRecord> {
    let key = component.lease_key();
    h.events
        .iter()
        .filter(|e| e.key == key)
        .map(|e| {
            let o = e.object.as_ref().filter(|_| e.op == Op::Put);
            let holder = o
                .and_then(|o| o.pointer("/spec/holderIdentity"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| HolderId(s.to_string()));
            let term = Term(o.and_then(|o| o.pointer("/spec/leaseTransitions")).and_then(Value::as_i64).unwrap_or(0));
            LeaseRecord { revision: e.revision, holder, term }
        })
        .collect()
}

/// Violations of the guarantee in `h` (`located`: [`crate::locate::locate`] of `h.acts`).
pub fn check(h: &History, located: &[Location]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut leases: BTreeMap<Component, Vec<LeaseRecord>> = BTreeMap::new();
    // (component) → acts in revision order: (revision, holder, term)
    let mut placed: BTreeMap<Component, Vec<(Revision, &HolderId, Term)>> = BTreeMap::new();
    for (a, loc) in h.acts.iter().zip(located) {
        let Some(r) = loc.revision() else { continue };
        placed.entry(a.component).or_default().push((r, &a.holder, a.term));
        let records = leases.entry(a.component).or_insert_with(|| lease_history(h, a.component));
        let at = records.partition_point(|l| l.revision < r);
        let held = at.checked_sub(1).and_then(|i| records.get(i));
        match held {
            None => out.push(Violation {
                checker: NAME,
                revision: Some(r),
                message: format!("{} {} acted on {} with no Lease in the store", a.component.name(), a.holder.0, a.key),
            }),
            Some(l) if l.holder.as_ref() != Some(&a.holder) => out.push(Violation {
                checker: NAME,
                revision: Some(r),
                message: format!(
                    "{} {} (term {}) acted on {} while the Lease named {} (term {}, since {})",
                    a.component.name(),
                    a.holder.0,
                    a.term.0,
                    a.key,
                    l.holder.as_ref().map_or("nobody", |h| h.0.as_str()),
                    l.term.0,
                    l.revision
                ),
            }),
            Some(_) => {}
        }
    }
    for (component, mut acts) in placed {
        acts.sort_by_key(|(r, _, _)| *r);
        let mut newest: Option<(Revision, &HolderId, Term)> = None;
        for (r, holder, term) in acts {
            if let Some((r0, h0, t0)) = newest
                && (term < t0 || (term == t0 && holder != h0))
            {
                out.push(Violation {
                    checker: NAME,
                    revision: Some(r),
                    message: format!(
                        "{} {} acted in term {} after {} had acted in term {} at {r0}",
                        component.name(),
                        holder.0,
                        term.0,
                        h0.0,
                        t0.0
                    ),
                });
                continue;
            }
            newest = Some((r, holder, term));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Act, ActKind};
    use crate::locate::locate;
    use crate::testutil::{History as H, pod};
    use serde_json::json;

    fn lease(holder: &str, transitions: i64) -> (String, Value) {
        (Component::Scheduler.lease_key().into(), json!({"spec": {"holderIdentity": holder, "leaseTransitions": transitions}}))
    }

    fn bind(pod: &str, holder: &str, term: i64) -> Act {
        Act {
            component: Component::Scheduler,
            holder: HolderId(holder.into()),
            term: Term(term),
            key: format!("/registry/pods/default/{pod}"),
            kind: ActKind::Bind { node: "n".into() },
            revision: None,
        }
    }

    fn run(h: H, acts: Vec<Act>) -> Vec<Violation> {
        let h = History { events: h.events, acts, ..Default::default() };
        check(&h, &locate(&h.events, &h.acts))
    }

    /// A handover: `a` leads (term 0) and binds p1, `b` takes over (term 1) and binds p2; the
    /// planted variants replay the same story with one thing wrong.
    fn story(late_bind_by_a: bool, b_binds_before_takeover: bool) -> (H, Vec<Act>) {
        let mut h = H::default();
        h.put(lease("a", 0));
        for p in ["p1", "p2", "p3"] {
            h.put(pod(p, p).build());
        }
        h.put(pod("p1", "p1").node("n").build());
        if b_binds_before_takeover {
            h.put(pod("p2", "p2").node("n").build());
        }
        h.put(lease("a", 0)); // renewal
        h.put(lease("b", 1)); // takeover
        if !b_binds_before_takeover {
            h.put(pod("p2", "p2").node("n").build());
        }
        if late_bind_by_a {
            h.put(pod("p3", "p3").node("n").build());
        }
        let mut acts = vec![bind("p1", "a", 0), bind("p2", "b", 1)];
        if late_bind_by_a {
            acts.push(bind("p3", "a", 0));
        }
        (h, acts)
    }

    #[test]
    fn a_clean_handover_passes() {
        let (h, acts) = story(false, false);
        assert_eq!(run(h, acts), vec![]);
    }

    #[test]
    fn an_old_leader_acting_after_the_takeover_is_caught_by_both_rules() {
        let (h, acts) = story(true, false);
        let v = run(h, acts);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].message.contains("while the Lease named b"), "{}", v[0]);
        assert!(v[1].message.contains("acted in term 0 after b had acted in term 1"), "{}", v[1]);
    }

    #[test]
    fn a_standby_acting_before_it_holds_the_lease_is_caught() {
        let (h, acts) = story(false, true);
        let v = run(h, acts);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("scheduler b (term 1) acted"), "{}", v[0]);
    }

    #[test]
    fn acting_without_any_lease_or_after_release_is_caught() {
        let mut h = H::default();
        h.put(pod("p1", "p1").build());
        h.put(pod("p1", "p1").node("n").build());
        h.put(lease("a", 0));
        h.put(lease("", 0)); // released on SIGTERM
        h.put(pod("p2", "p2").build());
        h.put(pod("p2", "p2").node("n").build());
        let v = run(h, vec![bind("p1", "a", 0), bind("p2", "a", 0)]);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].message.contains("no Lease"));
        assert!(v[1].message.contains("named nobody"));
    }

    #[test]
    fn one_term_with_two_holders_is_caught_even_when_the_lease_was_not_seen() {
        let mut h = H::default();
        h.put(lease("a", 3));
        h.put(pod("p1", "p1").node("n").build());
        h.put(pod("p2", "p2").node("n").build());
        // b claims a's term: rule 1 (the Lease names a) and rule 2 (same term, other holder).
        let v = run(h, vec![bind("p1", "a", 3), bind("p2", "b", 3)]);
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
