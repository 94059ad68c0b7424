//! The watch op: one stream with one or two watches (start revisions in the past, now, the
//! future or compacted; key, range, from-key and prefix ranges; NOPUT/NODELETE filters;
//! prev_kv; client-chosen and repeated watch IDs), then maybe a progress request, a cancel of
//! each watch and a cancel of an unknown ID. No write happens meanwhile, so what each watch
//! delivers is fixed: its past events, which are counted in etcd's own history (the events of
//! the all-keys watch), so each side is read until it delivered them, never for a fixed time.
//! The answer is each watch's responses in order, headers normalised; events are listed one
//! by one (how a server splits them into responses is its own).

use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse};
use keel_proto::mvccpb::{Event, event::EventType};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tonic::transport::Channel;

/// One watch stream's requests.
#[derive(Clone, Debug)]
pub struct WatchOp {
    pub creates: Vec<WatchCreateRequest>,
    pub progress: bool,
    pub cancel: bool,
    pub cancel_unknown: bool,
}

/// How many of `history`'s events (every event so far, in order) the watch `c` delivers,
/// when created at a moment nothing else is written; none if it is to be cancelled for a
/// start revision below the first revision (the last compaction's, `compacted`, or -1 before
/// any), which etcd does
/// a while after creating it (its syncer runs every 100 ms).
pub fn expected(history: &[Event], c: &WatchCreateRequest, compacted: Option<i64>) -> Option<usize> {
    // etcd's first revision: the last compaction's, -1 before any.
    if c.start_revision != 0 && c.start_revision < compacted.unwrap_or(-1) {
        return None;
    }
    if c.start_revision <= 0 {
        return Some(0);
    }
    let key: &[u8] = if c.key.is_empty() { b"\0" } else { &c.key };
    let end: &[u8] = &c.range_end;
    let in_range = |k: &[u8]| match end {
        [] => k == key,
        [0] => k >= key,
        _ => k >= key && k < end,
    };
    let filtered = |t: i32| {
        c.filters.iter().any(|f| {
            (*f == FilterType::Noput as i32 && t == EventType::Put as i32)
                || (*f == FilterType::Nodelete as i32 && t == EventType::Delete as i32)
        })
    };
    Some(
        history
            .iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= c.start_revision && in_range(&kv.key)) && !filtered(e.r#type))
            .count(),
    )
}

/// What one side answered, per watch ID.
#[derive(Default)]
struct Log {
    by_watch: BTreeMap<i64, Vec<String>>,
    events: BTreeMap<i64, usize>,
}

impl Log {
    fn record(&mut self, mut r: WatchResponse) {
        if let Some(h) = r.header.as_mut() {
            (h.cluster_id, h.member_id, h.raft_term) = (0, 0, 0);
        }
        let entries = self.by_watch.entry(r.watch_id).or_default();
        if r.events.is_empty() {
            entries.push(format!("{r:?}"));
            return;
        }
        *self.events.entry(r.watch_id).or_default() += r.events.len();
        entries.extend(r.events.drain(..).map(|e| format!("{e:?}")));
        if r.created || r.canceled || r.compact_revision != 0 || r.fragment {
            entries.push(format!("with the events: {r:?}"));
        }
    }
}

/// The next response, or none after a while (the side is stuck or sends nothing more).
async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> Result<Option<WatchResponse>, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(r) => r,
        Err(_) => Ok(None),
    }
}

fn send(tx: &UnboundedSender<WatchRequest>, r: RequestUnion) {
    let _ = tx.send(WatchRequest { request_union: Some(r) });
}

/// Run `op` on one side; `expected[i]` is how many events the `i`th create delivers (none:
/// it is to be cancelled as compacted).
pub async fn run(client: &mut WatchClient<Channel>, op: &WatchOp, expected: &[Option<usize>]) -> Result<String, (tonic::Code, String)> {
    let err = |e: tonic::Status| (e.code(), e.message().to_string());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // etcd (grpc-go) sends the response headers with its first response: the first create
    // goes out before the call waits for them.
    if let Some(c) = op.creates.first() {
        send(&tx, RequestUnion::CreateRequest(c.clone()));
    }
    let mut stream = client.watch(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await.map_err(err)?.into_inner();
    let mut log = Log::default();
    // Watches created and not cancelled, with the events they are to deliver.
    let mut live: BTreeMap<i64, Option<usize>> = BTreeMap::new();
    let mut stuck = false;
    // Every watch created (a watch cancelled for compaction too: etcd answers its cancel).
    let mut ids = Vec::new();
    let waiting = |live: &BTreeMap<i64, Option<usize>>, log: &Log| {
        live.iter().any(|(id, want)| want.is_none_or(|n| log.events.get(id).copied().unwrap_or(0) < n))
    };
    // Each watch is created once the one before delivered all it is to (or was cancelled):
    // etcd cancels a compacted watch a while after creating it, and a repeated watch ID is
    // taken only once the watch that had it is gone.
    for (i, (c, want)) in op.creates.iter().zip(expected).enumerate() {
        if i > 0 {
            send(&tx, RequestUnion::CreateRequest(c.clone()));
        }
        let mut created = false;
        while !stuck && (!created || waiting(&live, &log)) {
            let Some(r) = next(&mut stream).await.map_err(err)? else {
                stuck = true;
                break;
            };
            if r.created && !r.canceled {
                live.insert(r.watch_id, *want);
                ids.push(r.watch_id);
            } else if r.canceled {
                live.remove(&r.watch_id);
            }
            created |= r.created;
            log.record(r);
        }
    }
    let mut answers = 0;
    if op.progress {
        send(&tx, RequestUnion::ProgressRequest(WatchProgressRequest {}));
        answers += 1;
    }
    if op.cancel {
        for id in &ids {
            send(&tx, RequestUnion::CancelRequest(WatchCancelRequest { watch_id: *id }));
            answers += 1;
        }
    }
    if op.cancel_unknown {
        // No answer to it; the progress request after it shows nothing came first.
        send(&tx, RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 99 }));
        send(&tx, RequestUnion::ProgressRequest(WatchProgressRequest {}));
        answers += 1;
    }
    for _ in 0..answers {
        if stuck {
            break;
        }
        match next(&mut stream).await.map_err(err)? {
            Some(r) => log.record(r),
            None => stuck = true,
        }
    }
    let mut out: Vec<String> = log.by_watch.into_iter().map(|(id, entries)| format!("watch {id}: [{}]", entries.join(", "))).collect();
    if stuck {
        out.push("(then nothing more)".into());
    }
    Ok(out.join("; "))
}
