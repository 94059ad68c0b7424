//! Black-box KV tests over gRPC against a real keel-store process.

mod common;

use common::Member;
use common::*;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::response_op::Response as OpResp;
use keel_proto::etcdserverpb::*;
use tonic::Code;

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest { key: b(k), value: b(v), ..Default::default() }
}

fn get(k: &str) -> RangeRequest {
    RangeRequest { key: b(k), ..Default::default() }
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect()
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare { key: b(key), target: target as i32, result: result as i32, target_union: Some(u), range_end: Default::default() }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(put(k, v))) }
}

fn op_get(k: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(get(k))) }
}

#[tokio::test]
async fn revisions_versions_and_history_follow_etcd() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    let r = kv.range(get("nothing")).await.unwrap().into_inner();
    assert_eq!(r.header.unwrap().revision, 1, "an empty store is at revision 1");
    for (i, v) in ["a", "b", "c"].iter().enumerate() {
        let r = kv.put(put("foo", v)).await.unwrap().into_inner();
        assert_eq!(r.header.unwrap().revision, 2 + i as i64);
    }
    let now = kv.range(get("foo")).await.unwrap().into_inner();
    let foo = &now.kvs[0];
    assert_eq!((foo.create_revision, foo.mod_revision, foo.version, &foo.value[..]), (2, 4, 3, &b"c"[..]));
    let then = kv.range(RangeRequest { revision: 3, ..get("foo") }).await.unwrap().into_inner();
    assert_eq!(&then.kvs[0].value[..], b"b");
    assert_eq!(then.header.unwrap().revision, 4, "the header carries the current revision");
    let d = kv.delete_range(DeleteRangeRequest { key: b("foo"), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!((d.deleted, d.header.unwrap().revision), (1, 5));
    let none = kv.delete_range(DeleteRangeRequest { key: b("foo"), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!((none.deleted, none.header.unwrap().revision), (0, 5), "deleting nothing takes no revision");
    let again = kv.put(put("foo", "new")).await.unwrap().into_inner();
    assert_eq!(again.header.unwrap().revision, 6);
    let foo = kv.range(get("foo")).await.unwrap().into_inner().kvs.remove(0);
    assert_eq!((foo.create_revision, foo.version), (6, 1), "a new generation after a delete");
    let err = kv.range(RangeRequest { revision: 7, ..get("foo") }).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"));
}

#[tokio::test]
async fn ranges_prefixes_limits_sorting_and_filters() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    for (k, v) in [("a", "3"), ("b1", "2"), ("b2", "1"), ("b3", "4"), ("c", "0")] {
        kv.put(put(k, v)).await.unwrap();
    }
    kv.put(put("b2", "9")).await.unwrap(); // rev 7, version 2
    let all = |r: RangeRequest| {
        let mut kv = kv.clone();
        async move { kv.range(r).await.unwrap().into_inner() }
    };
    let prefix = RangeRequest { key: b("b"), range_end: b("c"), ..Default::default() };
    assert_eq!(keys(&all(prefix.clone()).await), ["b1", "b2", "b3"]);
    let from = RangeRequest { key: b("b2"), range_end: b("\0"), ..Default::default() };
    assert_eq!(keys(&all(from).await), ["b2", "b3", "c"]);
    let every = RangeRequest { key: b("\0"), range_end: b("\0"), ..Default::default() };
    assert_eq!(all(every.clone()).await.count, 5);
    let limited = all(RangeRequest { limit: 2, ..every.clone() }).await;
    assert_eq!((keys(&limited), limited.more, limited.count), (vec!["a".to_string(), "b1".to_string()], true, 5));
    let exact = all(RangeRequest { limit: 5, ..every.clone() }).await;
    assert!(!exact.more);
    let by_value =
        all(RangeRequest { sort_target: SortTarget::Value as i32, sort_order: SortOrder::Descend as i32, ..every.clone() }).await;
    assert_eq!(keys(&by_value), ["b2", "b3", "a", "b1", "c"]);
    let by_mod = all(RangeRequest { sort_target: SortTarget::Mod as i32, limit: 2, ..every.clone() }).await;
    assert_eq!(keys(&by_mod), ["a", "b1"], "non-key targets sort ascending by default");
    let by_version =
        all(RangeRequest { sort_target: SortTarget::Version as i32, sort_order: SortOrder::Descend as i32, limit: 1, ..every.clone() })
            .await;
    assert_eq!((keys(&by_version), by_version.more), (vec!["b2".to_string()], true));
    let keys_only = all(RangeRequest { keys_only: true, ..prefix.clone() }).await;
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty() && kv.mod_revision > 0));
    let count_only = all(RangeRequest { count_only: true, ..prefix.clone() }).await;
    assert_eq!((count_only.kvs.len(), count_only.count), (0, 3));
    let filtered = all(RangeRequest { min_mod_revision: 4, max_create_revision: 5, ..every.clone() }).await;
    assert_eq!(keys(&filtered), ["b2", "b3"]);
    assert_eq!(filtered.count, 5, "count is taken before filters");
    let serializable = all(RangeRequest { serializable: true, ..get("a") }).await;
    assert_eq!(&serializable.kvs[0].value[..], b"3");
    let err = kv.range(get("")).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
}

#[tokio::test]
async fn put_options_and_their_errors() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    let mut lease = m.lease().await;
    let l = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
    kv.put(PutRequest { lease: l, ..put("k", "v1") }).await.unwrap();
    let r = kv.put(PutRequest { prev_kv: true, ..put("k", "v2") }).await.unwrap().into_inner();
    assert_eq!(&r.prev_kv.unwrap().value[..], b"v1");
    let got = kv.range(get("k")).await.unwrap().into_inner().kvs.remove(0);
    assert_eq!(got.lease, 0, "a put without ignore_lease detaches the lease");
    kv.put(PutRequest { lease: l, ..put("k", "v3") }).await.unwrap();
    kv.put(PutRequest { ignore_lease: true, ..put("k", "v4") }).await.unwrap();
    kv.put(PutRequest { ignore_value: true, ignore_lease: true, ..put("k", "") }).await.unwrap();
    let got = kv.range(get("k")).await.unwrap().into_inner().kvs.remove(0);
    assert_eq!((&got.value[..], got.lease, got.version), (&b"v4"[..], l, 5));
    let cases: Vec<(PutRequest, Code, &str)> = vec![
        (put("", "x"), Code::InvalidArgument, "etcdserver: key is not provided"),
        (PutRequest { ignore_value: true, ..put("k", "x") }, Code::InvalidArgument, "etcdserver: value is provided"),
        (PutRequest { ignore_lease: true, lease: l, ..put("k", "x") }, Code::InvalidArgument, "etcdserver: lease is provided"),
        (PutRequest { ignore_value: true, ..put("missing", "") }, Code::InvalidArgument, "etcdserver: key not found"),
        (PutRequest { lease: 12345, ..put("k", "x") }, Code::NotFound, "etcdserver: requested lease not found"),
    ];
    let before = kv.range(get("k")).await.unwrap().into_inner().header.unwrap().revision;
    for (req, code, msg) in cases {
        let e = kv.put(req).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (code, msg));
    }
    let after = kv.range(get("k")).await.unwrap().into_inner().header.unwrap().revision;
    assert_eq!(before, after, "a refused put changes nothing");
}

#[tokio::test]
async fn delete_ranges_with_prev_kv() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    for k in ["a", "b", "b/1", "b/2", "c"] {
        kv.put(put(k, k)).await.unwrap();
    }
    let d = kv.delete_range(DeleteRangeRequest { key: b("b/"), range_end: b("b0"), prev_kv: true }).await.unwrap().into_inner();
    assert_eq!(d.deleted, 2);
    assert_eq!(d.prev_kvs.iter().map(|kv| String::from_utf8(kv.value.to_vec()).unwrap()).collect::<Vec<_>>(), ["b/1", "b/2"]);
    let rev = d.header.unwrap().revision;
    let d = kv.delete_range(DeleteRangeRequest { key: b("b"), range_end: b("\0"), prev_kv: false }).await.unwrap().into_inner();
    assert_eq!((d.deleted, d.prev_kvs.len(), d.header.unwrap().revision), (2, 0, rev + 1), "one revision for the whole range");
    let left = kv.range(RangeRequest { key: b("\0"), range_end: b("\0"), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(keys(&left), ["a"]);
}

#[tokio::test]
async fn txn_compares_branches_and_one_revision() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    kv.put(put("x", "1")).await.unwrap(); // rev 2
    use CompareResult::*;
    use CompareTarget::*;
    let table = vec![
        (cmp("x", Value, Equal, TargetUnion::Value(b("1"))), true),
        (cmp("x", Value, Greater, TargetUnion::Value(b("0"))), true),
        (cmp("x", Version, Equal, TargetUnion::Version(1)), true),
        (cmp("x", Create, Less, TargetUnion::CreateRevision(2)), false),
        (cmp("x", Mod, NotEqual, TargetUnion::ModRevision(2)), false),
        (cmp("x", Lease, Equal, TargetUnion::Lease(0)), true),
        (cmp("missing", Mod, Equal, TargetUnion::ModRevision(0)), true),
        (cmp("missing", Value, Equal, TargetUnion::Value(b(""))), false),
    ];
    for (i, (c, want)) in table.into_iter().enumerate() {
        let r = kv.txn(TxnRequest { compare: vec![c], success: vec![], failure: vec![] }).await.unwrap().into_inner();
        assert_eq!(r.succeeded, want, "compare {i}");
    }
    // Kubernetes' optimistic update: compare mod_revision, put on success, read on failure.
    let update = |rev: i64, v: &str| TxnRequest {
        compare: vec![cmp("x", Mod, Equal, TargetUnion::ModRevision(rev))],
        success: vec![op_put("x", v), op_put("y", v), op_get("x")],
        failure: vec![op_get("x")],
    };
    let ok = kv.txn(update(2, "2")).await.unwrap().into_inner();
    assert!(ok.succeeded);
    assert_eq!(ok.header.unwrap().revision, 3, "one revision for the whole txn");
    let Some(OpResp::ResponseRange(seen)) = &ok.responses[2].response else { panic!("expected a range response") };
    assert_eq!(&seen.kvs[0].value[..], b"2", "a read after a write in the same txn sees it");
    let y = kv.range(get("y")).await.unwrap().into_inner().kvs.remove(0);
    assert_eq!(y.mod_revision, 3);
    let conflict = kv.txn(update(2, "3")).await.unwrap().into_inner();
    assert!(!conflict.succeeded);
    assert_eq!(conflict.header.unwrap().revision, 3, "a txn that writes nothing takes no revision");
    let Some(OpResp::ResponseRange(cur)) = &conflict.responses[0].response else { panic!("expected a range response") };
    assert_eq!(cur.kvs[0].mod_revision, 3);
    // Nested txn.
    let nested = TxnRequest {
        compare: vec![],
        success: vec![RequestOp {
            request: Some(Op::RequestTxn(TxnRequest {
                compare: vec![cmp("x", Value, Equal, TargetUnion::Value(b("2")))],
                success: vec![op_put("n", "yes")],
                failure: vec![op_put("n", "no")],
            })),
        }],
        failure: vec![],
    };
    kv.txn(nested).await.unwrap();
    assert_eq!(&kv.range(get("n")).await.unwrap().into_inner().kvs[0].value[..], b"yes");
}

#[tokio::test]
async fn txn_limits_and_duplicate_keys_are_refused() {
    let m = Member::start(&["--max-txn-ops", "4"]);
    let mut kv = m.kv().await;
    let too_many = TxnRequest { compare: vec![], success: (0..5).map(|i| op_put(&format!("k{i}"), "v")).collect(), failure: vec![] };
    let e = kv.txn(too_many).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: too many operations in txn request"));
    let four = TxnRequest { compare: vec![], success: (0..4).map(|i| op_put(&format!("k{i}"), "v")).collect(), failure: vec![] };
    kv.txn(four).await.unwrap();
    let dup = TxnRequest { compare: vec![], success: vec![op_put("a", "1"), op_put("a", "2")], failure: vec![] };
    let e = kv.txn(dup).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"));
    let del_covering_put = TxnRequest {
        compare: vec![],
        success: vec![
            op_put("b", "1"),
            RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: b("a"), range_end: b("c"), prev_kv: false })) },
        ],
        failure: vec![],
    };
    assert_eq!(kv.txn(del_covering_put).await.unwrap_err().message(), "etcdserver: duplicate key given in txn request");
    let both_branches = TxnRequest { compare: vec![], success: vec![op_put("a", "1")], failure: vec![op_put("a", "2")] };
    kv.txn(both_branches).await.unwrap();
}

#[tokio::test]
async fn compaction_frees_history_and_refuses_reads_below_it() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    for i in 0..10 {
        kv.put(put("k", &i.to_string())).await.unwrap(); // revs 2..=11
    }
    kv.compact(CompactionRequest { revision: 6, physical: true }).await.unwrap();
    let e = kv.range(RangeRequest { revision: 5, ..get("k") }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"));
    let at = kv.range(RangeRequest { revision: 6, ..get("k") }).await.unwrap().into_inner();
    assert_eq!(&at.kvs[0].value[..], b"4", "the compacted revision itself stays readable");
    let e = kv.compact(CompactionRequest { revision: 6, physical: false }).await.unwrap_err();
    assert_eq!(e.message(), "etcdserver: mvcc: required revision has been compacted");
    let e = kv.compact(CompactionRequest { revision: 100, physical: false }).await.unwrap_err();
    assert_eq!(e.message(), "etcdserver: mvcc: required revision is a future revision");
    let mut mt = m.maintenance().await;
    let h = mt.hash_kv(HashKvRequest { revision: 0 }).await.unwrap().into_inner();
    assert_eq!(h.compact_revision, 6);
}

#[tokio::test]
async fn requests_over_the_size_limit_are_refused() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    let big = "a".repeat(1_600_000);
    let e = kv.put(put("big", &big)).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: request is too large"));
    let fits = "a".repeat(1_500_000);
    kv.put(put("fits", &fits)).await.unwrap();
    assert_eq!(kv.range(get("fits")).await.unwrap().into_inner().kvs[0].value.len(), 1_500_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_distinct_revisions() {
    let m = Member::start(&[]);
    let kv = m.kv().await;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let mut kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..50 {
                let r = kv.put(put(&format!("w{w}/{i}"), "v")).await.unwrap().into_inner();
                revs.push(r.header.unwrap().revision);
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let revs = t.await.unwrap();
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "one writer's revisions increase");
        all.extend(revs);
    }
    all.sort();
    assert_eq!(all, (2..2 + 800).collect::<Vec<i64>>(), "every put took exactly one revision");
    let mut kv = kv.clone();
    let r = kv.range(RangeRequest { key: b("w"), range_end: b("x"), count_only: true, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(r.count, 800);
}

#[tokio::test]
async fn a_restart_replays_to_the_same_revision_and_data() {
    let mut m = Member::start(&[]);
    {
        let mut kv = m.kv().await;
        for i in 0..20 {
            kv.put(put(&format!("k{i:02}"), &i.to_string())).await.unwrap();
        }
        kv.delete_range(DeleteRangeRequest { key: b("k05"), ..Default::default() }).await.unwrap();
        kv.compact(CompactionRequest { revision: 10, physical: true }).await.unwrap();
    }
    let before = {
        let mut mt = m.maintenance().await;
        mt.hash_kv(HashKvRequest { revision: 0 }).await.unwrap().into_inner()
    };
    assert_eq!(m.stop(), Some(0), "SIGTERM stops cleanly");
    m.restart();
    let mut kv = m.kv().await;
    let all = kv.range(RangeRequest { key: b("\0"), range_end: b("\0"), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(all.header.unwrap().revision, 22);
    assert_eq!(all.count, 19);
    let mut mt = m.maintenance().await;
    let after = mt.hash_kv(HashKvRequest { revision: 0 }).await.unwrap().into_inner();
    assert_eq!((after.hash, after.compact_revision), (before.hash, 10));
    let e = kv.range(RangeRequest { revision: 9, ..get("k01") }).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
}

#[tokio::test]
async fn overlapping_deletes_in_one_txn_delete_each_key_once() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    for k in ["a", "b", "c"] {
        kv.put(put(k, k)).await.unwrap();
    }
    let del = |k: &str, e: &str| RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: b(k), range_end: b(e), prev_kv: true })),
    };
    let r =
        kv.txn(TxnRequest { compare: vec![], success: vec![del("a", "c"), del("b", "d")], failure: vec![] }).await.unwrap().into_inner();
    let deleted: Vec<i64> = r
        .responses
        .iter()
        .map(|o| match &o.response {
            Some(OpResp::ResponseDeleteRange(d)) => d.deleted,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(deleted, [2, 1], "the second delete sees the first one's tombstones");
    let mut mt = m.maintenance().await;
    let h1 = mt.hash_kv(HashKvRequest { revision: 0 }).await.unwrap().into_inner();
    assert_eq!(h1.header.unwrap().revision, 5);
}

#[tokio::test]
async fn read_only_txns_and_empty_ops() {
    let m = Member::start(&[]);
    let mut kv = m.kv().await;
    kv.put(put("k", "v")).await.unwrap();
    let ro = TxnRequest {
        compare: vec![cmp("k", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b("v")))],
        success: vec![op_get("k")],
        failure: vec![],
    };
    let r = kv.txn(ro).await.unwrap().into_inner();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 2);
    let e = kv.txn(TxnRequest { compare: vec![], success: vec![RequestOp { request: None }], failure: vec![] }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: key not found"));
}
