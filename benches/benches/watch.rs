//! `WatchHub::notify` handing one Put event to 10k synced watchers that all match it.
//!
//! Two layouts of the same 10k watchers: one watcher per stream (many clients), and 100 streams
//! of 100 watchers (kube-apiserver multiplexes its watch cache's watchers onto few streams).
//! Every outbox is drained before each measured call, outside the measurement, so the watchers
//! stay synced and each call does the same work: select, clone, queue, wake.

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use keel_proto::etcdserverpb::WatchCreateRequest;
use keel_proto::mvccpb::{Event, KeyValue, event::EventType};
use keel_store::types::Revision;
use keel_store::watch::WatchHub;
use keel_store::watch::hub::StreamId;
use std::hint::black_box;
use std::time::Duration;

const WATCHERS: usize = 10_000;
const VALUE_BYTES: usize = 256;
const PREFIX: &[u8] = b"/registry/pods/";

/// A hub at revision 1 with `streams` streams of `per_stream` prefix watchers each.
fn hub(streams: usize, per_stream: usize) -> (WatchHub, Vec<StreamId>) {
    let hub = WatchHub::new(Revision(1));
    let req =
        WatchCreateRequest { key: Bytes::from_static(PREFIX), range_end: Bytes::from_static(b"/registry/pods0"), ..Default::default() };
    let ids: Vec<StreamId> = (0..streams)
        .map(|_| {
            let s = hub.open_stream();
            for _ in 0..per_stream {
                hub.create(s.id, &req);
            }
            s.id
        })
        .collect();
    drain_all(&hub, &ids);
    assert_eq!(hub.watcher_count(), streams * per_stream);
    (hub, ids)
}

fn drain_all(hub: &WatchHub, streams: &[StreamId]) {
    for &s in streams {
        black_box(hub.drain(s).expect("stream open"));
    }
}

/// An update of an existing pod at `rev`, with its previous value as the writer produces it.
fn event(rev: i64) -> Event {
    let kv = KeyValue {
        key: Bytes::from_static(b"/registry/pods/default/web-0"),
        create_revision: 2,
        mod_revision: rev,
        version: rev - 1,
        value: Bytes::from(vec![b'v'; VALUE_BYTES]),
        lease: 0,
    };
    let prev = KeyValue { mod_revision: rev - 1, version: rev - 2, ..kv.clone() };
    Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: Some(prev) }
}

fn watch(c: &mut Criterion) {
    let mut group = c.benchmark_group("watch/notify_1_event_to_10k_watchers");
    for (label, streams) in [("10k_streams_x1", WATCHERS), ("100_streams_x100", 100)] {
        let (hub, ids) = hub(streams, WATCHERS / streams);
        let mut rev = 2;
        group.bench_function(label, |b| {
            b.iter_batched(
                || {
                    drain_all(&hub, &ids);
                    rev += 1;
                    (vec![event(rev)], rev)
                },
                |(events, rev)| hub.notify(events, Revision(rev), |_| {}),
                BatchSize::PerIteration,
            );
        });
        drain_all(&hub, &ids);
        assert_eq!(hub.lagging().0.len(), 0, "every watcher stayed synced");
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = watch }
criterion_main!(benches);
