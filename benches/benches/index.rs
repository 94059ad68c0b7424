//! The in-memory key index alone: `KeyIndex::get` of one key and `KeyIndex::range` over a
//! 100-key prefix, at 100k and 1M keys.
//!
//! Keys are shaped like kube-apiserver's, `/registry/pods/<ns>/<pod>`, 100 pods per namespace,
//! one write each. The index is built once per size, outside the measured loop; lookups visit
//! keys in a fixed pseudo-random order so the measurement is not one hot path down the tree.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use keel_store::mvcc::{Entry, KeyIndex, KeyRange, Rev};
use std::hint::black_box;
use std::time::Duration;

const PODS_PER_NS: usize = 100;
/// Distinct lookups per benchmark, visited in turn (a power of two).
const LOOKUPS: usize = 1 << 16;

fn key(ns: usize, pod: usize) -> Bytes {
    Bytes::from(format!("/registry/pods/ns-{ns:05}/pod-{pod:03}"))
}

fn build(keys: usize) -> KeyIndex {
    let mut index = KeyIndex::default();
    for i in 0..keys {
        let rev = 2 + i as i64;
        let entry = Entry { rev: Rev { main: rev, sub: 0 }, create: rev, version: 1, lease: 0, tombstone: false };
        index.push(key(i / PODS_PER_NS, i % PODS_PER_NS), entry);
    }
    index
}

/// A fixed sequence of numbers below `n` (splitmix64), so every run looks up the same keys.
fn spread(n: usize) -> impl Iterator<Item = usize> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    })
}

fn index(c: &mut Criterion) {
    for (label, keys) in [("100k", 100_000), ("1M", 1_000_000)] {
        let index = build(keys);
        let at = 1 + keys as i64;
        let namespaces = keys / PODS_PER_NS;
        let gets: Vec<Bytes> = spread(keys).take(LOOKUPS).map(|i| key(i / PODS_PER_NS, i % PODS_PER_NS)).collect();
        let ranges: Vec<KeyRange> = spread(namespaces)
            .take(LOOKUPS)
            .map(|ns| {
                let start = format!("/registry/pods/ns-{ns:05}/");
                // The prefix's range end: the last byte plus one ('/' + 1 = '0').
                let end = format!("/registry/pods/ns-{ns:05}0");
                KeyRange::Span(Bytes::from(start), Bytes::from(end))
            })
            .collect();

        let mut group = c.benchmark_group(format!("index/{label}_keys"));
        group.bench_function("get", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (LOOKUPS - 1);
                black_box(index.get(&gets[i], at)).is_some()
            });
        });
        group.bench_function("range_prefix_100_keys", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (LOOKUPS - 1);
                let mut n = 0;
                for found in index.range(&ranges[i], at) {
                    black_box(found);
                    n += 1;
                }
                debug_assert_eq!(n, PODS_PER_NS);
                n
            });
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = index }
criterion_main!(benches);
