//! Keel's records ⇄ the buckets of an etcd 3.4 backend, as etcd writes them:
//!
//! | bucket | key | value | Keel |
//! |---|---|---|---|
//! | `key` | revision: main (8 BE), `_`, sub (8 BE), `t` if a tombstone | `mvccpb.KeyValue` (only the key in a tombstone) | `k` + revision records |
//! | `lease` | lease ID (8 BE) | `leasepb.Lease` (ID, TTL, remaining TTL) | `l` + ID → TTL |
//! | `meta` | `consistent_index` (8 BE), `scheduledCompactRev`, `finishedCompactRev` (revisions) | | applied index, `m/compacted` |
//! | `auth` | `authEnabled` (1 byte), `authRevision` (8 BE) | | `m/auth` |
//! | `authUsers` / `authRoles` | name | `authpb.User` / `authpb.Role` | `m/auth` |
//! | `members` | member ID in hex | member JSON | written from the membership; not read |
//! | `members_removed` | member ID in hex | `removed` | from the removed IDs; not read |
//! | `cluster` | `clusterVersion` | `3.4.0` | written; not read |
//! | `alarm` | `etcdserverpb.AlarmMember` | empty | `m/alarms`; not read |
//!
//! Reading keeps what a new cluster made from a snapshot keeps in etcd (`etcdctl snapshot
//! restore` drops the members; the raft position starts again): keys and their history,
//! the compacted revision, leases, auth. Alarms are dropped, as Keel's own restore drops them.

use super::bbolt::{Db, DbWriter};
use crate::apply::{META_ALARMS, META_APPLIED};
use crate::auth::{Grant, META_AUTH, Stored, User};
use crate::error::{Error, Result};
use crate::mvcc::Rev;
use crate::mvcc::codec::{self, META_COMPACTED};
use crate::storage::{Backend, WriteBatch, scan_each};
use keel_proto::authpb;
use keel_proto::etcdserverpb::{AlarmMember, Member};
use keel_proto::mvccpb::KeyValue;
use prost::Message;
use std::io::{Seek, Write};
use std::ops::ControlFlow;

/// etcd's bucket names.
pub mod buckets {
    /// Revision records.
    pub const KEY: &[u8] = b"key";
    /// Consistent index and compaction marks.
    pub const META: &[u8] = b"meta";
    /// Leases.
    pub const LEASE: &[u8] = b"lease";
    /// Members (JSON).
    pub const MEMBERS: &[u8] = b"members";
    /// Removed members.
    pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
    /// Cluster version.
    pub const CLUSTER: &[u8] = b"cluster";
    /// Auth switch and revision.
    pub const AUTH: &[u8] = b"auth";
    /// Users.
    pub const AUTH_USERS: &[u8] = b"authUsers";
    /// Roles.
    pub const AUTH_ROLES: &[u8] = b"authRoles";
    /// Alarms.
    pub const ALARM: &[u8] = b"alarm";
}

const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const AUTH_ENABLED: &[u8] = b"authEnabled";
const AUTH_REVISION: &[u8] = b"authRevision";
const CLUSTER_VERSION: &[u8] = b"clusterVersion";
/// The cluster version written into snapshots: the etcd API Keel serves.
const CLUSTER_VERSION_VALUE: &[u8] = b"3.4.0";

/// `leasepb.Lease`, etcd's lease record.
#[derive(Clone, PartialEq, prost::Message)]
struct LeaseRecord {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// A member as etcd's `membership.Member` marshals it to JSON (field order and omissions too).
#[derive(serde::Serialize)]
struct MemberJson<'a> {
    id: u64,
    #[serde(rename = "peerURLs")]
    peer_urls: &'a [String],
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    is_learner: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "clientURLs", skip_serializing_if = "<[String]>::is_empty")]
    client_urls: &'a [String],
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("snapshot: {what}"))
}

/// etcd's revision key: 17 bytes, 18 with the tombstone mark.
pub fn revision_key(rev: Rev, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&(rev.main as u64).to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// The revision and tombstone mark of an etcd revision key.
pub fn parse_revision_key(k: &[u8]) -> Option<(Rev, bool)> {
    let tombstone = match k.len() {
        17 => false,
        18 if k[17] == b't' => true,
        _ => return None,
    };
    if k[8] != b'_' {
        return None;
    }
    let main = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(k[9..17].try_into().ok()?) as i64;
    Some((Rev { main, sub }, tombstone))
}

fn be8(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

fn read_be8(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// Write Keel's replicated state in `backend` as an etcd backend; `members` fill the members
/// bucket. Returns the file and the number of revision records.
pub fn export<W: Write + Seek>(backend: &dyn Backend, members: &[Member], out: W) -> Result<(W, u64)> {
    let mut db = DbWriter::new(out)?;

    let mut b = db.bucket(buckets::KEY);
    let mut revisions = 0u64;
    scan_each::<Error>(backend, &[codec::REV_PREFIX], &[codec::REV_PREFIX + 1], 4096, |k, v| {
        let (Some(rev), Some((kv, tombstone))) = (codec::parse_rev_key(k), codec::decode_record(v)) else {
            return Err(Error::corrupt(format!("revision record {k:?}")));
        };
        let kv = if tombstone { KeyValue { key: kv.key, ..Default::default() } } else { kv };
        b.put(&revision_key(rev, tombstone), &kv.encode_to_vec())?;
        revisions += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    b.finish()?;

    let mut b = db.bucket(buckets::LEASE);
    scan_each::<Error>(backend, &[codec::LEASE_PREFIX], &[codec::LEASE_PREFIX + 1], 4096, |k, v| {
        let (Some(id), Some(ttl)) = (k.get(1..).and_then(codec::decode_i64), codec::decode_i64(v)) else {
            return Err(Error::corrupt(format!("lease record {k:?}")));
        };
        b.put(&k[1..], &LeaseRecord { id, ttl, remaining_ttl: 0 }.encode_to_vec())?;
        Ok(ControlFlow::Continue(()))
    })?;
    b.finish()?;

    let mut b = db.bucket(buckets::META);
    let applied = backend.get(META_APPLIED)?.and_then(|v| codec::decode_i64(&v)).unwrap_or(0);
    b.put(CONSISTENT_INDEX, &be8(applied as u64))?;
    let compacted = backend.get(META_COMPACTED)?.and_then(|v| codec::decode_i64(&v)).unwrap_or(-1);
    if compacted > 0 {
        let rev = revision_key(Rev { main: compacted, sub: 0 }, false);
        b.put(FINISHED_COMPACT, &rev)?;
        b.put(SCHEDULED_COMPACT, &rev)?;
    }
    b.finish()?;

    let auth: Stored = match backend.get(META_AUTH)? {
        Some(raw) => serde_json::from_slice(&raw).map_err(|e| Error::corrupt(format!("unreadable auth store: {e}")))?,
        None => Stored::default(),
    };
    let mut b = db.bucket(buckets::AUTH);
    b.put(AUTH_ENABLED, &[u8::from(auth.enabled)])?;
    b.put(AUTH_REVISION, &be8(auth.revision))?;
    b.finish()?;
    let mut b = db.bucket(buckets::AUTH_USERS);
    for (name, user) in &auth.users {
        b.put(name.as_bytes(), &user_record(name, user).encode_to_vec())?;
    }
    b.finish()?;
    let mut b = db.bucket(buckets::AUTH_ROLES);
    for (name, grants) in &auth.roles {
        b.put(name.as_bytes(), &role_record(name, grants).encode_to_vec())?;
    }
    b.finish()?;

    let mut b = db.bucket(buckets::MEMBERS);
    let mut sorted: Vec<(String, &Member)> = members.iter().map(|m| (format!("{:x}", m.id), m)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, m) in sorted {
        let json = MemberJson { id: m.id, peer_urls: &m.peer_ur_ls, is_learner: m.is_learner, name: &m.name, client_urls: &m.client_ur_ls };
        b.put(key.as_bytes(), &serde_json::to_vec(&json).map_err(corrupt)?)?;
    }
    b.finish()?;
    // etcd marks each removed member `removed` under its hex ID.
    let mut b = db.bucket(buckets::MEMBERS_REMOVED);
    let removed = backend.get(crate::apply::META_REMOVED)?.map(|v| v.chunks_exact(8).filter_map(read_be8).collect::<Vec<_>>());
    let mut removed: Vec<String> = removed.unwrap_or_default().iter().map(|id| format!("{id:x}")).collect();
    removed.sort();
    for key in removed {
        b.put(key.as_bytes(), b"removed")?;
    }
    b.finish()?;

    let mut b = db.bucket(buckets::CLUSTER);
    b.put(CLUSTER_VERSION, CLUSTER_VERSION_VALUE)?;
    b.finish()?;

    let mut b = db.bucket(buckets::ALARM);
    let mut alarms: Vec<Vec<u8>> = backend
        .get(META_ALARMS)?
        .map(|v| {
            v.chunks_exact(12)
                .map(|c| {
                    let member_id = u64::from_be_bytes(c[..8].try_into().unwrap_or([0; 8]));
                    let alarm = i32::from_be_bytes(c[8..].try_into().unwrap_or([0; 4]));
                    AlarmMember { member_id, alarm }.encode_to_vec()
                })
                .collect()
        })
        .unwrap_or_default();
    alarms.sort();
    alarms.dedup();
    for a in &alarms {
        b.put(a, b"")?;
    }
    b.finish()?;

    Ok((db.finish()?, revisions))
}

fn user_record(name: &str, u: &User) -> authpb::User {
    authpb::User {
        name: name.as_bytes().to_vec().into(),
        password: u.password_hash.as_bytes().to_vec().into(),
        roles: u.roles.iter().cloned().collect(),
        options: Some(authpb::UserAddOptions { no_password: u.no_password }),
    }
}

fn role_record(name: &str, grants: &[Grant]) -> authpb::Role {
    authpb::Role {
        name: name.as_bytes().to_vec().into(),
        key_permission: grants
            .iter()
            .map(|g| authpb::Permission { perm_type: g.perm_type, key: g.key.clone().into(), range_end: g.range_end.clone().into() })
            .collect(),
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| corrupt(format!("{what} {b:?} is not UTF-8")))
}

/// Keel's records for the etcd backend `db`, added to `batch`; returns how many.
pub fn import(db: &Db<'_>, batch: &mut WriteBatch) -> Result<u64> {
    let mut n = 0u64;
    let found = db.for_each(buckets::KEY, &mut |k, v| {
        let (rev, tombstone) = parse_revision_key(k).ok_or_else(|| corrupt(format!("revision key {k:?}")))?;
        let kv = KeyValue::decode(v).map_err(|e| corrupt(format!("key-value at {rev:?}: {e}")))?;
        // etcd's tombstone holds only the key; Keel's also its revision.
        let kv = if tombstone { KeyValue { key: kv.key, mod_revision: rev.main, ..Default::default() } } else { kv };
        batch.put(codec::rev_key(rev), codec::encode_record(&kv, tombstone));
        n += 1;
        Ok(())
    })?;
    if !found {
        return Err(corrupt("no key bucket: not an etcd snapshot"));
    }
    db.for_each(buckets::LEASE, &mut |k, v| {
        let lease = LeaseRecord::decode(v).map_err(|e| corrupt(format!("lease {k:?}: {e}")))?;
        batch.put(codec::lease_key(lease.id), codec::encode_i64(lease.ttl));
        n += 1;
        Ok(())
    })?;
    // A compaction scheduled but not finished is one etcd finishes when it starts; Keel takes
    // it as done (reads below it are refused, the records left below it go at the next one).
    let mut compacted: Option<i64> = None;
    db.for_each(buckets::META, &mut |k, v| {
        if k == FINISHED_COMPACT || k == SCHEDULED_COMPACT {
            let (rev, _) = parse_revision_key(v).ok_or_else(|| corrupt(format!("{} in meta", String::from_utf8_lossy(k))))?;
            compacted = Some(compacted.map_or(rev.main, |c| c.max(rev.main)));
        }
        Ok(())
    })?;
    if let Some(rev) = compacted {
        batch.put(META_COMPACTED.to_vec(), codec::encode_i64(rev));
        n += 1;
    }
    let mut auth = Stored::default();
    db.for_each(buckets::AUTH, &mut |k, v| {
        if k == AUTH_ENABLED {
            auth.enabled = v == [1u8].as_slice();
        } else if k == AUTH_REVISION {
            auth.revision = read_be8(v).ok_or_else(|| corrupt("authRevision"))?;
        }
        Ok(())
    })?;
    db.for_each(buckets::AUTH_USERS, &mut |k, v| {
        let u = authpb::User::decode(v).map_err(|e| corrupt(format!("user {k:?}: {e}")))?;
        let user = User {
            password_hash: utf8(&u.password, "password hash")?,
            no_password: u.options.is_some_and(|o| o.no_password),
            roles: u.roles.into_iter().collect(),
        };
        auth.users.insert(utf8(k, "user name")?, user);
        Ok(())
    })?;
    db.for_each(buckets::AUTH_ROLES, &mut |k, v| {
        let r = authpb::Role::decode(v).map_err(|e| corrupt(format!("role {k:?}: {e}")))?;
        let grants = r
            .key_permission
            .into_iter()
            .map(|p| Grant { perm_type: p.perm_type, key: p.key.to_vec(), range_end: p.range_end.to_vec() })
            .collect();
        auth.roles.insert(utf8(k, "role name")?, grants);
        Ok(())
    })?;
    if auth != Stored::default() {
        let raw = serde_json::to_vec(&auth).map_err(|e| corrupt(format!("encoding the auth store: {e}")))?;
        batch.put(META_AUTH.to_vec(), raw);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryBackend;
    use std::io::Cursor;

    #[test]
    fn revision_keys_are_etcds_17_or_18_bytes() {
        let table: &[(i64, i64, bool, &[u8])] = &[
            (1, 0, false, b"\0\0\0\0\0\0\0\x01_\0\0\0\0\0\0\0\0"),
            (2, 3, true, b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\x03t"),
            (0x0102_0304_0506_0708, 1, false, b"\x01\x02\x03\x04\x05\x06\x07\x08_\0\0\0\0\0\0\0\x01"),
        ];
        for (main, sub, tombstone, bytes) in table {
            let rev = Rev { main: *main, sub: *sub };
            assert_eq!(revision_key(rev, *tombstone), *bytes);
            assert_eq!(parse_revision_key(bytes), Some((rev, *tombstone)));
        }
        for bad in [&b""[..], b"\0\0\0\0\0\0\0\x01-\0\0\0\0\0\0\0\0", b"\0\0\0\0\0\0\0\x01_\0\0\0\0\0\0\0\0x"] {
            assert_eq!(parse_revision_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn etcd_revision_keys_sort_like_revisions() {
        let mut keys = [
            revision_key(Rev { main: 256, sub: 0 }, false),
            revision_key(Rev { main: 2, sub: 1 }, true),
            revision_key(Rev { main: 2, sub: 0 }, false),
            revision_key(Rev { main: 1, sub: 0 }, false),
        ];
        keys.sort();
        let revs: Vec<i64> = keys.iter().map(|k| parse_revision_key(k).unwrap().0.main).collect();
        assert_eq!(revs, [1, 2, 2, 256]);
    }

    fn record(batch: &mut WriteBatch, main: i64, key: &str, tombstone: bool) {
        let kv = if tombstone {
            KeyValue { key: key.as_bytes().to_vec().into(), mod_revision: main, ..Default::default() }
        } else {
            KeyValue {
                key: key.as_bytes().to_vec().into(),
                value: format!("v{main}").into_bytes().into(),
                create_revision: 1,
                mod_revision: main,
                version: main,
                lease: 7,
            }
        };
        batch.put(codec::rev_key(Rev { main, sub: 0 }), codec::encode_record(&kv, tombstone));
    }

    #[test]
    fn keel_state_survives_the_trip_through_etcd_buckets() {
        let keel = MemoryBackend::new();
        let mut batch = WriteBatch::default();
        record(&mut batch, 1, "a", false);
        record(&mut batch, 2, "a", false);
        record(&mut batch, 3, "a", true);
        record(&mut batch, 4, "b", false);
        batch.put(codec::lease_key(7), codec::encode_i64(60));
        batch.put(META_COMPACTED.to_vec(), codec::encode_i64(2));
        let mut auth = Stored { enabled: true, revision: 9, ..Default::default() };
        auth.users.insert("root".into(), User { password_hash: "$2a$10$x".into(), no_password: false, roles: ["root".to_string()].into() });
        auth.roles.insert("r".into(), vec![Grant { perm_type: 2, key: b"a".to_vec(), range_end: b"b".to_vec() }]);
        batch.put(META_AUTH.to_vec(), serde_json::to_vec(&auth).unwrap());
        batch.put(META_APPLIED.to_vec(), codec::encode_i64(42));
        batch.put(crate::apply::META_REMOVED.to_vec(), [0xabu64.to_be_bytes(), 0x1234u64.to_be_bytes()].concat());
        keel.write(batch).unwrap();
        let member = Member {
            id: 0x8e9e_05c5_2164_694d,
            name: "default".into(),
            peer_ur_ls: vec!["http://localhost:2380".into()],
            ..Default::default()
        };

        let (file, revisions) = export(&keel, &[member], Cursor::new(Vec::new())).unwrap();
        assert_eq!(revisions, 4);
        let file = file.into_inner();
        let db = Db::open(&file).unwrap();
        let names: Vec<String> = db.buckets().unwrap().iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
        assert_eq!(names, ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"]);
        let mut tombstones = Vec::new();
        db.for_each(buckets::KEY, &mut |k, v| {
            if let Some((_, true)) = parse_revision_key(k) {
                tombstones.push(KeyValue::decode(v).unwrap());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(tombstones, [KeyValue { key: b"a".to_vec().into(), ..Default::default() }], "etcd's tombstone holds the key only");
        let mut members = Vec::new();
        db.for_each(buckets::MEMBERS, &mut |k, v| {
            members.push((String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            members,
            [(
                "8e9e05c52164694d".to_string(),
                r#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default"}"#.to_string()
            )]
        );
        let mut removed = Vec::new();
        db.for_each(buckets::MEMBERS_REMOVED, &mut |k, v| {
            removed.push((String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()));
            Ok(())
        })
        .unwrap();
        assert_eq!(removed, [("1234".to_string(), "removed".to_string()), ("ab".to_string(), "removed".to_string())]);
        let mut meta = Vec::new();
        db.for_each(buckets::META, &mut |k, v| {
            meta.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        let compact = revision_key(Rev { main: 2, sub: 0 }, false);
        assert_eq!(
            meta,
            [
                (CONSISTENT_INDEX.to_vec(), be8(42).to_vec()),
                (FINISHED_COMPACT.to_vec(), compact.clone()),
                (SCHEDULED_COMPACT.to_vec(), compact)
            ]
        );

        let mut batch = WriteBatch::default();
        assert_eq!(import(&db, &mut batch).unwrap(), 4 + 1 + 1 + 1);
        let back = MemoryBackend::new();
        back.write(batch).unwrap();
        let records = |b: &MemoryBackend| b.scan(b"", &[0xff], usize::MAX).unwrap();
        let want: Vec<_> =
            records(&keel).into_iter().filter(|(k, _)| &k[..] != META_APPLIED && &k[..] != crate::apply::META_REMOVED).collect();
        assert_eq!(records(&back), want, "everything but the raft position and the removed members comes back");
    }

    #[test]
    fn a_bbolt_file_without_a_key_bucket_is_not_an_etcd_snapshot() {
        let db = DbWriter::new(Cursor::new(Vec::new())).unwrap();
        let file = db.finish().unwrap().into_inner();
        let err = import(&Db::open(&file).unwrap(), &mut WriteBatch::default()).unwrap_err();
        assert!(err.to_string().contains("no key bucket"), "{err}");
    }
}
