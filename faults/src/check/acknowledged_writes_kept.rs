//! **No acknowledged write is lost.** Every write the workload saw acknowledged, and every act
//! a component reported as acknowledged, is in the store's history: a put at the revision the
//! acknowledgement named (a resourceVersion) or, when it named none (kubectl's answers), some
//! put of the key whose object shows what was written; a delete as a delete of the key, or as
//! the put that set its deletionTimestamp (graceful deletion).

use crate::history::{AckedWrite, History, Op, Violation};
use crate::locate::Location;
use crate::objects::terminating;
use std::collections::BTreeMap;

/// The checker's name.
pub const NAME: &str = "acknowledged_writes_kept";

fn kept(h: &History, by_key: &BTreeMap<&str, Vec<usize>>, w: &AckedWrite) -> bool {
    let events = by_key.get(w.key.as_str()).into_iter().flatten().map(|&i| &h.events[i]);
    let mut matching = events.filter(|e| w.revision.is_none_or(|r| r == e.revision));
    match w.op {
        Op::Put => matching.any(|e| e.op == Op::Put && e.object.as_ref().is_some_and(|o| w.expect.iter().all(|x| x.holds(o)))),
        Op::Delete => matching.any(|e| e.op == Op::Delete || e.object.as_ref().is_some_and(terminating)),
    }
}

/// Violations of the guarantee in `h` (`located`: [`crate::locate::locate`] of `h.acts`).
pub fn check(h: &History, located: &[Location]) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in h.events.iter().enumerate() {
        by_key.entry(e.key.as_str()).or_default().push(i);
    }
    let mut out: Vec<Violation> = h
        .acked
        .iter()
        .filter(|w| !kept(h, &by_key, w))
        .map(|w| Violation {
            checker: NAME,
            revision: w.revision,
            message: format!(
                "{} saw {} of {}{} acknowledged; the store's history has no such change",
                w.by,
                if w.op == Op::Put { "a write" } else { "the deletion" },
                w.key,
                if w.expect.is_empty() { String::new() } else { format!(" ({:?})", w.expect) }
            ),
        })
        .collect();
    for (a, loc) in h.acts.iter().zip(located) {
        if *loc == Location::Missing {
            out.push(Violation {
                checker: NAME,
                revision: a.revision,
                message: format!(
                    "{} {} reported {:?} of {} acknowledged; the store's history has no such change",
                    a.component.name(),
                    a.holder.0,
                    a.kind,
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
    use crate::history::{Act, ActKind, Component, Expect, HolderId, Revision, Term};
    use crate::locate::locate;
    use crate::testutil::{History as H, deploy, pod};
    use serde_json::json;

    fn ack(key: &str, op: Op, revision: Option<i64>, expect: Vec<Expect>) -> AckedWrite {
        AckedWrite { by: "workload".into(), key: key.into(), op, revision: revision.map(Revision), expect }
    }

    fn run(h: H, acked: Vec<AckedWrite>, acts: Vec<Act>) -> Vec<Violation> {
        let h = History { events: h.events, acked, acts, ..Default::default() };
        check(&h, &locate(&h.events, &h.acts))
    }

    fn history() -> H {
        let mut h = H::default();
        h.put(deploy("web", "d").build()); // r1
        h.put(deploy("web", "d").image("v2").build()); // r2
        h.put(pod("p", "p").build()); // r3
        h.put(pod("p", "p").node("n").terminating().build()); // r4
        h.delete("/registry/pods/default/p"); // r5
        h
    }

    const D: &str = "/registry/deployments/default/web";
    const P: &str = "/registry/pods/default/p";

    #[test]
    fn writes_in_the_history_pass() {
        let image = Expect::Equals("/spec/template/spec/containers/0/image".into(), json!("v2"));
        let acked = vec![
            ack(D, Op::Put, Some(1), vec![]),
            ack(D, Op::Put, None, vec![image]),
            ack(P, Op::Delete, Some(4), vec![]),
            ack(P, Op::Delete, None, vec![]),
            ack(P, Op::Put, None, vec![Expect::Present("/metadata/deletionTimestamp".into())]),
        ];
        let bind = Act {
            component: Component::Scheduler,
            holder: HolderId("s".into()),
            term: Term(0),
            key: P.into(),
            kind: ActKind::Bind { node: "n".into() },
            revision: None,
        };
        assert_eq!(run(history(), acked, vec![bind]), vec![]);
    }

    #[test]
    fn lost_writes_are_caught() {
        let acked = vec![
            ack(D, Op::Put, Some(3), vec![]), // r3 is the pod
            ack(D, Op::Put, None, vec![Expect::Equals("/spec/template/spec/containers/0/image".into(), json!("v3"))]),
            ack(D, Op::Delete, None, vec![]),
            ack("/registry/pods/default/q", Op::Put, None, vec![]),
        ];
        let bind = Act {
            component: Component::Scheduler,
            holder: HolderId("s".into()),
            term: Term(0),
            key: P.into(),
            kind: ActKind::Bind { node: "elsewhere".into() },
            revision: None,
        };
        let v = run(history(), acked, vec![bind]);
        assert_eq!(v.len(), 5, "{v:?}");
        assert!(v[4].message.contains("scheduler s reported Bind"), "{}", v[4]);
    }
}
