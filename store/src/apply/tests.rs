//! The state machine's tests: restart, previous values, compaction, NOSPACE, lease rights,
//! log records, crashes.

use super::*;
use crate::storage::Backend;
use crate::storage::memory::MemoryBackend;
use bytes::Bytes;
use std::sync::Arc;

/// A test's entries never fail the member.
fn ok(r: Result<Result<Outcome>, Fatal>) -> Result<Outcome> {
    r.expect("no fatal failure")
}

fn open(backend: &MemoryBackend) -> StateMachine {
    StateMachine::open(Arc::new(backend.clone()), 2, Instant::now()).unwrap()
}

fn put(k: &str, v: &str, lease: i64) -> Command {
    Command::Put(PutRequest {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
        lease,
        ..Default::default()
    })
}

#[tokio::test]
async fn reopening_the_backend_restores_revisions_leases_and_the_applied_index() {
    let backend = MemoryBackend::new();
    let mut sm = open(&backend);
    let now = Instant::now();
    ok(sm.apply(LogIndex(1), Command::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 }), None, now)).unwrap();
    ok(sm.apply(LogIndex(2), put("a", "1", 7), None, now)).unwrap();
    ok(sm.apply(LogIndex(3), put("a", "2", 0), None, now)).unwrap();
    ok(sm.apply(LogIndex(4), put("b", "1", 7), None, now)).unwrap();
    assert_eq!(
        ok(sm.apply(LogIndex(5), put("c", "1", 99), None, now)).unwrap_err(),
        Error::LeaseNotFound,
        "a failed command changes nothing"
    );
    ok(sm.apply(LogIndex(5), Command::Compact(CompactionRequest { revision: 3, physical: true }), None, now)).unwrap();
    sm.record_position(Term(1), LogIndex(5));
    sm.write_group().unwrap();
    backend.sync().await.unwrap();
    let again = open(&backend);
    assert_eq!((again.mvcc.current(), again.mvcc.compacted(), again.applied), (Revision(4), Revision(3), LogIndex(5)));
    let lease = again.leases.get(LeaseId(7)).unwrap();
    assert_eq!(
        lease.keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>(),
        vec![b"b".to_vec()],
        "a lost its lease when rewritten without one"
    );
}

#[tokio::test]
async fn a_put_reads_the_previous_value_only_when_asked_and_leaves_it_for_the_hub() {
    let backend = MemoryBackend::new();
    let mut sm = open(&backend);
    let now = Instant::now();
    ok(sm.apply(LogIndex(1), Command::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 }), None, now)).unwrap();
    ok(sm.apply(LogIndex(2), put("a", "1", 7), None, now)).unwrap();
    sm.write_group().unwrap();
    // Not asked: the index alone gives version and create revision, the lease is detached.
    let mut plain = ok(sm.apply(LogIndex(3), put("a", "2", 0), None, now)).unwrap();
    let Output::Put(resp) = &plain.output else { panic!("{:?}", plain.output) };
    assert_eq!(resp.prev_kv, None);
    assert_eq!(plain.events[0].prev_kv, None);
    assert_eq!(plain.unread.len(), 1);
    assert!(sm.leases.get(LeaseId(7)).unwrap().keys.is_empty(), "the old lease let go of the key");
    // The hub's fill reads it, from the backend or from what is not written out yet.
    sm.mvcc.fill_prev(&mut plain.events, &plain.unread);
    let prev = plain.events[0].prev_kv.as_ref().expect("filled");
    assert_eq!((&prev.value[..], prev.version, prev.lease, prev.mod_revision), (&b"1"[..], 1, 7, 2));
    let mut pending = ok(sm.apply(LogIndex(4), put("a", "3", 0), None, now)).unwrap();
    sm.mvcc.fill_prev(&mut pending.events, &pending.unread);
    assert_eq!(&pending.events[0].prev_kv.as_ref().unwrap().value[..], b"2");
    let kv = pending.events[0].kv.as_ref().unwrap();
    assert_eq!((kv.version, kv.create_revision), (3, 2));
    // Asked: read at once, nothing left unread.
    let req = PutRequest { prev_kv: true, key: Bytes::from_static(b"a"), value: Bytes::from_static(b"4"), ..Default::default() };
    let asked = ok(sm.apply(LogIndex(5), Command::Put(req), None, now)).unwrap();
    let Output::Put(resp) = &asked.output else { panic!("{:?}", asked.output) };
    assert_eq!(&resp.prev_kv.as_ref().unwrap().value[..], b"3");
    assert_eq!(&asked.events[0].prev_kv.as_ref().unwrap().value[..], b"3");
    assert!(asked.unread.is_empty());
    // A new key has no previous value to read.
    let fresh = ok(sm.apply(LogIndex(6), put("b", "1", 0), None, now)).unwrap();
    assert!(fresh.unread.is_empty());
}

#[tokio::test]
async fn a_compaction_in_the_group_has_the_unread_previous_values_read_first() {
    // Found by the simulation (kube seed 124): a compaction later in the same group dropped
    // the record an earlier put had left unread, and a prev_kv watcher got no previous value.
    let backend = MemoryBackend::new();
    let mut sm = open(&backend);
    let now = Instant::now();
    let mut group = GroupEvents::default();
    for (index, cmd) in
        [(1, put("a", "1", 0)), (2, put("a", "2", 0)), (3, Command::Compact(CompactionRequest { revision: 3, physical: false }))]
    {
        group.before(&cmd, &sm.mvcc);
        group.add(&mut ok(sm.apply(LogIndex(index), cmd, None, now)).unwrap());
    }
    assert!(group.unread.is_empty(), "read before the compaction");
    let prev = group.events[1].prev_kv.as_ref().expect("the overwritten value");
    assert_eq!((&prev.value[..], prev.mod_revision), (&b"1"[..], 2));
    // Left unread, the record would be gone by the time the hub asked.
    let mut late = ok(sm.apply(LogIndex(4), put("a", "3", 0), None, now)).unwrap();
    ok(sm.apply(LogIndex(5), Command::Compact(CompactionRequest { revision: 4, physical: false }), None, now)).unwrap();
    sm.mvcc.fill_prev(&mut late.events, &late.unread);
    assert_eq!(late.events[0].prev_kv, None);
}

#[tokio::test]
async fn while_nospace_is_raised_only_writes_that_can_grow_the_store_are_refused() {
    use keel_proto::etcdserverpb::{AlarmType, RequestOp, alarm_request::AlarmAction, request_op};
    let backend = MemoryBackend::new();
    let mut sm = open(&backend);
    let now = Instant::now();
    let alarm =
        |action: AlarmAction| Command::Alarm(AlarmRequest { action: action as i32, member_id: 9, alarm: AlarmType::Nospace as i32 });
    ok(sm.apply(LogIndex(1), put("a", "1", 0), None, now)).unwrap();
    ok(sm.apply(LogIndex(2), alarm(AlarmAction::Activate), None, now)).unwrap();
    assert_eq!(ok(sm.apply(LogIndex(3), put("b", "1", 0), None, now)).unwrap_err(), Error::NoSpace);
    let grant = Command::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 60 });
    assert_eq!(ok(sm.apply(LogIndex(3), grant, None, now)).unwrap_err(), Error::NoSpace);
    let txn_put = Command::Txn(TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest { key: Bytes::from_static(b"c"), ..Default::default() })),
        }],
        ..Default::default()
    });
    assert_eq!(ok(sm.apply(LogIndex(3), txn_put.clone(), None, now)).unwrap_err(), Error::NoSpace);
    let del = Command::DeleteRange(DeleteRangeRequest { key: Bytes::from_static(b"a"), ..Default::default() });
    ok(sm.apply(LogIndex(3), del, None, now)).expect("a delete frees space");
    ok(sm.apply(LogIndex(4), alarm(AlarmAction::Deactivate), None, now)).unwrap();
    ok(sm.apply(LogIndex(5), put("b", "1", 0), None, now)).expect("taken again after the disarm");
    ok(sm.apply(LogIndex(6), txn_put, None, now)).expect("taken again after the disarm");
    assert_eq!(sm.mvcc.current(), Revision(5));
}

#[tokio::test]
async fn lease_rights_are_checked_against_the_keys_the_lease_holds_when_applied() {
    use keel_proto::etcdserverpb as pb;
    use keel_proto::keelpeerpb::auth_command::Change;
    let backend = MemoryBackend::new();
    let mut sm = open(&backend);
    let now = Instant::now();
    let auth = |c: Change| Command::Auth(AuthCommand { change: Some(c) });
    let perm = keel_proto::authpb::Permission { perm_type: 1, key: Bytes::from_static(b"mine"), range_end: Bytes::new() };
    for c in [
        Change::UserAdd(pb::AuthUserAddRequest { name: "root".into(), hashed_password: "x".into(), ..Default::default() }),
        Change::UserGrantRole(pb::AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }),
        Change::UserAdd(pb::AuthUserAddRequest { name: "u".into(), hashed_password: "x".into(), ..Default::default() }),
        Change::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() }),
        Change::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest { name: "r".into(), perm: Some(perm) }),
        Change::UserGrantRole(pb::AuthUserGrantRoleRequest { user: "u".into(), role: "r".into() }),
        Change::Enable(pb::AuthEnableRequest {}),
    ] {
        ok(sm.apply(LogIndex(1), auth(c), None, now)).unwrap();
    }
    let rev = sm.auth.revision();
    let (u, root) = (Guard { revision: rev, user: "u".into() }, Guard { revision: rev, user: "root".into() });
    ok(sm.apply(LogIndex(2), Command::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 }), Some(&u), now)).unwrap();
    ok(sm.apply(LogIndex(3), put("mine", "1", 7), Some(&u), now)).unwrap();
    // Another user attaches a key u may not write; u's revoke would delete it.
    ok(sm.apply(LogIndex(4), put("theirs", "1", 7), Some(&root), now)).unwrap();
    let revoke = || Command::LeaseRevoke(LeaseRevokeRequest { id: 7 });
    assert_eq!(ok(sm.apply(LogIndex(5), revoke(), Some(&u), now)).unwrap_err(), Error::PermissionDenied);
    assert_eq!(ok(sm.apply(LogIndex(5), put("mine", "2", 7), Some(&u), now)).unwrap_err(), Error::PermissionDenied);
    let stale = Guard { revision: rev - 1, user: "root".into() };
    assert_eq!(ok(sm.apply(LogIndex(5), revoke(), Some(&stale), now)).unwrap_err(), Error::AuthOldRevision);
    assert_eq!(ok(sm.apply(LogIndex(5), put("x", "1", 0), Some(&Guard::default()), now)).unwrap_err(), Error::UserEmpty);
    ok(sm.apply(LogIndex(5), revoke(), Some(&root), now)).unwrap();
}

#[test]
fn log_records_round_trip_and_match_the_logged_message() {
    let cmd = put("k", "v", 7);
    let raw = cmd.to_log_bytes(None);
    assert_eq!(raw, prost::Message::encode_to_vec(&LoggedCommand { command: Some(cmd.clone()), auth_revision: None, auth_user: None }));
    assert_eq!(Command::from_log_bytes(&raw).unwrap(), (cmd.clone(), None));
    let g = Guard { revision: 9, user: "alice".into() };
    let guarded = cmd.to_log_bytes(Some(&g));
    let logged = LoggedCommand { command: Some(cmd.clone()), auth_revision: Some(9), auth_user: Some("alice".into()) };
    assert_eq!(guarded, prost::Message::encode_to_vec(&logged));
    assert_eq!(Command::from_log_bytes(&guarded).unwrap(), (cmd, Some(g)));
    assert!(Command::from_log_bytes(b"").is_err(), "an empty record is refused");
}

#[tokio::test]
async fn a_crash_loses_exactly_what_was_not_synced() {
    let backend = MemoryBackend::new();
    let mut sm = open(&backend);
    let now = Instant::now();
    ok(sm.apply(LogIndex(1), put("a", "1", 0), None, now)).unwrap();
    sm.record_position(Term(1), LogIndex(1));
    sm.write_group().unwrap();
    backend.sync().await.unwrap();
    ok(sm.apply(LogIndex(2), put("b", "1", 0), None, now)).unwrap();
    sm.record_position(Term(1), LogIndex(2));
    sm.write_group().unwrap();
    backend.crash();
    let again = open(&backend);
    assert_eq!(
        (again.mvcc.current(), again.applied),
        (Revision(2), LogIndex(1)),
        "only the synced command survives; the log replays the rest"
    );
    assert!(again.mvcc.latest(b"b").unwrap().is_none());
}

#[tokio::test]
async fn removed_member_ids_are_kept_across_a_restart_and_a_store_without_them_has_none() {
    let backend = MemoryBackend::new();
    let mut sm = open(&backend);
    assert!(sm.removed.is_empty(), "a data dir from before the set was kept");
    sm.record_removed([7, 3]);
    sm.record_removed([]);
    sm.record_removed([7]);
    sm.write_group().unwrap();
    let again = open(&backend);
    assert_eq!(again.removed.iter().copied().collect::<Vec<_>>(), vec![3, 7]);
    assert_eq!(backend.get(META_REMOVED).unwrap().map(|v| v.to_vec()), Some([3u64.to_be_bytes(), 7u64.to_be_bytes()].concat()));
}
