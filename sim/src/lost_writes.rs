//! No acknowledged write is lost: every write a client was told succeeded at revision R (a
//! put, a txn's put, a delete that deleted) is the event at R in the final history of every
//! member (each read once the run is over, whatever the liveness verdict). A write the store
//! lost —
//! acknowledged before it was durable on a quorum, then a crash — is named here with its
//! acknowledgement and the crashes after it, rather than left for the linearizability search
//! or the liveness check to stumble over.
//!
//! A member's history is held only to the revisions it covers: below its first (compacted
//! away) or past its last (it lags) there is nothing to compare.

use crate::history::{Operation, Request, Response};
use crate::record::{FinalHistory, Recorded};
use crate::watch::{Event, Kind};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a write changed: (key, the value put or `None` for a delete).
pub type Changes<'a> = Vec<(&'a str, Option<&'a str>)>;

/// One member's final history: its name, first and last revision, the events at each revision.
type MemberHistory<'a> = (&'a str, i64, i64, BTreeMap<i64, Vec<&'a Event>>);

/// What an acknowledged write changed, and the revision it was acknowledged at.
pub fn acknowledged(op: &Operation) -> Option<(Changes<'_>, i64)> {
    match (&op.request, op.response.as_ref()?) {
        (Request::Put { key, value } | Request::PutWithLease { key, value, .. }, Response::Put { revision }) => {
            Some((vec![(key.as_str(), Some(value.as_str()))], *revision))
        }
        (Request::MultiPut { kvs }, Response::Put { revision }) => {
            Some((kvs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect(), *revision))
        }
        (Request::CompareAndPut { key, value, .. }, Response::Txn { succeeded: true, revision, .. }) => {
            Some((vec![(key.as_str(), Some(value.as_str()))], *revision))
        }
        (Request::Delete { key }, Response::Delete { deleted: 1, revision })
        | (Request::CompareAndDelete { key, .. }, Response::Txn { succeeded: true, revision, .. }) => {
            Some((vec![(key.as_str(), None)], *revision))
        }
        _ => None,
    }
}

fn holds(events: &[&Event], key: &str, value: Option<&str>) -> bool {
    events.iter().any(|e| {
        e.key == key
            && match value {
                Some(v) => e.kind == Kind::Put && e.value.as_deref() == Some(v),
                None => e.kind == Kind::Delete,
            }
    })
}

/// The crashes after `at`, as a sentence.
fn crashes_after(r: &Recorded, at: Duration) -> String {
    let after: Vec<String> = r
        .crashes
        .iter()
        .filter(|(t, _, _)| *t >= at)
        .map(|(t, m, lost)| format!("{m} at {} ms (lost {lost} unsynced log bytes)", t.as_millis()))
        .collect();
    if after.is_empty() { "no crash after it".into() } else { format!("crashes after it: {}", after.join(", ")) }
}

/// Every lost acknowledged write in `r`, one violation each (at most `SHOWN`, then a count):
/// a write missing at its revision from the final history of any member that covers it.
pub fn check(r: &Recorded) -> Vec<String> {
    const SHOWN: usize = 3;
    let histories: Vec<MemberHistory<'_>> = r
        .final_histories
        .iter()
        .filter_map(|(m, h)| h.as_ref().ok().map(|h| (m.as_str(), h)))
        .map(|(m, FinalHistory { from, to, events })| {
            let mut at: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
            for e in events {
                at.entry(e.revision).or_default().push(e);
            }
            (m, *from, *to, at)
        })
        .collect();
    let mut lost = Vec::new();
    for op in &r.history.ops {
        let Some((changes, revision)) = acknowledged(op) else { continue };
        for (key, value) in changes {
            let lacking: Vec<String> = histories
                .iter()
                .filter(|(_, from, to, _)| (*from..=*to).contains(&revision))
                .filter_map(|(m, _, _, at)| {
                    let there = at.get(&revision).map_or(&[][..], Vec::as_slice);
                    (!holds(there, key, value)).then(|| {
                        let found: Vec<String> =
                            there.iter().map(|e| format!("{} {:?} {}", e.key, e.kind, e.value.as_deref().unwrap_or(""))).collect();
                        format!("{m} (holds {found:?} there)")
                    })
                })
                .collect();
            if lacking.is_empty() {
                continue;
            }
            let when = op.ret.and_then(|t| r.returned_at.get(&t)).copied().unwrap_or_default();
            let what = match value {
                Some(v) => format!("put {key} = {v:?}"),
                None => format!("delete of {key}"),
            };
            lost.push(format!(
                "lost acknowledged write: {what} (client {}) acknowledged at revision {revision} at {} ms is not in the final history of {}; {}",
                op.client,
                when.as_millis(),
                lacking.join(", "),
                crashes_after(r, when)
            ));
        }
    }
    let more = lost.len().saturating_sub(SHOWN);
    lost.truncate(SHOWN);
    if more > 0 {
        lost.push(format!("lost acknowledged write: {more} more"));
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64, key: &str, value: &str) -> Event {
        Event { revision: rev, key: key.into(), kind: Kind::Put, value: Some(value.into()), prev: None }
    }

    fn acked(client: u32, ret: u64, key: &str, value: &str, revision: i64) -> Operation {
        let request = Request::Put { key: key.into(), value: value.into() };
        Operation { client, call: ret - 1, ret: Some(ret), request, response: Some(Response::Put { revision }) }
    }

    #[test]
    fn a_write_missing_from_the_final_history_is_named_with_the_crash_after_it() {
        let mut r = Recorded::default();
        r.history.push(acked(1, 2, "k/1", "a", 2));
        r.history.push(acked(2, 4, "k/2", "b", 3));
        r.returned_at.insert(4, Duration::from_millis(1500));
        r.crashes.push((Duration::from_millis(1000), "m1".into(), 0));
        r.crashes.push((Duration::from_millis(1600), "m2".into(), 96));
        // The store kept the first write; at revision 3 it holds another write (b was lost and
        // its revision reused).
        let kept = FinalHistory { from: 1, to: 3, events: vec![put(2, "k/1", "a"), put(3, "k/2", "b")] };
        let reused = FinalHistory { from: 1, to: 3, events: vec![put(2, "k/1", "a"), put(3, "k/3", "z")] };
        r.final_histories = vec![("m1".into(), Ok(kept)), ("m2".into(), Ok(reused)), ("m3".into(), Err("down".into()))];
        let v = check(&r);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(
            v[0].starts_with("lost acknowledged write: put k/2 = \"b\" (client 2) acknowledged at revision 3 at 1500 ms is not in the final history of m2 (holds [\"k/3 Put z\"] there)"),
            "{}",
            v[0]
        );
        assert!(v[0].ends_with("crashes after it: m2 at 1600 ms (lost 96 unsynced log bytes)"), "{}", v[0]);
    }

    #[test]
    fn writes_the_store_holds_or_that_were_compacted_away_pass() {
        let mut r = Recorded::default();
        r.history.push(acked(1, 2, "k/1", "a", 2));
        r.history.push(acked(1, 4, "k/1", "b", 5));
        r.final_histories = vec![("m1".into(), Ok(FinalHistory { from: 4, to: 5, events: vec![put(5, "k/1", "b")] }))];
        assert!(check(&r).is_empty());
        r.history.push(acked(1, 6, "k/1", "c", 7));
        assert!(check(&r).is_empty(), "past the member's last revision: it lags, nothing to compare");
        r.final_histories.clear();
        assert!(check(&r).is_empty(), "no final history: nothing to hold writes to");
    }
}
