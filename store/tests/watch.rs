//! Black-box Watch tests over gRPC against a real keel-store process.

mod common;

use common::Member;
use common::*;
use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::*;
use keel_proto::mvccpb::event::EventType;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl Stream {
    async fn open(m: &Member) -> Stream {
        let (tx, rx) = mpsc::channel(1024);
        let rx = m.watch().await.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
        Stream { tx, rx }
    }

    async fn create(&mut self, req: WatchCreateRequest) -> i64 {
        self.send(RequestUnion::CreateRequest(req)).await;
        let r = self.next().await;
        assert!(r.created, "expected a created response, got {r:?}");
        r.watch_id
    }

    async fn send(&self, u: RequestUnion) {
        self.tx.send(WatchRequest { request_union: Some(u) }).await.unwrap();
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a watch response within 10 s")
            .unwrap()
            .expect("stream open")
    }

    /// Collect `n` events (from any watchers), returning (watch_id, type, key, mod_revision).
    async fn events(&mut self, n: usize) -> Vec<(i64, i32, String, i64)> {
        let mut out = Vec::new();
        while out.len() < n {
            let r = self.next().await;
            for e in r.events {
                let kv = e.kv.unwrap();
                out.push((r.watch_id, e.r#type, String::from_utf8(kv.key.to_vec()).unwrap(), kv.mod_revision));
            }
        }
        out
    }
}

fn create(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest { key: b(key), range_end: b(end), start_revision: start, ..Default::default() }
}

async fn put(m: &Member, k: &str, v: &str) -> i64 {
    let mut kv = m.kv().await;
    kv.put(PutRequest { key: b(k), value: b(v), ..Default::default() }).await.unwrap().into_inner().header.unwrap().revision
}

#[tokio::test]
async fn watch_replays_history_then_follows_live_writes() {
    let m = Member::start(&[]);
    put(&m, "a", "1").await; // 2
    put(&m, "b", "1").await; // 3
    put(&m, "a", "2").await; // 4
    let mut s = Stream::open(&m).await;
    let id = s.create(create("a", "", 2)).await;
    assert_eq!(s.events(2).await, vec![(id, 0, "a".into(), 2), (id, 0, "a".into(), 4)]);
    let mut kv = m.kv().await;
    kv.delete_range(DeleteRangeRequest { key: b("a"), ..Default::default() }).await.unwrap(); // 5
    put(&m, "a", "3").await; // 6
    assert_eq!(s.events(2).await, vec![(id, EventType::Delete as i32, "a".into(), 5), (id, 0, "a".into(), 6)]);
}

#[tokio::test]
async fn prefix_prev_kv_and_filters() {
    let m = Member::start(&[]);
    put(&m, "p/x", "old").await; // 2
    let mut s = Stream::open(&m).await;
    let all = s.create(WatchCreateRequest { prev_kv: true, ..create("p/", "p0", 0) }).await;
    let no_put = s.create(WatchCreateRequest { filters: vec![FilterType::Noput as i32], ..create("p/", "p0", 0) }).await;
    assert_ne!(all, no_put);
    put(&m, "p/x", "new").await; // 3
    put(&m, "q", "outside").await; // 4
    let mut kv = m.kv().await;
    kv.delete_range(DeleteRangeRequest { key: b("p/x"), ..Default::default() }).await.unwrap(); // 5
    let r = s.next().await;
    assert_eq!(r.watch_id, all);
    assert_eq!(&r.events[0].prev_kv.as_ref().unwrap().value[..], b"old");
    assert_eq!(&r.events[0].kv.as_ref().unwrap().value[..], b"new");
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = s.next().await;
        for e in r.events {
            got.push((r.watch_id, e.r#type, e.prev_kv.map(|p| p.value.to_vec())));
        }
    }
    got.sort();
    assert_eq!(got, vec![(all, EventType::Delete as i32, Some(b"new".to_vec())), (no_put, EventType::Delete as i32, None)]);
}

#[tokio::test]
async fn cancel_progress_and_duplicate_ids() {
    let m = Member::start(&[]);
    let mut s = Stream::open(&m).await;
    let id = s.create(WatchCreateRequest { watch_id: 42, ..create("k", "", 0) }).await;
    assert_eq!(id, 42, "a client-chosen ID is kept");
    s.send(RequestUnion::CreateRequest(WatchCreateRequest { watch_id: 42, ..create("k", "", 0) })).await;
    let dup = s.next().await;
    assert!(dup.created && dup.canceled, "a reused ID is refused: {dup:?}");
    let rev = put(&m, "k", "v").await;
    assert_eq!(s.events(1).await[0].3, rev);
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {})).await;
    let p = s.next().await;
    assert!(p.events.is_empty());
    assert_eq!(p.header.unwrap().revision, rev, "progress reports the revision every sent event is at or below");
    s.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 42 })).await;
    let c = s.next().await;
    assert!(c.canceled && c.watch_id == 42);
    put(&m, "k", "after-cancel").await;
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {})).await;
    let p = s.next().await;
    assert!(p.events.is_empty(), "no event after cancel: {p:?}");
}

#[tokio::test]
async fn a_watch_below_the_compacted_revision_is_canceled_with_it() {
    let m = Member::start(&[]);
    for i in 0..5 {
        put(&m, "k", &i.to_string()).await; // 2..=6
    }
    let mut kv = m.kv().await;
    kv.compact(CompactionRequest { revision: 5, physical: true }).await.unwrap();
    let mut s = Stream::open(&m).await;
    s.send(RequestUnion::CreateRequest(create("k", "", 3))).await;
    let created = s.next().await;
    assert!(created.created);
    let canceled = s.next().await;
    assert!(canceled.canceled);
    assert_eq!(canceled.compact_revision, 5);
    assert_eq!(canceled.cancel_reason, "", "etcd 3.4 leaves the reason empty; compact_revision says it");
    let id = s.create(create("k", "", 5)).await;
    assert_eq!(s.events(2).await, vec![(id, 0, "k".into(), 5), (id, 0, "k".into(), 6)], "the compacted revision itself is still watchable");
}

/// 1,000 watchers share one stream that keeps up; a second stream does not read at all while
/// thousands of events pile up. The fast stream must see everything promptly, and the slow one
/// must still get every event, in order, once it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_on_one_stream_and_a_slow_reader() {
    let m = Member::start(&[]);
    let mut fast = Stream::open(&m).await;
    for i in 0..1000 {
        fast.create(create(&format!("key{:03}", i % 100), "", 0)).await;
    }
    let mut slow = Stream::open(&m).await;
    slow.create(create("key", "kez", 0)).await;
    let writes = 3000;
    let kv = m.kv().await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut kv = kv.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..writes / 4 {
                let key = format!("key{:03}", (w * 7 + i) % 100);
                kv.put(PutRequest { key: b(&key), value: b(&"x".repeat(200)), ..Default::default() }).await.unwrap();
            }
        }));
    }
    // Every write matches 10 watchers on the fast stream.
    let mut fast_events = 0;
    let mut per_watcher_last: std::collections::HashMap<i64, i64> = Default::default();
    while fast_events < writes * 10 {
        let r = fast.next().await;
        for e in &r.events {
            let rev = e.kv.as_ref().unwrap().mod_revision;
            let last = per_watcher_last.entry(r.watch_id).or_default();
            assert!(rev > *last, "watcher {} went from {} to {}", r.watch_id, last, rev);
            *last = rev;
        }
        fast_events += r.events.len();
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(fast_events, writes * 10);
    // Now the slow stream reads: every revision 2..=writes+1 exactly once, in order.
    let got = slow.events(writes).await;
    let revs: Vec<i64> = got.iter().map(|e| e.3).collect();
    assert_eq!(revs, (2..2 + writes as i64).collect::<Vec<_>>());
}

#[tokio::test]
async fn watching_from_revision_zero_means_from_now() {
    let m = Member::start(&[]);
    put(&m, "k", "before").await;
    let mut s = Stream::open(&m).await;
    let id = s.create(create("k", "", 0)).await;
    let rev = put(&m, "k", "after").await;
    assert_eq!(s.events(1).await, vec![(id, 0, "k".into(), rev)]);
}

#[tokio::test]
async fn progress_notify_reports_quiet_watchers_periodically() {
    let m = Member::start(&["--experimental-watch-progress-notify-interval", "300ms"]);
    let rev = put(&m, "k", "v").await;
    let mut s = Stream::open(&m).await;
    let id = s.create(WatchCreateRequest { progress_notify: true, ..create("quiet", "", 0) }).await;
    let p = s.next().await;
    assert_eq!(p.watch_id, id);
    assert!(p.events.is_empty() && !p.canceled);
    assert_eq!(p.header.unwrap().revision, rev);
}

#[tokio::test]
async fn lease_expiry_is_seen_as_delete_events() {
    let m = Member::start(&["--election-timeout", "500", "--heartbeat-interval", "100"]);
    let id = m.lease().await.lease_grant(LeaseGrantRequest { ttl: 1, id: 0 }).await.unwrap().into_inner().id;
    let mut kv = m.kv().await;
    for k in ["e/1", "e/2"] {
        kv.put(PutRequest { key: b(k), value: b("v"), lease: id, ..Default::default() }).await.unwrap();
    }
    let mut s = Stream::open(&m).await;
    let w = s.create(WatchCreateRequest { prev_kv: true, ..create("e/", "e0", 0) }).await;
    let r = s.next().await;
    assert_eq!(r.watch_id, w);
    let deleted: Vec<_> = r.events.iter().map(|e| (e.r#type, e.prev_kv.as_ref().map(|p| p.lease))).collect();
    assert_eq!(deleted, vec![(EventType::Delete as i32, Some(id)), (EventType::Delete as i32, Some(id))]);
}

#[tokio::test]
async fn watchers_of_a_departed_client_are_removed() {
    let m = Member::start(&[]);
    for _ in 0..20 {
        let mut s = Stream::open(&m).await;
        s.create(create("quiet", "", 0)).await;
        drop(s);
    }
    let metric = || {
        let (_, body) = m.http("GET", "/metrics", "");
        body.lines().find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total ")).map(|l| l.split_whitespace().nth(1).unwrap().to_string())
    };
    for _ in 0..100 {
        if metric().as_deref() == Some("0") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("watchers of closed streams are still registered: {:?}", metric());
}

#[tokio::test]
async fn an_empty_watch_range_is_refused() {
    let m = Member::start(&[]);
    let mut s = Stream::open(&m).await;
    s.send(RequestUnion::CreateRequest(create("b", "a", 0))).await;
    let r = s.next().await;
    assert!(r.created && r.canceled);
    assert_eq!((r.watch_id, r.cancel_reason.as_str()), (-1, "mvcc: watcher range is empty"));
}

#[tokio::test]
async fn a_negative_start_revision_reads_no_history_as_etcd_does() {
    // etcd 3.4.23 (checked with etcdctl watch --rev=-5 and the differential test): a start
    // below the first revision (-1 before any compaction) is cancelled as compacted, with
    // that revision; -1 itself reads no history (as a revision key it sorts after every
    // record) and then delivers what comes.
    let m = Member::start(&[]);
    put(&m, "k", "1").await; // 2
    put(&m, "k", "2").await; // 3
    let mut s = Stream::open(&m).await;
    let id = s.create(create("k", "", -1)).await;
    let mut below = Stream::open(&m).await;
    below.create(create("k", "", -5)).await;
    let r = below.next().await;
    assert!(r.canceled && r.events.is_empty(), "{r:?}");
    assert_eq!(r.compact_revision, -1);
    put(&m, "k", "3").await; // 4
    assert_eq!(s.events(1).await, vec![(id, 0, "k".into(), 4)]);
}
