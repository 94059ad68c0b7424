//! The verdict on one run: liveness, linearizability of the KV history, every watch guarantee
//! on every watcher, and reads at a revision (serializable gets, paged lists) against the
//! store's history as the reference watcher saw it.

use crate::history::{History, Operation, Request, Response};
use crate::linearizable_kv::{self, Failure};
use crate::lost_writes;
use crate::model::KvState;
use crate::record::{Recorded, WatchChain};
use crate::watch::{self, Event, Kind, Received, Shape, WatchLog};
use std::collections::{BTreeMap, BTreeSet};

/// Every violation in `r`; sets `undecided` when the linearizability search gave up.
pub fn judge(r: &Recorded, undecided: &mut bool) -> Vec<String> {
    let mut v = Vec::new();
    v.extend(lost_writes::check(r));
    match &r.liveness {
        Some(Ok(_)) => {}
        Some(Err(e)) => v.push(format!("liveness: {e}")),
        None => v.push("liveness: the check did not finish".into()),
    }

    let reference = events_of(&r.reference);
    let covered = reference.last().map_or(1, |e| e.revision);
    // The reference must have seen everything up to the liveness check's last write (it is the
    // store's history every other check is held to); a watch that stalls fails here.
    if matches!(r.liveness, Some(Ok(_))) && covered < r.final_revision {
        v.push(format!("reference watch: delivered up to revision {covered} of {}", r.final_revision));
    }
    if r.reference_lost {
        v.push("reference watch: compacted past it (the compactor must not outrun it)".into());
    }
    for m in r.membership.iter().filter(|m| m.contains("gave up")) {
        v.push(format!("membership: {m}"));
    }
    for (lease, at) in &r.early_ends {
        v.push(format!("lease {lease:x} ended early: its keeper found it gone at {} ms", at.as_millis()));
    }
    let complete = !r.reference_lost && covered >= r.final_revision && r.final_revision > 0;
    let history = if complete { patch(&r.history, &reference) } else { r.history.clone() };
    match linearizable_kv::check(&history, &KvState::at(1)) {
        Ok(()) => {}
        Err(Failure::Undecided) => *undecided = true,
        Err(f) => v.push(format!("linearizable_kv: not linearizable\n{}", f.excerpt(&history))),
    }
    if r.reference_lost {
        return v;
    }
    if let Err(e) = contiguous(&reference) {
        v.push(format!("reference watch: {e}"));
    }
    if let Err(e) = check_chain(&r.reference, &reference, covered) {
        v.push(format!("reference watch: {e}"));
    }
    if let Err(e) = watch::matches_history(&reference, &r.history) {
        v.push(format!("watch events vs KV history: {e}"));
    }
    for (i, chain) in r.watchers.iter().enumerate() {
        if let Err(e) = check_chain(chain, &reference, covered) {
            v.push(format!("watcher {i}: {e}"));
        }
    }
    for chain in &r.shaped {
        if let Err(e) = check_chain(chain, &reference, covered) {
            let shape = chain.links.first().map(|l| describe(&l.shape)).unwrap_or_default();
            v.push(format!("watcher of {shape}: {e}"));
        }
    }
    for life in &r.leases {
        for key in &life.keys {
            let Some((_, rev, arrived)) = r.deletions.iter().find(|(k, _, _)| k == key) else { continue };
            let revoked = life.revoked_from.is_some_and(|t| t <= *arrived);
            if *arrived < life.not_before && !revoked {
                v.push(format!(
                    "lease {:x} ended early: {key} was deleted at revision {rev} (seen at {} ms) though kept alive until at least {} ms",
                    life.lease,
                    arrived.as_millis(),
                    life.not_before.as_millis()
                ));
            }
        }
    }
    let states = StatesAt::new(&reference);
    for s in &r.stale_reads {
        if s.revision > covered {
            continue;
        }
        let state = states.at(s.revision);
        let want = state.get(&s.key).map_or((None, 0), |(v, m)| (Some(v.clone()), *m));
        if (s.value.clone(), s.mod_revision) != want {
            v.push(format!(
                "serializable get of {} at revision {}: got {:?}, the store had {want:?}",
                s.key,
                s.revision,
                (&s.value, s.mod_revision)
            ));
        }
    }
    for l in &r.lists {
        if l.revision > covered {
            continue;
        }
        let want: Vec<(String, String, i64)> = states
            .at(l.revision)
            .iter()
            .filter(|(k, _)| k.starts_with(&l.prefix))
            .map(|(k, (val, m))| (k.clone(), val.clone(), *m))
            .collect();
        if l.kvs != want {
            v.push(format!(
                "list of {} at revision {} in {} pages: got {:?}, the store had {want:?}",
                l.prefix, l.revision, l.pages, l.kvs
            ));
        }
    }
    v
}

/// The history with what the reference watch tells about writes that got no answer (as etcd's
/// robustness suite does): a write of a unique value that the store holds as an event did
/// happen, with that revision; one it never holds did not happen at all. Only call this with a
/// complete reference: the liveness check writes after every workload call ended, so its last
/// revision settles every earlier proposal, and the reference watched up to it.
///
/// Unanswered deletes are settled per key through [`deleters`]; the ones it cannot settle, and
/// revokes, stay open (they may take effect at any time after their call, or never).
pub fn patch(h: &History, reference: &[Event]) -> History {
    let covered = reference.last().map_or(0, |e| e.revision);
    let at: BTreeMap<(&str, &str), i64> = reference
        .iter()
        .filter(|e| e.kind == Kind::Put)
        .filter_map(|e| e.value.as_deref().map(|v| ((e.key.as_str(), v), e.revision)))
        .collect();
    let (deleted_at, settled) = deleters(h, reference);
    let mut out = History::default();
    for (i, op) in h.ops.iter().enumerate() {
        if op.response.is_some() {
            out.push(op.clone());
            continue;
        }
        if let Some(&revision) = deleted_at.get(&i) {
            let response = Response::Delete { deleted: 1, revision };
            out.push(Operation { ret: Some(u64::MAX - 1), response: Some(response), ..op.clone() });
            continue;
        }
        // An unanswered delete of a settled key either never ran or deleted nothing (no event,
        // no revision): either way it changed nothing.
        if let Request::Delete { key } | Request::CompareAndDelete { key, .. } = &op.request
            && covered > 0
            && settled.contains(key.as_str())
        {
            continue;
        }
        let written = match &op.request {
            Request::Put { key, value } | Request::PutWithLease { key, value, .. } | Request::CompareAndPut { key, value, .. } => {
                Some(at.get(&(key.as_str(), value.as_str())).copied())
            }
            Request::MultiPut { kvs } => kvs.first().map(|(k, v)| at.get(&(k.as_str(), v.as_str())).copied()),
            _ => None,
        };
        match written {
            None => out.push(op.clone()),
            Some(None) if covered > 0 => {} // never happened
            Some(None) => out.push(op.clone()),
            Some(Some(revision)) => {
                let response = match op.request {
                    Request::CompareAndPut { .. } => Response::Txn { succeeded: true, revision, value: None, mod_revision: 0 },
                    _ => Response::Put { revision },
                };
                out.push(Operation { ret: Some(u64::MAX - 1), response: Some(response), ..op.clone() });
            }
        }
    }
    out
}

/// Which unanswered deletes made the reference's deletions that no answered operation accounts
/// for (operation index → revision), and the keys whose every deletion is then accounted for.
///
/// A key qualifies when none of its unexplained deletions removed a value written with a lease
/// (so no revoke could have made it) and its unanswered deletes are all plain deletes: those
/// are interchangeable except for their call times, and as each may take effect any time after
/// its call, giving the deletions (in revision order) to the deletes in call order explains
/// them whenever any assignment does. The deletes left over changed nothing. Revokes are not
/// counted as explaining anything: one that deleted nothing answers the current revision,
/// which may be another operation's.
pub fn deleters<'h>(h: &'h History, reference: &[Event]) -> (BTreeMap<usize, i64>, BTreeSet<&'h str>) {
    let mut explained: BTreeSet<(i64, &str)> = BTreeSet::new();
    let mut leased: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut unanswered: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut conditional: BTreeSet<&str> = BTreeSet::new();
    for (i, op) in h.ops.iter().enumerate() {
        match (&op.request, &op.response) {
            (Request::Delete { key }, Some(Response::Delete { deleted: 1, revision }))
            | (Request::CompareAndDelete { key, .. }, Some(Response::Txn { succeeded: true, revision, .. })) => {
                explained.insert((*revision, key.as_str()));
            }
            (Request::PutWithLease { key, value, .. }, _) => {
                leased.insert((key.as_str(), value.as_str()));
            }
            (Request::Delete { key }, None) => unanswered.entry(key.as_str()).or_default().push(i),
            (Request::CompareAndDelete { key, .. }, None) => {
                conditional.insert(key.as_str());
            }
            _ => {}
        }
    }
    let mut missing: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in reference.iter().filter(|e| e.kind == Kind::Delete && !explained.contains(&(e.revision, e.key.as_str()))) {
        missing.entry(e.key.as_str()).or_default().push(e);
    }
    let keys: BTreeSet<&str> = h
        .ops
        .iter()
        .filter_map(|op| match &op.request {
            Request::Delete { key } | Request::CompareAndDelete { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let mut settled = BTreeSet::new();
    let mut deleted_at = BTreeMap::new();
    for key in keys {
        let events = missing.get(key).map_or(&[][..], Vec::as_slice);
        if events.is_empty() {
            settled.insert(key);
            continue;
        }
        let by_lease = events.iter().any(|e| e.prev.as_deref().is_none_or(|v| leased.contains(&(key, v))));
        let mut deletes = unanswered.get(key).cloned().unwrap_or_default();
        if by_lease || conditional.contains(key) || deletes.len() < events.len() {
            continue;
        }
        deletes.sort_by_key(|&i| h.ops[i].call);
        for (&i, e) in deletes.iter().zip(events) {
            deleted_at.insert(i, e.revision);
        }
        settled.insert(key);
    }
    (deleted_at, settled)
}

/// A watch's shape as the violation names it: `prefix "k/", no prev_kv, NOPUT, progress`.
fn describe(s: &Shape) -> String {
    let mut d = match (s.prefix, s.key.is_empty()) {
        (true, true) => "every key".to_string(),
        (true, false) => format!("prefix {:?}", s.key),
        (false, _) => format!("key {:?}", s.key),
    };
    d.push_str(if s.prev_kv { ", prev_kv" } else { ", no prev_kv" });
    if s.no_put {
        d.push_str(", NOPUT");
    }
    if s.no_delete {
        d.push_str(", NODELETE");
    }
    if s.progress_notify {
        d.push_str(", progress");
    }
    d
}

fn events_of(chain: &WatchChain) -> Vec<Event> {
    chain
        .links
        .iter()
        .flat_map(|l| l.received.iter())
        .flat_map(|r| match r {
            Received::Events(e) => e.clone(),
            Received::Progress(_) => Vec::new(),
        })
        .collect()
}

/// Every revision from 2 to the last one has events: the reference watches every key.
fn contiguous(reference: &[Event]) -> Result<(), String> {
    let mut expect = 2;
    for e in reference {
        if e.revision == expect - 1 {
            continue;
        }
        if e.revision != expect {
            return Err(format!("revision {} follows {}", e.revision, expect - 1));
        }
        expect += 1;
    }
    Ok(())
}

/// A log with nothing past `covered` (the reference knows nothing later).
fn clip(log: &WatchLog, covered: i64) -> WatchLog {
    let received = log
        .received
        .iter()
        .filter_map(|r| match r {
            Received::Events(e) => {
                let kept: Vec<Event> = e.iter().filter(|e| e.revision <= covered).cloned().collect();
                (!kept.is_empty()).then_some(Received::Events(kept))
            }
            Received::Progress(p) => (*p <= covered).then_some(Received::Progress(*p)),
        })
        .collect();
    WatchLog { received, ..log.clone() }
}

fn check_chain(chain: &WatchChain, reference: &[Event], covered: i64) -> Result<(), String> {
    let links: Vec<WatchLog> = chain.links.iter().map(|l| clip(l, covered)).collect();
    for (i, l) in links.iter().enumerate() {
        watch::check_all(l, reference).map_err(|e| format!("stream {i} (from revision {}): {e}", l.start_revision))?;
    }
    for (i, pair) in links.windows(2).enumerate() {
        if pair[1].start_revision > covered {
            continue;
        }
        watch::resumable(&pair[0], &pair[1], reference).map_err(|e| format!("streams {i}→{}: resumable: {e}", i + 1))?;
    }
    Ok(())
}

/// The store's keys at any revision, rebuilt from the reference's events.
struct StatesAt<'a> {
    reference: &'a [Event],
}

impl<'a> StatesAt<'a> {
    fn new(reference: &'a [Event]) -> StatesAt<'a> {
        StatesAt { reference }
    }

    fn at(&self, revision: i64) -> BTreeMap<String, (String, i64)> {
        let mut state = BTreeMap::new();
        for e in self.reference.iter().take_while(|e| e.revision <= revision) {
            match e.kind {
                Kind::Put => state.insert(e.key.clone(), (e.value.clone().unwrap_or_default(), e.revision)),
                Kind::Delete => state.remove(&e.key),
            };
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizable_kv::tests::{op, put};
    fn del(k: &str) -> Request {
        Request::Delete { key: k.into() }
    }
    fn event(revision: i64, key: &str, kind: Kind, value: Option<&str>, prev: Option<&str>) -> Event {
        Event { revision, key: key.into(), kind, value: value.map(Into::into), prev: prev.map(Into::into) }
    }

    #[test]
    fn unanswered_deletes_take_the_unexplained_deletions_in_call_order() {
        let h = History {
            ops: vec![
                op(1, 0, Some(1), put("a", "1"), Some(Response::Put { revision: 2 })),
                op(2, 5, None, del("a"), None),
                op(3, 3, None, del("a"), None),
                op(1, 6, Some(7), put("a", "2"), Some(Response::Put { revision: 4 })),
                op(4, 8, None, del("a"), None),
            ],
        };
        let reference = vec![
            event(2, "a", Kind::Put, Some("1"), None),
            event(3, "a", Kind::Delete, None, Some("1")),
            event(4, "a", Kind::Put, Some("2"), None),
            event(5, "a", Kind::Delete, None, Some("2")),
        ];
        let (at, settled) = deleters(&h, &reference);
        assert_eq!(at, BTreeMap::from([(2, 3), (1, 5)]));
        assert!(settled.contains("a"));
        let patched = patch(&h, &reference);
        assert_eq!(patched.ops.len(), 4, "the delete left over changed nothing and is dropped");
        assert!(linearizable_kv::check(&patched, &KvState::at(1)).is_ok());
    }

    #[test]
    fn deletions_a_revoke_may_have_made_stay_open() {
        let lease = Request::PutWithLease { key: "a".into(), value: "1".into(), lease: 7 };
        let h = History {
            ops: vec![
                op(1, 0, Some(1), lease, Some(Response::Put { revision: 2 })),
                op(2, 2, None, del("a"), None),
                op(3, 3, None, Request::LeaseRevoke { lease: 7 }, None),
            ],
        };
        let reference = vec![event(2, "a", Kind::Put, Some("1"), None), event(3, "a", Kind::Delete, None, Some("1"))];
        let (at, settled) = deleters(&h, &reference);
        assert!(at.is_empty() && settled.is_empty());
        assert_eq!(patch(&h, &reference).ops.len(), 3);
    }

    #[test]
    fn a_deletion_nobody_asked_for_is_not_explained_away() {
        let h = History {
            ops: vec![
                op(1, 0, Some(1), put("a", "1"), Some(Response::Put { revision: 2 })),
                op(1, 2, Some(3), del("b"), Some(Response::Delete { deleted: 0, revision: 3 })),
                op(2, 4, Some(5), Request::Get { key: "a".into() }, Some(Response::Get { value: None, mod_revision: 0, revision: 3 })),
            ],
        };
        let reference = vec![event(2, "a", Kind::Put, Some("1"), None), event(3, "a", Kind::Delete, None, Some("1"))];
        let (at, settled) = deleters(&h, &reference);
        assert!(at.is_empty() && !settled.contains("a"));
        assert!(linearizable_kv::check(&patch(&h, &reference), &KvState::at(1)).is_err());
    }
}
