//! Black-box Lease tests over gRPC against a real keel-store process.

mod common;

use common::Member;
use common::*;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::*;
use keel_proto::mvccpb::event::EventType;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// A short election timeout gives a 1 s minimum TTL (ceil(1.5 × 500 ms)).
const FAST: &[&str] = &["--election-timeout", "500", "--heartbeat-interval", "100"];

async fn put_with(m: &Member, k: &str, lease: i64) {
    m.kv().await.put(PutRequest { key: b(k), value: b("v"), lease, ..Default::default() }).await.unwrap();
}

async fn count(m: &Member, prefix: &str) -> i64 {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let r = RangeRequest { key: b(prefix), range_end: end.into(), count_only: true, ..Default::default() };
    m.kv().await.range(r).await.unwrap().into_inner().count
}

#[tokio::test]
async fn grant_time_to_live_list_and_revoke_with_keys() {
    let m = Member::start(&[]);
    let mut lease = m.lease().await;
    let g = lease.lease_grant(LeaseGrantRequest { ttl: 1, id: 0 }).await.unwrap().into_inner();
    assert_eq!(g.ttl, 2, "a TTL below the minimum is raised to ceil(1.5 × election timeout)");
    let chosen = lease.lease_grant(LeaseGrantRequest { ttl: 100, id: 0x1234 }).await.unwrap().into_inner();
    assert_eq!(chosen.id, 0x1234);
    let e = lease.lease_grant(LeaseGrantRequest { ttl: 100, id: 0x1234 }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::FailedPrecondition, "etcdserver: lease already exists"));
    let e = lease.lease_grant(LeaseGrantRequest { ttl: 9_000_000_001, id: 0 }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::OutOfRange, "etcdserver: too large lease TTL"));
    put_with(&m, "l/a", 0x1234).await;
    put_with(&m, "l/b", 0x1234).await;
    let ttl = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x1234, keys: true }).await.unwrap().into_inner();
    assert_eq!(ttl.granted_ttl, 100);
    assert!(ttl.ttl > 90 && ttl.ttl <= 100, "remaining {}", ttl.ttl);
    assert_eq!(ttl.keys, vec![b("l/a"), b("l/b")]);
    let mut ids: Vec<i64> = lease.lease_leases(LeaseLeasesRequest {}).await.unwrap().into_inner().leases.iter().map(|l| l.id).collect();
    ids.sort();
    let mut want = vec![g.id, 0x1234];
    want.sort();
    assert_eq!(ids, want);

    // Revoking deletes the keys, one DELETE event each, in one revision.
    let (tx, rx) = mpsc::channel(8);
    let mut events = m.watch().await.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let create = WatchCreateRequest { key: b("l/"), range_end: b("l0"), ..Default::default() };
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    assert!(events.message().await.unwrap().unwrap().created);
    lease.lease_revoke(LeaseRevokeRequest { id: 0x1234 }).await.unwrap();
    let r = events.message().await.unwrap().unwrap();
    assert_eq!(r.events.len(), 2);
    assert!(r.events.iter().all(|e| e.r#type == EventType::Delete as i32));
    assert_eq!(count(&m, "l/").await, 0);
    let gone = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x1234, keys: false }).await.unwrap().into_inner();
    assert_eq!(gone.ttl, -1, "an unknown lease answers TTL -1");
    let e = lease.lease_revoke(LeaseRevokeRequest { id: 0x1234 }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "etcdserver: requested lease not found"));
}

#[tokio::test]
async fn keep_alive_extends_and_expiry_deletes_keys() {
    let m = Member::start(FAST);
    let mut lease = m.lease().await;
    let kept = lease.lease_grant(LeaseGrantRequest { ttl: 1, id: 0 }).await.unwrap().into_inner().id;
    let left = lease.lease_grant(LeaseGrantRequest { ttl: 1, id: 0 }).await.unwrap().into_inner().id;
    put_with(&m, "kept", kept).await;
    put_with(&m, "left", left).await;
    let (tx, rx) = mpsc::channel(8);
    let mut replies = lease.lease_keep_alive(ReceiverStream::new(rx)).await.unwrap().into_inner();
    // Renew `kept` every 300 ms for 3 s; `left` expires meanwhile.
    for _ in 0..10 {
        tx.send(LeaseKeepAliveRequest { id: kept }).await.unwrap();
        let r = replies.message().await.unwrap().unwrap();
        assert_eq!((r.id, r.ttl), (kept, 1));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(count(&m, "kept").await, 1);
    assert_eq!(count(&m, "left").await, 0, "an expired lease's key is deleted");
    tx.send(LeaseKeepAliveRequest { id: left }).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().ttl, 0, "keep-alive of a gone lease answers TTL 0");
}

#[tokio::test]
async fn leases_and_their_keys_survive_kill_9() {
    let mut m = Member::start(FAST);
    let id = m.lease().await.lease_grant(LeaseGrantRequest { ttl: 30, id: 0 }).await.unwrap().into_inner().id;
    put_with(&m, "held", id).await;
    m.kill9();
    m.restart();
    let mut lease = m.lease().await;
    let ttl = lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await.unwrap().into_inner();
    assert_eq!((ttl.granted_ttl, ttl.keys.clone()), (30, vec![b("held")]));
    lease.lease_revoke(LeaseRevokeRequest { id }).await.unwrap();
    assert_eq!(count(&m, "held").await, 0, "the restored lease still owns its key");
}
