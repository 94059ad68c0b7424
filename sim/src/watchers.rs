//! The simulated watchers: Kubernetes-style informers that list, watch, drop and resume;
//! watchers of every shape (a prefix or one key, with or without prev_kv, NOPUT or NODELETE,
//! with or without progress notifications); the reference watcher, every key from revision 1,
//! whose events are the history the other checks are held to; and the read of the final
//! history once the liveness check is done, which the lost-write check is held to.

use crate::record::{FinalHistory, Recorder, WatchChain};
use crate::watch::{Event, Kind, Received, Shape, WatchLog};
use crate::workload::{Active, Conn, KUBE_PREFIX, KV_KEYS, now, paged_list, prefix_end, trace};
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use keel_proto::mvccpb;
use std::net::SocketAddr;
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn event(e: &mvccpb::Event) -> Option<Event> {
    let kv = e.kv.as_ref()?;
    let delete = e.r#type == mvccpb::event::EventType::Delete as i32;
    Some(Event {
        revision: kv.mod_revision,
        key: text(&kv.key),
        kind: if delete { Kind::Delete } else { Kind::Put },
        value: (!delete).then(|| text(&kv.value)),
        prev: e.prev_kv.as_ref().map(|p| text(&p.value)),
    })
}

/// How one watch stream ended.
enum Ended {
    /// The client chose to drop it (or the run is over).
    Dropped,
    /// An error or the stream ended: resume elsewhere.
    Broken,
    /// The start revision was compacted; history starts at this revision.
    Compacted(i64),
}

/// The create request of a watch of `shape` from `start`.
fn create_request(shape: &Shape, start: i64) -> WatchCreateRequest {
    let range_end = match (shape.prefix, shape.key.is_empty()) {
        (false, _) => Vec::new(),
        (true, true) => vec![0u8],
        (true, false) => prefix_end(&shape.key),
    };
    let mut filters = Vec::new();
    if shape.no_put {
        filters.push(FilterType::Noput as i32);
    }
    if shape.no_delete {
        filters.push(FilterType::Nodelete as i32);
    }
    WatchCreateRequest {
        key: shape.key.as_bytes().to_vec().into(),
        range_end: range_end.into(),
        start_revision: start,
        progress_notify: shape.progress_notify,
        prev_kv: shape.prev_kv,
        filters,
        ..Default::default()
    }
}

/// Watch what `log.shape` names from `log.start_revision` until `until`, failure, or (with
/// `upto`) an event or progress notification at or past `upto`, appending what arrives to
/// `log`.
async fn watch_once(conn: &Conn, until: Duration, log: &mut WatchLog, mut deletions: Option<&Recorder>, upto: Option<i64>) -> Ended {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create_request(&log.shape, log.start_revision))) };
    if tx.send(create).await.is_err() {
        return Ended::Broken;
    }
    let mut stream = match WatchClient::new(conn.ch.clone()).watch(tokio_stream_wrapper(rx)).await {
        Ok(s) => s.into_inner(),
        Err(e) => {
            trace(&format!("watch failed: {e}"));
            return Ended::Broken;
        }
    };
    loop {
        let left = until.saturating_sub(now());
        if left.is_zero() {
            return Ended::Dropped;
        }
        // A silent stream for 3 s (progress, when asked for, comes every second) is treated as
        // broken.
        let next = tokio::time::timeout(left.min(Duration::from_secs(3)), stream.message()).await;
        let resp = match next {
            Err(_) if left <= Duration::from_secs(3) => return Ended::Dropped,
            Err(_) => return Ended::Broken,
            Ok(Ok(Some(r))) => r,
            Ok(other) => {
                trace(&format!("watch ended: {other:?}"));
                return Ended::Broken;
            }
        };
        if resp.compact_revision > 0 {
            return Ended::Compacted(resp.compact_revision);
        }
        if resp.canceled {
            trace(&format!("watch canceled: {}", resp.cancel_reason));
            return Ended::Broken;
        }
        if resp.created {
            continue;
        }
        let events: Vec<Event> = resp.events.iter().filter_map(event).collect();
        if let Some(rec) = deletions.as_mut() {
            for e in events.iter().filter(|e| e.kind == Kind::Delete) {
                rec.borrow_mut().deletions.push((e.key.clone(), e.revision, now()));
            }
        }
        let reached = events.last().map_or_else(|| resp.header.as_ref().map_or(0, |h| h.revision), |e| e.revision);
        if events.is_empty() {
            log.received.push(Received::Progress(reached));
        } else {
            log.received.push(Received::Events(events));
        }
        if upto.is_some_and(|r| reached >= r) {
            return Ended::Dropped;
        }
    }
}

fn tokio_stream_wrapper(rx: tokio::sync::mpsc::Receiver<WatchRequest>) -> impl futures::Stream<Item = WatchRequest> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
}

pub(crate) fn last_event(log: &WatchLog) -> Option<i64> {
    log.received.iter().rev().find_map(|r| if let Received::Events(e) = r { e.last().map(|e| e.revision) } else { None })
}

/// A Kubernetes-style watcher (an informer): list the prefix, watch from the list's revision,
/// drop the stream now and then and resume after the last event; relist when compacted.
pub async fn watcher(rec: Recorder, members: Vec<SocketAddr>, seed: u64, stop: Duration) -> turmoil::Result {
    let _active = Active::enter(&rec);
    let mut conn = Conn::new(members, seed);
    'relist: while now() < stop {
        let Some(list) = paged_list(&mut conn, KUBE_PREFIX, 100).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut start = list.revision + 1;
        rec.borrow_mut().lists.push(list);
        let mut chain = WatchChain::default();
        while now() < stop {
            let mut log = WatchLog::new(Shape::informer(KUBE_PREFIX), start);
            let until = (now() + Duration::from_millis(500 + conn.pick(3000))).min(stop);
            let ended = watch_once(&conn, until, &mut log, None, None).await;
            start = last_event(&log).map_or(start, |r| r + 1);
            chain.links.push(log);
            match ended {
                Ended::Dropped => {}
                Ended::Broken => {
                    conn.switch();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ended::Compacted(_) => {
                    rec.borrow_mut().watchers.push(std::mem::take(&mut chain));
                    continue 'relist;
                }
            }
        }
        rec.borrow_mut().watchers.push(chain);
    }
    Ok(())
}

/// The reference watcher: every key from revision 1, resumed after every break, until `stop`.
/// Its events are the store's history the other checks are held to.
pub async fn reference(rec: Recorder, members: Vec<SocketAddr>, seed: u64, stop: Duration) -> turmoil::Result {
    let mut conn = Conn::new(members, seed);
    let mut start = 1;
    let done = |rec: &Recorder, start: i64| {
        let r = rec.borrow();
        r.liveness.is_some() && start > r.final_revision
    };
    while now() < stop && !done(&rec, start) {
        let mut log = WatchLog::new(Shape::informer(""), start);
        // In short stretches, so the watcher notices when the liveness check is done.
        let until = (now() + Duration::from_secs(1)).min(stop);
        let ended = watch_once(&conn, until, &mut log, Some(&rec), None).await;
        start = last_event(&log).map_or(start, |r| r + 1);
        rec.borrow_mut().reference.links.push(log);
        // Another member for the next stretch, so one that lags (cut off, yet still sending
        // progress notifications) cannot hold the reference back.
        conn.switch();
        match ended {
            Ended::Dropped => {}
            Ended::Broken => tokio::time::sleep(Duration::from_millis(50)).await,
            Ended::Compacted(_) => {
                rec.borrow_mut().reference_lost = true;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The shape of shaped watcher `n`: the first never asks for previous values (the path
/// etcdctl's watches take); the others are drawn from the seed: a prefix, one key or every key,
/// with or without prev_kv, no filter, NOPUT or NODELETE, with or without progress.
fn shape_of(n: u64, conn: &mut Conn, kube: bool) -> Shape {
    let base = if kube { KUBE_PREFIX.to_string() } else { "k/".to_string() };
    let one = |conn: &mut Conn| if kube { format!("{base}p{}", conn.pick(KV_KEYS)) } else { format!("{base}{}", conn.pick(KV_KEYS)) };
    let (key, prefix) = match conn.pick(3) {
        0 => (base.clone(), true),
        1 => (one(conn), false),
        _ => (String::new(), true),
    };
    let filter = conn.pick(3);
    Shape {
        key,
        prefix,
        prev_kv: n != 0 && conn.pick(2) == 0,
        no_put: filter == 1,
        no_delete: filter == 2,
        progress_notify: conn.pick(2) == 0,
    }
}

/// A watcher of one shape (see `shape_of`) from revision 1: it drops its stream now and then
/// and resumes after the last event it got; when its start was compacted it starts a new chain
/// at the compacted revision.
pub async fn shaped(rec: Recorder, n: u64, members: Vec<SocketAddr>, seed: u64, kube: bool, stop: Duration) -> turmoil::Result {
    let _active = Active::enter(&rec);
    let mut conn = Conn::new(members, seed);
    let shape = shape_of(n, &mut conn, kube);
    let mut start = 1;
    let mut chain = WatchChain::default();
    while now() < stop {
        let mut log = WatchLog::new(shape.clone(), start);
        let until = (now() + Duration::from_millis(500 + conn.pick(3000))).min(stop);
        let ended = watch_once(&conn, until, &mut log, None, None).await;
        start = last_event(&log).map_or(start, |r| r + 1);
        chain.links.push(log);
        match ended {
            Ended::Dropped => {}
            Ended::Broken => {
                conn.switch();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ended::Compacted(at) => {
                rec.borrow_mut().shaped.push(std::mem::take(&mut chain));
                start = at;
            }
        }
    }
    rec.borrow_mut().shaped.push(chain);
    Ok(())
}

/// The history `addr` holds: every event from the oldest revision it still has, read in one
/// watch until revision `upto` arrived or `deadline`.
pub async fn final_history(addr: SocketAddr, upto: i64, deadline: Duration) -> Result<FinalHistory, String> {
    let conn = Conn::new(vec![addr], 0);
    let mut start = 1;
    loop {
        let mut log = WatchLog::new(Shape::informer(""), start);
        let ended = watch_once(&conn, deadline, &mut log, None, Some(upto)).await;
        let events: Vec<Event> =
            log.received.iter().flat_map(|r| if let Received::Events(e) = r { e.clone() } else { Vec::new() }).collect();
        let progress = log.received.iter().filter_map(|r| if let Received::Progress(p) = r { Some(*p) } else { None }).max();
        let to = events.last().map(|e| e.revision).max(progress).unwrap_or(0);
        match ended {
            Ended::Compacted(at) if now() < deadline => start = at,
            _ if to > 0 => return Ok(FinalHistory { from: start, to, events }),
            _ => return Err("it delivered nothing".into()),
        }
    }
}
