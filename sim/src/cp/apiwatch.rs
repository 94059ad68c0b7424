//! A watch of every pod through the apiservers, run as an informer runs it (list, watch from
//! the list's resourceVersion with bookmarks, resume from the last resourceVersion seen after
//! every break, relist on 410 Gone), recorded event by event; [`judge`] holds each stream to
//! the store's history: the store's watch checkers (ordered, gap-free) applied to what a
//! component sees.
//!
//! Invariants:
//! - A stream from resourceVersion F whose last event or bookmark is at L delivers exactly the
//!   store's pod events at revisions in (F, L], in order, each as ADDED (the pod's first
//!   version), MODIFIED or DELETED, with the revision as its resourceVersion.
//! - Only revisions the store history covers are judged (it may stop a little earlier).

use super::Record;
use super::history::{ObjKind, Version};
use super::net::ApiConnector;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// One thing a watch stream delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A stream started from this resourceVersion.
    Start(i64),
    /// An event: `A`, `M` or `D`, its resourceVersion, the pod's uid.
    Event(char, i64, String),
    /// A bookmark at this resourceVersion.
    Bookmark(i64),
}

fn rv(s: Option<&String>) -> i64 {
    s.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Watches pods through `apiservers` until a second after the user's convergence verdict (or
/// `until`), recording every stream in `Record::apiwatch`.
pub async fn watch(rec: Rc<RefCell<Record>>, apiservers: Vec<SocketAddr>, until: Duration) -> turmoil::Result {
    use futures::StreamExt;
    let client = super::net::kube_client("podwatcher", ApiConnector::new(apiservers, 1))?;
    let api: Api<Pod> = Api::all(client);
    let now = || turmoil::sim_elapsed().unwrap_or_default();
    let done = |rec: &Rc<RefCell<Record>>, at: &mut Option<Duration>| match *at {
        Some(t) => now() >= t + Duration::from_secs(1),
        None => {
            if rec.borrow().convergence.is_some() {
                *at = Some(now());
            }
            false
        }
    };
    let mut verdict_at = None;
    let mut from: Option<String> = None;
    tokio::time::sleep(Duration::from_secs(1)).await;
    while now() < until && !done(&rec, &mut verdict_at) {
        let version = match from.clone() {
            Some(v) => v,
            None => match tokio::time::timeout(Duration::from_secs(5), api.list(&ListParams::default())).await {
                Ok(Ok(list)) => list.metadata.resource_version.unwrap_or_default(),
                _ => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let params = WatchParams::default().timeout(20);
        let stream = match tokio::time::timeout(Duration::from_secs(5), api.watch(&params, &version)).await {
            Ok(Ok(s)) => s,
            _ => {
                from = Some(version);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        rec.borrow_mut().apiwatch.push(Seen::Start(rv(Some(&version))));
        from = Some(version);
        let mut stream = Box::pin(stream);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let item = tokio::select! {
                _ = tick.tick() => {
                    if now() >= until || done(&rec, &mut verdict_at) { return Ok(()) }
                    continue;
                }
                item = stream.next() => item,
            };
            let (seen, at) = match item {
                Some(Ok(WatchEvent::Added(p))) => ('A', p),
                Some(Ok(WatchEvent::Modified(p))) => ('M', p),
                Some(Ok(WatchEvent::Deleted(p))) => ('D', p),
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    let at = rv(Some(&b.metadata.resource_version));
                    rec.borrow_mut().apiwatch.push(Seen::Bookmark(at));
                    from = Some(b.metadata.resource_version);
                    continue;
                }
                Some(Ok(WatchEvent::Error(s))) if s.code == 410 => {
                    from = None;
                    break;
                }
                // A broken stream: resume from the last resourceVersion seen.
                _ => break,
            };
            let at_rv = rv(at.metadata.resource_version.as_ref());
            rec.borrow_mut().apiwatch.push(Seen::Event(seen, at_rv, at.metadata.uid.clone().unwrap_or_default()));
            from = at.metadata.resource_version.clone();
        }
    }
    Ok(())
}

/// Violations of the watch guarantees (see the module doc) in `seen` against the store's
/// pod history.
pub fn judge(history: &[Version], seen: &[Seen]) -> Vec<String> {
    let pods: Vec<&Version> = history.iter().filter(|v| v.kind == ObjKind::Pod).collect();
    let covered = history.iter().map(|v| v.revision).max().unwrap_or(0);
    let mut first: BTreeSet<&str> = BTreeSet::new();
    let mut expected: BTreeMap<i64, (char, &str)> = BTreeMap::new();
    for v in &pods {
        let kind = if v.deleted {
            'D'
        } else if first.insert(v.uid.as_str()) {
            'A'
        } else {
            'M'
        };
        expected.insert(v.revision, (kind, v.uid.as_str()));
    }
    let mut out = Vec::new();
    let streams = seen.split(|s| matches!(s, Seen::Start(_))).skip(1);
    let starts = seen.iter().filter_map(|s| if let Seen::Start(f) = s { Some(*f) } else { None });
    for (n, (from, items)) in starts.zip(streams).enumerate() {
        let mut last = from;
        let mut got: BTreeMap<i64, (char, &str)> = BTreeMap::new();
        for s in items {
            match s {
                Seen::Event(kind, at, uid) => {
                    if *at <= last {
                        out.push(format!("stream {n} (from {from}): event at {at} after {last}: not ordered"));
                    }
                    got.insert(*at, (*kind, uid.as_str()));
                    last = last.max(*at);
                }
                Seen::Bookmark(at) => {
                    if *at < last {
                        out.push(format!("stream {n} (from {from}): bookmark at {at} after an event at {last}"));
                    }
                    last = last.max(*at);
                }
                Seen::Start(_) => {}
            }
        }
        let last = last.min(covered);
        if last <= from {
            continue;
        }
        for (at, (kind, uid)) in expected.range(from + 1..=last) {
            match got.get(at) {
                None => {
                    out.push(format!("stream {n} (from {from}, through {last}): the pod event at {at} ({kind} {uid}) was never delivered"))
                }
                Some((k, u)) if (k, u) != (kind, uid) => {
                    out.push(format!("stream {n}: the event at {at} is {k} {u}, the store's is {kind} {uid}"))
                }
                Some(_) => {}
            }
        }
        for at in got.keys().filter(|at| **at <= last && !expected.contains_key(at)) {
            out.push(format!("stream {n}: an event at {at}, where the store has no pod event"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(revision: i64, uid: &str, deleted: bool) -> Version {
        Version {
            revision,
            at_ms: 0,
            kind: ObjKind::Pod,
            key: format!("/registry/pods/d/{uid}"),
            uid: uid.into(),
            deleted,
            node: None,
            active: !deleted,
            owner: None,
            replicas: 0,
            max_surge: 0,
            image: None,
            cpu_millis: 0,
            terminal: false,
        }
    }

    #[test]
    fn streams_deliver_the_store_history_in_order_without_gaps() {
        let h = vec![pod(2, "a", false), pod(3, "a", false), pod(5, "b", false), pod(7, "a", true)];
        let e = |k, at, uid: &str| Seen::Event(k, at, uid.into());
        let cases: Vec<(&str, Vec<Seen>, usize)> = vec![
            ("all of it", vec![Seen::Start(1), e('A', 2, "a"), e('M', 3, "a"), e('A', 5, "b"), e('D', 7, "a")], 0),
            ("resumed after 3", vec![Seen::Start(1), e('A', 2, "a"), e('M', 3, "a"), Seen::Start(3), e('A', 5, "b")], 0),
            ("a bookmark promises what is before it", vec![Seen::Start(3), Seen::Bookmark(6)], 1),
            ("a gap", vec![Seen::Start(1), e('A', 2, "a"), e('A', 5, "b")], 1),
            ("out of order", vec![Seen::Start(1), e('A', 2, "a"), e('A', 5, "b"), e('M', 3, "a")], 1),
            ("a wrong type", vec![Seen::Start(4), e('M', 5, "b")], 1),
            ("a phantom event", vec![Seen::Start(3), e('M', 4, "a"), e('A', 5, "b")], 1),
            ("beyond the history is not judged", vec![Seen::Start(7), e('M', 9, "x")], 0),
            ("a stream from beyond the history", vec![Seen::Start(8), e('M', 9, "x")], 0),
        ];
        for (name, seen, violations) in cases {
            let got = judge(&h, &seen);
            assert_eq!(got.len(), violations, "{name}: {got:?}");
        }
    }
}
