//! v3lock and v3election over gRPC against a real keel-store process.

mod common;

use common::Member;
use common::*;
use keel_proto::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
use keel_proto::v3electionpb::election_client::ElectionClient;
use keel_proto::v3electionpb::*;
use keel_proto::v3lockpb::lock_client::LockClient;
use keel_proto::v3lockpb::{LockRequest, UnlockRequest};
use std::time::Duration;
use tonic::Code;

async fn lease(m: &Member) -> i64 {
    m.lease().await.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id
}

#[tokio::test]
async fn a_lock_is_held_by_one_client_at_a_time() {
    let m = Member::start(&[]);
    let (l1, l2) = (lease(&m).await, lease(&m).await);
    let mut c1 = LockClient::new(m.channel().await);
    let mut c2 = LockClient::new(m.channel().await);
    let k1 = c1.lock(LockRequest { name: b("mylock"), lease: l1 }).await.unwrap().into_inner().key;
    assert!(k1.starts_with(b"mylock/"), "{k1:?}");
    let waiter = tokio::spawn(async move { c2.lock(LockRequest { name: b("mylock"), lease: l2 }).await.map(|r| r.into_inner().key) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the second locker must wait while the first holds the lock");
    c1.unlock(UnlockRequest { key: k1 }).await.unwrap();
    let k2 = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("acquired after unlock").unwrap().unwrap();
    assert!(k2.starts_with(b"mylock/"));
    // Revoking the holder's lease releases the lock too.
    let l3 = lease(&m).await;
    let mut c3 = LockClient::new(m.channel().await);
    let third = tokio::spawn(async move { c3.lock(LockRequest { name: b("mylock"), lease: l3 }).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished());
    m.lease().await.lease_revoke(LeaseRevokeRequest { id: l2 }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), third).await.expect("acquired after revoke").unwrap().unwrap();
}

#[tokio::test]
async fn a_waiter_whose_lease_ends_does_not_get_the_lock() {
    let m = Member::start(&[]);
    let (l1, l2) = (lease(&m).await, lease(&m).await);
    let mut c1 = LockClient::new(m.channel().await);
    let k1 = c1.lock(LockRequest { name: b("L"), lease: l1 }).await.unwrap().into_inner().key;
    let mut c2 = LockClient::new(m.channel().await);
    let waiter = tokio::spawn(async move { c2.lock(LockRequest { name: b("L"), lease: l2 }).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.lease().await.lease_revoke(LeaseRevokeRequest { id: l2 }).await.unwrap();
    c1.unlock(UnlockRequest { key: k1 }).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert!(r.is_err(), "a waiter without a live lease must not be told it holds the lock");
    let e = LockClient::new(m.channel().await).lock(LockRequest { name: b("L"), lease: 777 }).await.unwrap_err();
    assert_eq!(e.message(), "etcdserver: requested lease not found");
}

#[tokio::test]
async fn election_campaign_proclaim_observe_resign() {
    let m = Member::start(&[]);
    let (la, lb) = (lease(&m).await, lease(&m).await);
    let mut a = ElectionClient::new(m.channel().await);
    let e = a.leader(LeaderRequest { name: b("e") }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::Unknown, "election: no leader"));
    let leader_a = a.campaign(CampaignRequest { name: b("e"), lease: la, value: b("a1") }).await.unwrap().into_inner().leader.unwrap();
    let mut observer = a.observe(LeaderRequest { name: b("e") }).await.unwrap().into_inner();
    let first = observer.message().await.unwrap().unwrap().kv.unwrap();
    assert_eq!(&first.value[..], b"a1");
    let mut b_client = ElectionClient::new(m.channel().await);
    let b_campaign = tokio::spawn(async move { b_client.campaign(CampaignRequest { name: b("e"), lease: lb, value: b("b1") }).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_campaign.is_finished(), "b waits while a leads");
    a.proclaim(ProclaimRequest { leader: Some(leader_a.clone()), value: b("a2") }).await.unwrap();
    assert_eq!(&observer.message().await.unwrap().unwrap().kv.unwrap().value[..], b"a2");
    assert_eq!(&a.leader(LeaderRequest { name: b("e") }).await.unwrap().into_inner().kv.unwrap().value[..], b"a2");
    a.resign(ResignRequest { leader: Some(leader_a.clone()) }).await.unwrap();
    let leader_b = tokio::time::timeout(Duration::from_secs(10), b_campaign).await.unwrap().unwrap().unwrap().into_inner().leader.unwrap();
    assert!(leader_b.rev > leader_a.rev, "the fencing revision grows");
    assert_eq!(&observer.message().await.unwrap().unwrap().kv.unwrap().value[..], b"b1");
    let e = a.proclaim(ProclaimRequest { leader: Some(leader_a), value: b("stale") }).await.unwrap_err();
    assert_eq!(e.message(), "election: not leader");
}
