//! Placing the components' acts in the store's order: each [`Act`] is matched to the event its
//! write produced, so the checkers can ask "who held the Lease at that revision". An act that
//! names its revision is checked against the history; one that does not is matched to the
//! earliest event of its key and kind that no earlier act claimed.
//!
//! Matching is one-to-one: a second act claiming the only event of its kind (two successful
//! bindings of one pod) is [`Location::Again`]; an act no event shows is [`Location::Missing`]
//! (an acknowledged write the store lost).

use crate::history::{Act, ActKind, Op, Revision, StoreEvent};
use crate::objects::{node_name, terminating, uid};
use std::collections::BTreeMap;

/// Where an act's write is in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// At this revision.
    At(Revision),
    /// Its only matching event was already claimed by an earlier act (at this revision).
    Again(Revision),
    /// No event shows it.
    Missing,
}

impl Location {
    /// The revision, when the act is in the history at all.
    pub fn revision(self) -> Option<Revision> {
        match self {
            Location::At(r) | Location::Again(r) => Some(r),
            Location::Missing => None,
        }
    }
}

/// What kind of change an event made to its key, as acts see it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Created,
    Bound(String),
    Deleted,
    Updated,
}

/// Every event's changes, by key: (revision, changes the event is an instance of).
fn changes(events: &[StoreEvent]) -> BTreeMap<&str, Vec<(Revision, Vec<Change>)>> {
    let mut before: BTreeMap<&str, &serde_json::Value> = BTreeMap::new();
    let mut out: BTreeMap<&str, Vec<(Revision, Vec<Change>)>> = BTreeMap::new();
    for e in events {
        let prev = before.get(e.key.as_str()).copied();
        let mut cs = Vec::new();
        match (e.op, &e.object) {
            (Op::Put, Some(o)) => {
                let same = prev.is_some_and(|p| uid(p) == uid(o));
                if !same {
                    cs.push(Change::Created);
                } else {
                    cs.push(Change::Updated);
                }
                let was_bound = same && prev.and_then(node_name).is_some();
                if let (false, Some(n)) = (was_bound, node_name(o)) {
                    cs.push(Change::Bound(n.to_string()));
                }
                if terminating(o) && !(same && prev.is_some_and(terminating)) {
                    cs.push(Change::Deleted);
                }
                before.insert(&e.key, o);
            }
            _ => {
                cs.push(Change::Deleted);
                before.remove(e.key.as_str());
            }
        }
        out.entry(&e.key).or_default().push((e.revision, cs));
    }
    out
}

fn wanted(kind: &ActKind) -> Change {
    match kind {
        ActKind::Bind { node } => Change::Bound(node.clone()),
        ActKind::Create => Change::Created,
        ActKind::Update => Change::Updated,
        ActKind::Delete => Change::Deleted,
    }
}

/// The location of each act (same order as `acts`).
pub fn locate(events: &[StoreEvent], acts: &[Act]) -> Vec<Location> {
    let by_key = changes(events);
    let mut claimed: BTreeMap<(&str, Revision), usize> = BTreeMap::new();
    acts.iter()
        .map(|a| {
            let want = wanted(&a.kind);
            let candidates: Vec<Revision> = by_key
                .get(a.key.as_str())
                .into_iter()
                .flatten()
                .filter(|(r, cs)| cs.contains(&want) && a.revision.is_none_or(|ar| ar == *r))
                .map(|(r, _)| *r)
                .collect();
            let free = candidates.iter().copied().find(|r| !claimed.contains_key(&(a.key.as_str(), *r)));
            match (free, candidates.first()) {
                (Some(r), _) => {
                    claimed.insert((a.key.as_str(), r), 1);
                    Location::At(r)
                }
                (None, Some(r)) => Location::Again(*r),
                (None, None) => Location::Missing,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Component, HolderId, Term};
    use crate::testutil::{History as H, pod};

    fn bind(key: &str, node: &str) -> Act {
        Act {
            component: Component::Scheduler,
            holder: HolderId("a".into()),
            term: Term(1),
            key: key.into(),
            kind: ActKind::Bind { node: node.into() },
            revision: None,
        }
    }

    #[test]
    fn binds_creations_and_deletions_are_found_once_each() {
        let mut h = H::default();
        h.put(pod("p", "u1").build());
        h.put(pod("p", "u1").node("n1").build()); // r2: bound
        h.put(pod("p", "u1").node("n1").terminating().build()); // r3: deleted (graceful)
        h.delete("/registry/pods/default/p"); // r4
        h.put(pod("p", "u2").build()); // r5: created again, new uid
        h.put(pod("p", "u2").node("n2").build()); // r6
        let k = "/registry/pods/default/p";
        let acts = vec![
            bind(k, "n1"),
            bind(k, "n2"),
            bind(k, "n1"),
            bind(k, "n3"),
            Act { kind: ActKind::Create, ..bind(k, "") },
            Act { kind: ActKind::Create, ..bind(k, "") },
            Act { kind: ActKind::Delete, revision: Some(Revision(3)), ..bind(k, "") },
            Act { kind: ActKind::Delete, revision: Some(Revision(2)), ..bind(k, "") },
        ];
        let got = locate(&h.events, &acts);
        assert_eq!(
            got,
            vec![
                Location::At(Revision(2)),
                Location::At(Revision(6)),
                Location::Again(Revision(2)),
                Location::Missing,
                Location::At(Revision(1)),
                Location::At(Revision(5)),
                Location::At(Revision(3)),
                Location::Missing,
            ]
        );
    }
}
