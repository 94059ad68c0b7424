//! The state machine on each backend: applying a Put and a Kubernetes-style Txn, and serving a
//! Range of one key and of a 100-key prefix.
//!
//! Every benchmark starts from its own store preloaded with [`NAMESPACES`] × [`PODS`] keys shaped
//! like kube-apiserver's (`/registry/pods/<ns>/<pod>`) holding 256-byte values. Writes overwrite
//! those keys in turn, as updates of existing objects do, so each one also reads the previous
//! value. Nothing is synced: this measures apply (index, record encoding, backend write), not the
//! fsync of group commit.

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};
use keel_store::apply::{Command, Output, StateMachine};
use keel_store::storage::Backend;
use keel_store::storage::memory::MemoryBackend;
use keel_store::storage::sled::SledBackend;
use keel_store::types::{LogIndex, Revision};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::time::Instant;

const NAMESPACES: usize = 100;
/// Keys per namespace: the size of the prefix Range.
const PODS: usize = 100;
const VALUE_BYTES: usize = 256;
/// As `keel-store`'s main.rs opens sled.
const SLED_CACHE_BYTES: u64 = 64 << 20;
/// The state machine wants the minimum lease TTL; no lease is used here.
const MIN_TTL: i64 = 2;

fn key(ns: usize, pod: usize) -> Bytes {
    Bytes::from(format!("/registry/pods/ns-{ns:03}/pod-{pod:03}"))
}

fn ns_prefix(ns: usize) -> (Bytes, Bytes) {
    let prefix = format!("/registry/pods/ns-{ns:03}/");
    let end = keel_etcd::prefix_end(prefix.as_bytes());
    (Bytes::from(prefix), Bytes::from(end))
}

/// A state machine on one backend, and the folder that backend lives in (dropped after it).
struct Fixture {
    sm: StateMachine,
    keys: Vec<Bytes>,
    value: Bytes,
    next_index: u64,
    now: Instant,
    _dir: Option<TempDir>,
}

impl Fixture {
    fn memory() -> Fixture {
        Fixture::open(Arc::new(MemoryBackend::new()), None)
    }

    fn sled() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = SledBackend::open(dir.path(), SLED_CACHE_BYTES).expect("open sled");
        Fixture::open(Arc::new(backend), Some(dir))
    }

    /// As the store's own tests build one: the key index from the backend, then the leases.
    fn open(backend: Arc<dyn Backend>, dir: Option<TempDir>) -> Fixture {
        let now = Instant::now();
        let sm = StateMachine::open(backend, MIN_TTL, now).expect("open the state machine");
        let keys = (0..NAMESPACES).flat_map(|ns| (0..PODS).map(move |pod| key(ns, pod))).collect();
        let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
        let mut f = Fixture { sm, keys, value, next_index: 1, now, _dir: dir };
        for i in 0..f.keys.len() {
            f.put(i);
        }
        f
    }

    fn apply(&mut self, cmd: Command) -> (Output, i64) {
        let applied = self.sm.apply(LogIndex(self.next_index), cmd, None, self.now).expect("no fatal failure").expect("apply");
        self.sm.write_group().expect("write");
        self.next_index += 1;
        (applied.output, applied.revision.0)
    }

    fn put(&mut self, i: usize) -> i64 {
        let req = PutRequest { key: self.keys[i].clone(), value: self.value.clone(), ..Default::default() };
        self.apply(Command::Put(req)).1
    }

    fn latest(&self) -> Revision {
        self.sm.mvcc.current()
    }
}

fn bench_backend(group: &mut BenchmarkGroup<'_, WallTime>, open: fn() -> Fixture) {
    group.bench_function("apply_put_256B", |b| {
        let mut f = open();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % f.keys.len();
            black_box(f.put(i))
        });
    });

    group.bench_function("range_single_key", |b| {
        let f = open();
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % f.keys.len();
            let req = RangeRequest { key: f.keys[i].clone(), ..Default::default() };
            let res = f.sm.mvcc.range(&req, f.latest()).expect("range");
            black_box(res.kvs.len())
        });
    });

    group.bench_function("range_prefix_100_keys", |b| {
        let f = open();
        let prefixes: Vec<_> = (0..NAMESPACES).map(ns_prefix).collect();
        let mut ns = 0;
        b.iter(|| {
            ns = (ns + 37) % NAMESPACES;
            let (key, range_end) = prefixes[ns].clone();
            let req = RangeRequest { key, range_end, ..Default::default() };
            let res = f.sm.mvcc.range(&req, f.latest()).expect("range");
            debug_assert_eq!(res.kvs.len(), PODS);
            black_box(res.kvs.len())
        });
    });

    // kube-apiserver's GuaranteedUpdate: put only if nobody wrote since we read, else read again.
    group.bench_function("apply_txn_cas_put", |b| {
        let mut f = open();
        let mut mod_revs: Vec<i64> = f.keys.iter().map(|k| f.sm.mvcc.latest_entry(k).expect("preloaded").rev.main).collect();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % f.keys.len();
            let key = f.keys[i].clone();
            let txn = keel_etcd::txn::put_if(&key, f.value.clone(), mod_revs[i], 0);
            let (out, rev) = f.apply(Command::Txn(txn));
            assert!(matches!(out, Output::Txn(ref t) if t.succeeded), "the compare must hold: nothing else writes");
            mod_revs[i] = rev;
            black_box(out)
        });
    });
}

fn mvcc(c: &mut Criterion) {
    let memory: fn() -> Fixture = Fixture::memory;
    let sled: fn() -> Fixture = Fixture::sled;
    for (name, open) in [("memory", memory), ("sled", sled)] {
        let mut group = c.benchmark_group(format!("mvcc/{name}"));
        bench_backend(&mut group, open);
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = mvcc }
criterion_main!(benches);
