//! etcd's watch guarantees, checked on what watchers received against the reference: every
//! change the store committed, in revision order (from an unfiltered watch from revision 1, or
//! from the linearized KV history).
//!
//! - ordered: revisions never go backwards;
//! - unique: no (revision, key) twice;
//! - atomic: a revision's events arrive in one response;
//! - reliable: no gaps between the start revision and the last revision seen;
//! - bookmarkable: a progress notification at R comes after every event up to R;
//! - prev_kv: the previous value sent is the key's value before the change, and none is sent
//!   to a watcher that did not ask for it;
//! - resumable: a watch resumed after the last revision seen continues without gap or repeat;
//! - equal to the KV history: every acknowledged write is an event at its revision, and every
//!   event was written by some client.

use crate::history::{History, Request, Response};
use std::collections::{BTreeMap, HashSet};

/// What changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Put.
    Put,
    /// Delete.
    Delete,
}

/// One watch event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The revision of the change (the event's mod revision).
    pub revision: i64,
    /// Key.
    pub key: String,
    /// Put or delete.
    pub kind: Kind,
    /// The new value (puts).
    pub value: Option<String>,
    /// With prev_kv: the value before the change (`None` when the key did not exist).
    pub prev: Option<String>,
}

/// One message a watcher received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A response carrying events.
    Events(Vec<Event>),
    /// A progress notification (or bookmark) at this header revision.
    Progress(i64),
}

/// What a watch asks for, as its create request says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The key, or with `prefix` every key starting with it (`""`: every key).
    pub key: String,
    /// `key` is a prefix (the range end is its prefix end), not a single key.
    pub prefix: bool,
    /// prev_kv was asked for.
    pub prev_kv: bool,
    /// The NOPUT filter: no put events.
    pub no_put: bool,
    /// The NODELETE filter: no delete events.
    pub no_delete: bool,
    /// Periodic progress notifications were asked for.
    pub progress_notify: bool,
}

impl Shape {
    /// Every key under `prefix`, with prev_kv and progress notifications (informers, the
    /// reference).
    pub fn informer(prefix: &str) -> Shape {
        Shape { key: prefix.into(), prefix: true, prev_kv: true, no_put: false, no_delete: false, progress_notify: true }
    }

    /// True when an event is one this watch selects (revisions aside).
    pub fn selects(&self, e: &Event) -> bool {
        let key = if self.prefix { e.key.starts_with(&self.key) } else { e.key == self.key };
        let kind = match e.kind {
            Kind::Put => !self.no_put,
            Kind::Delete => !self.no_delete,
        };
        key && kind
    }
}

/// What one watcher asked for and got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchLog {
    /// What it watches.
    pub shape: Shape,
    /// The start revision asked for.
    pub start_revision: i64,
    /// What arrived, in order.
    pub received: Vec<Received>,
}

impl WatchLog {
    /// A log for a watch of `shape` from `start_revision`, nothing received yet.
    pub fn new(shape: Shape, start_revision: i64) -> WatchLog {
        WatchLog { shape, start_revision, received: Vec::new() }
    }

    fn events(&self) -> impl Iterator<Item = &Event> {
        self.received.iter().flat_map(|r| match r {
            Received::Events(e) => e.as_slice(),
            Received::Progress(_) => &[],
        })
    }

    fn wants(&self, e: &Event) -> bool {
        self.shape.selects(e) && e.revision >= self.start_revision
    }
}

/// ordered: revisions never go backwards.
pub fn ordered(w: &WatchLog) -> Result<(), String> {
    let mut last = 0;
    for e in w.events() {
        if e.revision < last {
            return Err(format!("revision {} after {last}", e.revision));
        }
        last = e.revision;
    }
    Ok(())
}

/// unique: no (revision, key) twice.
pub fn unique(w: &WatchLog) -> Result<(), String> {
    let mut seen = HashSet::new();
    for e in w.events() {
        if !seen.insert((e.revision, e.key.clone())) {
            return Err(format!("{} at revision {} delivered twice", e.key, e.revision));
        }
    }
    Ok(())
}

/// atomic: every response that carries a revision carries all of that revision's events the
/// watch selects, and no other response carries any of them.
pub fn atomic(w: &WatchLog, reference: &[Event]) -> Result<(), String> {
    let mut by_rev: BTreeMap<i64, usize> = BTreeMap::new();
    for e in reference.iter().filter(|e| w.wants(e)) {
        *by_rev.entry(e.revision).or_default() += 1;
    }
    let mut delivered_in: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, r) in w.received.iter().enumerate() {
        let Received::Events(events) = r else { continue };
        let mut here: BTreeMap<i64, usize> = BTreeMap::new();
        for e in events {
            *here.entry(e.revision).or_default() += 1;
        }
        for (rev, n) in here {
            if let Some(prev) = delivered_in.insert(rev, i) {
                return Err(format!("revision {rev} split across responses {prev} and {i}"));
            }
            let want = by_rev.get(&rev).copied().unwrap_or(0);
            if n != want {
                return Err(format!("response {i} carries {n} of revision {rev}'s {want} events"));
            }
        }
    }
    Ok(())
}

/// reliable: the events delivered are exactly the reference's selected events from the start
/// revision up to the last revision delivered (or the last progress), in order.
pub fn reliable(w: &WatchLog, reference: &[Event]) -> Result<(), String> {
    let last_event = w.events().map(|e| e.revision).max().unwrap_or(0);
    let last_progress = w.received.iter().filter_map(|r| if let Received::Progress(p) = r { Some(*p) } else { None }).max().unwrap_or(0);
    let upto = last_event.max(last_progress);
    let want: Vec<(i64, &str)> =
        reference.iter().filter(|e| w.wants(e) && e.revision <= upto).map(|e| (e.revision, e.key.as_str())).collect();
    let got: Vec<(i64, &str)> = w.events().map(|e| (e.revision, e.key.as_str())).collect();
    if want == got {
        return Ok(());
    }
    let missing = want.iter().find(|x| !got.contains(x));
    let extra = got.iter().find(|x| !want.contains(x));
    Err(format!("delivered events differ from the store's: first missing {missing:?}, first unexpected {extra:?}"))
}

/// bookmarkable: a progress notification at R arrives only after every selected event up to R.
pub fn bookmarkable(w: &WatchLog, reference: &[Event]) -> Result<(), String> {
    let mut delivered: HashSet<(i64, &str)> = HashSet::new();
    for r in &w.received {
        match r {
            Received::Events(events) => delivered.extend(events.iter().map(|e| (e.revision, e.key.as_str()))),
            Received::Progress(at) => {
                if let Some(e) =
                    reference.iter().find(|e| w.wants(e) && e.revision <= *at && !delivered.contains(&(e.revision, e.key.as_str())))
                {
                    return Err(format!("progress at {at} before the event of {} at revision {}", e.key, e.revision));
                }
            }
        }
    }
    Ok(())
}

/// prev_kv: each event's previous value is the key's value just before the change; a watch
/// that did not ask for previous values gets none.
pub fn prev_kv(w: &WatchLog, reference: &[Event]) -> Result<(), String> {
    if !w.shape.prev_kv {
        return match w.events().find(|e| e.prev.is_some()) {
            Some(e) => Err(format!("a previous value of {} at revision {} sent unasked", e.key, e.revision)),
            None => Ok(()),
        };
    }
    let mut before: BTreeMap<(i64, &str), Option<String>> = BTreeMap::new();
    let mut current: BTreeMap<&str, String> = BTreeMap::new();
    for e in reference {
        before.insert((e.revision, e.key.as_str()), current.get(e.key.as_str()).cloned());
        match e.kind {
            Kind::Put => current.insert(e.key.as_str(), e.value.clone().unwrap_or_default()),
            Kind::Delete => current.remove(e.key.as_str()),
        };
    }
    for e in w.events() {
        let want = before.get(&(e.revision, e.key.as_str())).cloned().flatten();
        if e.prev != want {
            return Err(format!("prev_kv of {} at revision {}: sent {:?}, was {want:?}", e.key, e.revision, e.prev));
        }
    }
    Ok(())
}

/// resumable: `second`, resumed after the last revision `first` delivered, continues it with
/// neither gap nor repeat.
pub fn resumable(first: &WatchLog, second: &WatchLog, reference: &[Event]) -> Result<(), String> {
    let last = first.events().map(|e| e.revision).max().unwrap_or(first.start_revision - 1);
    if second.start_revision != last + 1 {
        return Err(format!("resumed at {} after delivering up to {last}", second.start_revision));
    }
    let joined = WatchLog {
        shape: first.shape.clone(),
        start_revision: first.start_revision,
        received: first.received.iter().chain(&second.received).cloned().collect(),
    };
    unique(&joined)?;
    reliable(&joined, reference)
}

/// Every watch guarantee one log can be held to.
pub fn check_all(w: &WatchLog, reference: &[Event]) -> Result<(), String> {
    ordered(w).map_err(|e| format!("ordered: {e}"))?;
    unique(w).map_err(|e| format!("unique: {e}"))?;
    atomic(w, reference).map_err(|e| format!("atomic: {e}"))?;
    reliable(w, reference).map_err(|e| format!("reliable: {e}"))?;
    bookmarkable(w, reference).map_err(|e| format!("bookmarkable: {e}"))?;
    prev_kv(w, reference).map_err(|e| format!("prev_kv: {e}"))
}

/// Events equal to the KV history: each acknowledged write is the reference's event at its
/// revision, and each reference put wrote a value some client asked to write. Writes past the
/// reference's last revision (it stopped before them) are not held to it.
pub fn matches_history(reference: &[Event], h: &History) -> Result<(), String> {
    let covered = reference.iter().map(|e| e.revision).max().unwrap_or(0);
    let at: BTreeMap<i64, Vec<&Event>> = reference.iter().fold(BTreeMap::new(), |mut m, e| {
        m.entry(e.revision).or_insert_with(Vec::new).push(e);
        m
    });
    let mut written: HashSet<(&str, &str)> = HashSet::new();
    for op in &h.ops {
        // (key, value written or None for a delete), and the revision if it was acknowledged.
        let (changes, revision): (Vec<(&str, Option<&String>)>, Option<i64>) = match (&op.request, &op.response) {
            (Request::Put { key, value } | Request::PutWithLease { key, value, .. }, resp) => {
                (vec![(key, Some(value))], if let Some(Response::Put { revision }) = resp { Some(*revision) } else { None })
            }
            (Request::MultiPut { kvs }, resp) => (
                kvs.iter().map(|(k, v)| (k.as_str(), Some(v))).collect(),
                if let Some(Response::Put { revision }) = resp { Some(*revision) } else { None },
            ),
            (Request::CompareAndPut { key, value, .. }, resp) => {
                let rev = match resp {
                    Some(Response::Txn { succeeded: true, revision, .. }) => Some(*revision),
                    _ => None,
                };
                (vec![(key, Some(value))], rev)
            }
            (Request::Delete { key }, Some(Response::Delete { deleted: 1, revision })) => (vec![(key, None)], Some(*revision)),
            (Request::CompareAndDelete { key, .. }, Some(Response::Txn { succeeded: true, revision, .. })) => {
                (vec![(key, None)], Some(*revision))
            }
            _ => continue,
        };
        for &(key, value) in &changes {
            if let Some(v) = value {
                written.insert((key, v));
            }
        }
        let Some(rev) = revision.filter(|r| *r <= covered) else { continue };
        for (key, value) in changes {
            let found = at.get(&rev).is_some_and(|es| es.iter().any(|e| e.key == key && e.value.as_ref() == value));
            if !found {
                return Err(format!("acknowledged write of {key} at revision {rev} is not the store's event there"));
            }
        }
    }
    for e in reference.iter().filter(|e| e.kind == Kind::Put) {
        if !written.contains(&(e.key.as_str(), e.value.as_deref().unwrap_or_default())) {
            return Err(format!("event {} = {:?} at revision {} was written by nobody", e.key, e.value, e.revision));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Operation;

    fn put(rev: i64, key: &str, value: &str, prev: Option<&str>) -> Event {
        Event { revision: rev, key: key.into(), kind: Kind::Put, value: Some(value.into()), prev: prev.map(str::to_string) }
    }

    /// Revisions 2..=5: a=1; (b=1, c=1 in one txn); a=2; delete b.
    fn reference() -> Vec<Event> {
        vec![
            put(2, "a", "1", None),
            put(3, "b", "1", None),
            put(3, "c", "1", None),
            put(4, "a", "2", Some("1")),
            Event { revision: 5, key: "b".into(), kind: Kind::Delete, value: None, prev: Some("1".into()) },
        ]
    }

    fn log(received: Vec<Received>) -> WatchLog {
        WatchLog { shape: Shape::informer(""), start_revision: 2, received }
    }

    fn good() -> WatchLog {
        let r = reference();
        log(vec![
            Received::Events(vec![r[0].clone()]),
            Received::Events(vec![r[1].clone(), r[2].clone()]),
            Received::Progress(3),
            Received::Events(vec![r[3].clone(), r[4].clone()]),
            Received::Progress(5),
        ])
    }

    #[test]
    fn a_faithful_watch_passes_every_check() {
        assert_eq!(check_all(&good(), &reference()), Ok(()));
    }

    #[test]
    fn each_broken_guarantee_is_reported() {
        let r = reference();
        let skipped = log(vec![Received::Events(vec![r[0].clone()]), Received::Events(vec![r[3].clone()])]);
        assert!(reliable(&skipped, &r).unwrap_err().contains("missing"), "a watch that skips a revision");
        let twice = log(vec![Received::Events(vec![r[0].clone()]), Received::Events(vec![r[0].clone()])]);
        assert!(unique(&twice).is_err());
        let backwards = log(vec![Received::Events(vec![r[3].clone()]), Received::Events(vec![r[0].clone()])]);
        assert!(ordered(&backwards).is_err());
        let split = log(vec![Received::Events(vec![r[0].clone(), r[1].clone()]), Received::Events(vec![r[2].clone()])]);
        assert!(atomic(&split, &r).unwrap_err().contains("1 of revision 3's 2 events"), "a revision split across responses");
        let early =
            log(vec![Received::Events(vec![r[0].clone()]), Received::Progress(3), Received::Events(vec![r[1].clone(), r[2].clone()])]);
        assert!(bookmarkable(&early, &r).is_err(), "progress at 3 before revision 3's events");
        let mut wrong_prev = r[3].clone();
        wrong_prev.prev = None;
        let bad_prev = log(vec![
            Received::Events(vec![r[0].clone()]),
            Received::Events(vec![r[1].clone(), r[2].clone()]),
            Received::Events(vec![wrong_prev]),
        ]);
        assert!(prev_kv(&bad_prev, &r).is_err());
    }

    #[test]
    fn resumed_watches_must_continue_exactly() {
        let r = reference();
        let first = log(vec![Received::Events(vec![r[0].clone()]), Received::Events(vec![r[1].clone(), r[2].clone()])]);
        let mut second = log(vec![Received::Events(vec![r[3].clone(), r[4].clone()])]);
        second.start_revision = 4;
        assert_eq!(resumable(&first, &second, &r), Ok(()));
        second.start_revision = 5;
        assert!(resumable(&first, &second, &r).is_err(), "a resume that skips revision 4");
    }

    #[test]
    fn prefixes_select_what_a_watch_must_see() {
        let r = reference();
        let mut unasked = r[3].clone();
        unasked.prev = None;
        let only_a = WatchLog {
            shape: Shape { prev_kv: false, ..Shape::informer("a") },
            start_revision: 3,
            received: vec![Received::Events(vec![unasked]), Received::Progress(5)],
        };
        assert_eq!(check_all(&only_a, &r), Ok(()));
        let mut sent = only_a.clone();
        sent.received[0] = Received::Events(vec![r[3].clone()]);
        assert!(prev_kv(&sent, &r).unwrap_err().contains("unasked"), "a previous value nobody asked for");
    }

    #[test]
    fn filters_and_single_keys_select_what_a_watch_must_see() {
        let r = reference();
        let deletes = Shape { no_put: true, ..Shape::informer("") };
        let only_deletes = WatchLog::new(deletes, 2);
        let mut got = only_deletes.clone();
        got.received = vec![Received::Events(vec![r[4].clone()]), Received::Progress(5)];
        assert_eq!(check_all(&got, &r), Ok(()), "NOPUT: the delete of b alone");
        got.received = vec![Received::Events(vec![r[3].clone(), r[4].clone()])];
        assert!(check_all(&got, &r).is_err(), "a put through a NOPUT filter");
        let puts_of_b = WatchLog::new(Shape { key: "b".into(), prefix: false, no_delete: true, ..Shape::informer("") }, 2);
        let mut got = puts_of_b.clone();
        got.received = vec![Received::Events(vec![r[1].clone()]), Received::Progress(5)];
        assert_eq!(check_all(&got, &r), Ok(()), "NODELETE on the single key b: its put");
        got.received = vec![Received::Progress(5)];
        assert!(reliable(&got, &r).unwrap_err().contains("missing"), "the put of b left out");
    }

    #[test]
    fn events_must_match_the_kv_history() {
        let r = reference();
        let op = |request, response| Operation { client: 1, call: 0, ret: Some(1), request, response: Some(response) };
        let mut h = History::default();
        h.push(op(Request::Put { key: "a".into(), value: "1".into() }, Response::Put { revision: 2 }));
        h.push(op(Request::Put { key: "b".into(), value: "1".into() }, Response::Put { revision: 3 }));
        h.push(op(Request::Put { key: "c".into(), value: "1".into() }, Response::Put { revision: 3 }));
        h.push(op(Request::Put { key: "a".into(), value: "2".into() }, Response::Put { revision: 4 }));
        h.push(op(Request::Delete { key: "b".into() }, Response::Delete { deleted: 1, revision: 5 }));
        assert_eq!(matches_history(&r, &h), Ok(()));
        h.push(op(Request::Put { key: "z".into(), value: "9".into() }, Response::Put { revision: 7 }));
        assert_eq!(matches_history(&r, &h), Ok(()), "past the reference's end: not held to it");
        h.ops.pop();
        h.push(op(Request::Put { key: "z".into(), value: "9".into() }, Response::Put { revision: 4 }));
        assert!(matches_history(&r, &h).unwrap_err().contains("not the store's event"), "an acknowledged write the store lost");
        h.ops.pop();
        h.ops.remove(0);
        assert!(matches_history(&r, &h).unwrap_err().contains("written by nobody"));
    }
}
