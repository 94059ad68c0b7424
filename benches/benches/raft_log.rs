//! The Raft log on disk: appending entries (a 256-byte Put command each) and making them durable,
//! one fdatasync per entry versus one per group of 64 (group commit, as the syncer does under
//! load). Times are per entry.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keel_proto::etcdserverpb::PutRequest;
use keel_store::apply::Command;
use keel_store::raft::codec::log_id;
use keel_store::raft::log_store::{FileDisk, LogStore};
use keel_store::raft::types::{LogCmd, TypeConfig, typ};
use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use std::time::Duration;

fn entry(index: u64) -> typ::Entry {
    let cmd = Command::Put(PutRequest {
        key: Bytes::from(format!("/registry/pods/default/web-{index}")),
        value: Bytes::from(vec![b'v'; 256]),
        ..Default::default()
    });
    typ::Entry::new(log_id(1, index), EntryPayload::Normal(LogCmd(Bytes::from(cmd.to_log_bytes(None)))))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut g = c.benchmark_group("raft_log");
    g.measurement_time(Duration::from_secs(3));
    for group in [1u64, 64] {
        g.throughput(Throughput::Elements(group));
        g.bench_function(format!("append {group} entr{} + one fdatasync", if group == 1 { "y" } else { "ies" }), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log: LogStore = LogStore::open(std::sync::Arc::new(FileDisk::open(dir.path()).expect("open"))).expect("open");
            let mut next = 1u64;
            b.iter(|| {
                let entries: Vec<typ::Entry> = (next..next + group).map(entry).collect();
                next += group;
                rt.block_on(RaftLogStorage::<TypeConfig>::append(&mut log, entries, IOFlushed::noop())).expect("append");
                log.sync_now().expect("sync");
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
