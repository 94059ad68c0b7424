//! Wire and log encodings: prost encode/decode of a PutRequest (256-byte value) and of a
//! RangeResponse carrying 100 key-values, and a Put command's log record
//! (`Command::to_log_bytes` / `Command::from_log_bytes`).

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use keel_proto::etcdserverpb::{PutRequest, RangeResponse, ResponseHeader};
use keel_proto::mvccpb::KeyValue;
use keel_store::apply::Command;
use prost::Message;
use std::hint::black_box;
use std::time::Duration;

const VALUE_BYTES: usize = 256;
const RANGE_KVS: usize = 100;

fn put_request() -> PutRequest {
    PutRequest {
        key: Bytes::from_static(b"/registry/pods/default/web-0"),
        value: Bytes::from(vec![b'v'; VALUE_BYTES]),
        ..Default::default()
    }
}

fn range_response() -> RangeResponse {
    let kvs = (0..RANGE_KVS)
        .map(|i| KeyValue {
            key: Bytes::from(format!("/registry/pods/default/web-{i:03}")),
            create_revision: 1000 + i as i64,
            mod_revision: 5000 + i as i64,
            version: 4,
            value: Bytes::from(vec![b'v'; VALUE_BYTES]),
            lease: 0,
        })
        .collect();
    RangeResponse {
        header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 6000, raft_term: 3 }),
        kvs,
        more: false,
        count: RANGE_KVS as i64,
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");

    let put = put_request();
    let put_bytes = put.encode_to_vec();
    group.bench_function("put_request_encode", |b| b.iter(|| black_box(&put).encode_to_vec()));
    group.bench_function("put_request_decode", |b| b.iter(|| PutRequest::decode(black_box(&put_bytes[..])).expect("decode")));

    let range = range_response();
    let range_bytes = range.encode_to_vec();
    group.bench_function("range_response_100_kvs_encode", |b| b.iter(|| black_box(&range).encode_to_vec()));
    group.bench_function("range_response_100_kvs_decode", |b| {
        b.iter(|| RangeResponse::decode(black_box(&range_bytes[..])).expect("decode"))
    });

    let cmd = Command::Put(put);
    let log_bytes = cmd.to_log_bytes(None);
    group.bench_function("put_command_to_log_bytes", |b| b.iter(|| black_box(&cmd).to_log_bytes(None)));
    group.bench_function("put_command_from_log_bytes", |b| b.iter(|| Command::from_log_bytes(black_box(&log_bytes)).expect("decode")));

    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = codec }
criterion_main!(benches);
