//! The permission check on the request path: resolve the caller's token, then check a point
//! read and a range read against the user's merged intervals; auth off as the baseline.
//!
//! The user's role holds N prefix permissions (1, 100, 10,000); a check is a hash lookup of the
//! token plus one binary search per permission kind, so it should barely grow with N.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use keel_proto::authpb::Permission;
use keel_proto::etcdserverpb as pb;
use keel_proto::keelpeerpb::auth_command::Change;
use keel_proto::keelpeerpb::{AuthCommand, SimpleToken};
use keel_store::auth::{AuthStore, Caller};
use keel_store::storage::WriteBatch;
use keel_store::storage::memory::MemoryBackend;
use std::hint::black_box;
use std::time::Duration;
use tokio::time::Instant;

fn apply(store: &mut AuthStore, change: Change) {
    store.apply(AuthCommand { change: Some(change) }, Instant::now(), &mut WriteBatch::default()).expect("auth change");
}

/// An auth store with user `u` holding `perms` prefix permissions `/p/<i>/`, and token `t.1`;
/// auth on unless `off`.
fn store(perms: usize, off: bool) -> AuthStore {
    let mut s = AuthStore::open(&MemoryBackend::new(), Duration::from_secs(300)).expect("open");
    for name in ["root", "u"] {
        apply(&mut s, Change::UserAdd(pb::AuthUserAddRequest { name: name.into(), hashed_password: "x".into(), ..Default::default() }));
    }
    apply(&mut s, Change::UserGrantRole(pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }));
    apply(&mut s, Change::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() }));
    for i in 0..perms {
        let key = format!("/p/{i:05}/");
        let end = format!("/p/{i:05}0");
        let perm = Permission { perm_type: 2, key: Bytes::from(key), range_end: Bytes::from(end) };
        apply(&mut s, Change::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest { name: "r".into(), perm: Some(perm) }));
    }
    apply(&mut s, Change::UserGrantRole(pb::AuthUserGrantRoleRequest { user: "u".into(), role: "r".into() }));
    if !off {
        apply(&mut s, Change::Enable(pb::AuthEnableRequest {}));
        apply(&mut s, Change::Authenticate(SimpleToken { name: "u".into(), token: "t.1".into() }));
    }
    s
}

fn bench(c: &mut Criterion) {
    let caller = Caller { token: Some("t.1".into()), ..Default::default() };
    let mut g = c.benchmark_group("auth_check");
    for (label, perms, off) in [("off", 1, true), ("on", 1, false), ("on", 100, false), ("on", 10_000, false)] {
        let s = store(perms, off);
        let mid = perms / 2;
        let point = pb::RangeRequest { key: Bytes::from(format!("/p/{mid:05}/key")), ..Default::default() };
        let range = pb::RangeRequest {
            key: Bytes::from(format!("/p/{mid:05}/a")),
            range_end: Bytes::from(format!("/p/{mid:05}/z")),
            ..Default::default()
        };
        let put = pb::PutRequest { key: Bytes::from(format!("/p/{mid:05}/key")), ..Default::default() };
        let now = Instant::now();
        g.bench_with_input(BenchmarkId::new(format!("range_point_{label}"), perms), &point, |b, r| {
            b.iter(|| s.authorize(black_box(&caller), now).expect("token").check_range(black_box(r)).expect("allowed"))
        });
        g.bench_with_input(BenchmarkId::new(format!("range_span_{label}"), perms), &range, |b, r| {
            b.iter(|| s.authorize(black_box(&caller), now).expect("token").check_range(black_box(r)).expect("allowed"))
        });
        g.bench_with_input(BenchmarkId::new(format!("put_{label}"), perms), &put, |b, r| {
            b.iter(|| s.authorize(black_box(&caller), now).expect("token").check_put(black_box(r)).expect("allowed"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
