//! Maintenance over gRPC: the space quota and its alarm, automatic compaction, Status.

mod common;

use common::Member;
use common::*;
use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::*;
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn exceeding_the_quota_raises_nospace_and_refuses_growing_writes() {
    let m = Member::start(&["--quota-backend-bytes", "200000"]);
    let mut kv = m.kv().await;
    let value = "x".repeat(50_000);
    let mut refused = None;
    for i in 0..200 {
        match kv.put(PutRequest { key: b(&format!("k{i}")), value: b(&value), ..Default::default() }).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the quota must stop writes");
    assert_eq!((e.code(), e.message()), (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"));
    let mut mt = m.maintenance().await;
    let alarms = mt.alarm(AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: 0 }).await.unwrap().into_inner().alarms;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].alarm, AlarmType::Nospace as i32);
    let status = mt.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(status.errors.iter().any(|e| e.contains("NOSPACE")), "{:?}", status.errors);
    // Reads, deletes and compaction still work, so an operator can recover.
    assert_eq!(kv.range(RangeRequest { key: b("k0"), ..Default::default() }).await.unwrap().into_inner().count, 1);
    // A txn that only deletes is allowed under the alarm (how kube-apiserver deletes).
    let del = keel_proto::etcdserverpb::request_op::Request::RequestDeleteRange(DeleteRangeRequest { key: b("k1"), ..Default::default() });
    kv.txn(TxnRequest { compare: vec![], success: vec![RequestOp { request: Some(del) }], failure: vec![] }).await.unwrap();
    kv.delete_range(DeleteRangeRequest { key: b("k"), range_end: b("l"), ..Default::default() }).await.unwrap();
    let (code, body) = m.http("GET", "/health", "");
    assert_eq!((code, body.contains("NOSPACE")), (503, true));
    // Like etcd (and `etcdctl alarm disarm`), an alarm is disarmed by the member it names.
    let member_id = alarms[0].member_id;
    assert_eq!(member_id, status.header.unwrap().member_id);
    mt.alarm(AlarmRequest { action: AlarmAction::Deactivate as i32, member_id, alarm: AlarmType::Nospace as i32 }).await.unwrap();
    let alarms = mt.alarm(AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: 0 }).await.unwrap().into_inner().alarms;
    assert!(alarms.is_empty());
}

#[tokio::test]
async fn periodic_auto_compaction_compacts_old_history() {
    let m = Member::start(&["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"]);
    let mut kv = m.kv().await;
    for i in 0..5 {
        kv.put(PutRequest { key: b("k"), value: b(&i.to_string()), ..Default::default() }).await.unwrap();
    }
    let mut mt = m.maintenance().await;
    for _ in 0..100 {
        let h = mt.hash_kv(HashKvRequest { revision: 0 }).await.unwrap().into_inner();
        if h.compact_revision >= 6 {
            let e = kv.range(RangeRequest { key: b("k"), revision: 2, ..Default::default() }).await.unwrap_err();
            assert_eq!(e.message(), "etcdserver: mvcc: required revision has been compacted");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("history older than the retention was never compacted");
}

#[tokio::test]
async fn status_reports_this_member_and_an_etcd_35_version() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    kv.put(PutRequest { key: b("a"), value: b("1"), ..Default::default() }).await.unwrap();
    let s = m.maintenance().await.status(StatusRequest {}).await.unwrap().into_inner();
    let h = s.header.unwrap();
    assert_eq!(s.leader, h.member_id);
    assert!(s.version.starts_with("3.5."));
    assert!(s.raft_index >= 1 && s.raft_applied_index == s.raft_index);
    assert_eq!(h.revision, 2);
    assert!(s.db_size > 0);
}
