//! **No pod is bound twice or rebound.** A pod (one uid) gets `spec.nodeName` once and keeps
//! it until it is gone: along the store's versions of one uid, nodeName goes from unset to a
//! node and never changes again (nor is cleared). And one binding is acknowledged once: two
//! acts reporting a successful binding of the same pod mean a second binding was accepted
//! (the apiserver must answer 409), or two schedulers bound it.
//!
//! A pod created with `spec.nodeName` already set (a bare pod placed by its author, a DaemonSet
//! pod) counts as bound from its first version.

use crate::history::{ActKind, History, Op, Violation};
use crate::locate::Location;
use crate::objects::{node_name, uid};
use std::collections::BTreeMap;

/// The checker's name.
pub const NAME: &str = "single_binding";

/// Violations of the guarantee in `h` (`located`: [`crate::locate::locate`] of `h.acts`).
pub fn check(h: &History, located: &[Location]) -> Vec<Violation> {
    let mut out = Vec::new();
    // key → (uid, nodeName) of the pod there now.
    let mut pods: BTreeMap<&str, (String, Option<String>)> = BTreeMap::new();
    for e in h.events.iter().filter(|e| e.key.starts_with(crate::objects::PODS)) {
        let Some(o) = e.object.as_ref().filter(|_| e.op == Op::Put) else {
            pods.remove(e.key.as_str());
            continue;
        };
        let (u, node) = (uid(o).unwrap_or_default().to_string(), node_name(o).map(str::to_string));
        if let Some((was_uid, Some(was_node))) = pods.get(e.key.as_str())
            && *was_uid == u
            && node.as_ref() != Some(was_node)
        {
            let now = node.as_deref().map_or("no node".to_string(), |n| format!("node {n}"));
            out.push(Violation {
                checker: NAME,
                revision: Some(e.revision),
                message: format!("pod {} (uid {u}) was bound to {was_node} and now names {now}", e.key),
            });
        }
        pods.insert(&e.key, (u, node));
    }
    for (a, loc) in h.acts.iter().zip(located) {
        if let (ActKind::Bind { node }, Location::Again(r)) = (&a.kind, loc) {
            out.push(Violation {
                checker: NAME,
                revision: Some(*r),
                message: format!(
                    "{} {} (term {}) reported binding {} to {node}, a binding already acknowledged once",
                    a.component.name(),
                    a.holder.0,
                    a.term.0,
                    a.key
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Act, Component, HolderId, Term};
    use crate::locate::locate;
    use crate::testutil::{History as H, pod};

    fn run(h: H, acts: Vec<Act>) -> Vec<Violation> {
        let h = History { events: h.events, acts, ..Default::default() };
        check(&h, &locate(&h.events, &h.acts))
    }

    fn bind(holder: &str, node: &str) -> Act {
        Act {
            component: Component::Scheduler,
            holder: HolderId(holder.into()),
            term: Term(1),
            key: "/registry/pods/default/p".into(),
            kind: ActKind::Bind { node: node.into() },
            revision: None,
        }
    }

    #[test]
    fn a_pod_bound_once_and_kept_there_passes() {
        let table: Vec<(&str, Vec<(String, serde_json::Value)>)> = vec![
            (
                "bound once, then status updates",
                vec![pod("p", "u").build(), pod("p", "u").node("a").build(), pod("p", "u").node("a").ready().build()],
            ),
            ("created already placed", vec![pod("p", "u").node("a").build(), pod("p", "u").node("a").terminating().build()]),
            (
                "same name, new uid, other node",
                vec![pod("p", "u1").node("a").build(), pod("p", "u2").build(), pod("p", "u2").node("b").build()],
            ),
        ];
        for (what, versions) in table {
            let mut h = H::default();
            for v in versions {
                h.put(v);
            }
            assert_eq!(run(h, vec![bind("s1", "a")]), vec![], "{what}");
        }
    }

    #[test]
    fn a_deleted_and_recreated_pod_may_go_elsewhere() {
        let mut h = H::default();
        h.put(pod("p", "u").node("a").build());
        h.delete("/registry/pods/default/p");
        h.put(pod("p", "u").node("b").build());
        assert_eq!(run(h, vec![]), vec![]);
    }

    #[test]
    fn rebinding_unbinding_and_a_second_acknowledged_binding_are_caught() {
        let mut rebound = H::default();
        rebound.put(pod("p", "u").build());
        rebound.put(pod("p", "u").node("a").build());
        rebound.put(pod("p", "u").node("b").build());
        let v = run(rebound, vec![]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("bound to a and now names node b"), "{}", v[0]);

        let mut unbound = H::default();
        unbound.put(pod("p", "u").node("a").build());
        unbound.put(pod("p", "u").build());
        assert_eq!(run(unbound, vec![]).len(), 1);

        let mut twice = H::default();
        twice.put(pod("p", "u").build());
        twice.put(pod("p", "u").node("a").build());
        let v = run(twice, vec![bind("s1", "a"), bind("s2", "a")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("s2"), "{}", v[0]);
    }
}
