//! Guarded writes as etcd Txns, without I/O: the shapes kube-apiserver's etcd3 storage uses.
//!
//! - create: `if mod_revision(key) == 0 then put else get(key)`;
//! - update and delete: `if mod_revision(key) == <resourceVersion> then put | delete else get(key)`.
//!
//! The else branch reads the key, so a failed guard tells the writer what won ([`outcome`]).

use bytes::Bytes;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::response_op::Response as OpResponse;
use keel_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse};
use keel_proto::mvccpb::KeyValue;

/// The end of the range of every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`):
/// the prefix with its last byte below 0xff incremented; `[0]` (every key) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn bytes(b: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(b.as_ref())
}

/// `mod_revision(key) == revision` (0: the key does not exist).
pub fn compare_mod(key: impl AsRef<[u8]>, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: bytes(key),
        target_union: Some(TargetUnion::ModRevision(revision)),
        range_end: Bytes::new(),
    }
}

/// `version(key) == version` (0: the key does not exist).
pub fn compare_version(key: impl AsRef<[u8]>, version: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Version as i32,
        key: bytes(key),
        target_union: Some(TargetUnion::Version(version)),
        range_end: Bytes::new(),
    }
}

/// A put of `value` at `key`, attached to `lease` (0: none).
pub fn put(key: impl AsRef<[u8]>, value: impl Into<Bytes>, lease: i64) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key: bytes(key), value: value.into(), lease, ..Default::default() })) }
}

/// A delete of `key`.
pub fn delete(key: impl AsRef<[u8]>) -> RequestOp {
    RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: bytes(key), ..Default::default() })) }
}

/// A read of `key`.
pub fn get(key: impl AsRef<[u8]>) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: bytes(key), ..Default::default() })) }
}

/// `if <compare> then <then> else get(<compare's key>)`.
pub fn guarded(compare: Compare, then: RequestOp) -> TxnRequest {
    let read = get(&compare.key);
    TxnRequest { compare: vec![compare], success: vec![then], failure: vec![read] }
}

/// `if mod_revision(key) == expected then put(key, value) else get(key)`; `expected` 0 is a create.
pub fn put_if(key: impl AsRef<[u8]>, value: impl Into<Bytes>, expected: i64, lease: i64) -> TxnRequest {
    let key = bytes(key);
    guarded(compare_mod(&key, expected), put(&key, value, lease))
}

/// `if mod_revision(key) == expected then delete(key) else get(key)`.
pub fn delete_if(key: impl AsRef<[u8]>, expected: i64) -> TxnRequest {
    let key = bytes(key);
    guarded(compare_mod(&key, expected), delete(&key))
}

/// What a guarded write found.
#[derive(Clone, Debug, PartialEq)]
pub enum Guarded {
    /// The guard held and the write is done, at this revision.
    Done(i64),
    /// The guard failed: the key as the else branch read it (None: absent).
    Failed(Option<KeyValue>),
}

/// The [`Guarded`] of a response to a Txn built by [`guarded`].
pub fn outcome(resp: TxnResponse) -> Guarded {
    if resp.succeeded {
        return Guarded::Done(resp.header.map_or(0, |h| h.revision));
    }
    let current = resp.responses.into_iter().find_map(|r| match r.response {
        Some(OpResponse::ResponseRange(range)) => range.kvs.into_iter().next(),
        _ => None,
    });
    Guarded::Failed(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::etcdserverpb::{RangeResponse, ResponseHeader, ResponseOp};

    #[test]
    fn prefix_end_is_the_first_key_after_every_key_with_the_prefix() {
        let table: &[(&[u8], &[u8])] =
            &[(b"/registry/pods/", b"/registry/pods0"), (b"a\x7f", b"a\x80"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0")];
        for (prefix, end) in table {
            assert_eq!(prefix_end(prefix), end.to_vec(), "{prefix:?}");
        }
    }

    #[test]
    fn a_guarded_put_compares_the_mod_revision_and_reads_on_failure() {
        let t = put_if("/k", b"v".to_vec(), 7, 3);
        assert_eq!(t.compare, vec![compare_mod("/k", 7)]);
        let Some(Op::RequestPut(p)) = &t.success[0].request else { panic!("a put: {t:?}") };
        assert_eq!((p.key.as_ref(), p.value.as_ref(), p.lease), (&b"/k"[..], &b"v"[..], 3));
        let Some(Op::RequestRange(r)) = &t.failure[0].request else { panic!("a read: {t:?}") };
        assert_eq!(r.key.as_ref(), b"/k");
        let d = delete_if("/k", 0);
        assert!(matches!(&d.success[0].request, Some(Op::RequestDeleteRange(_))));
    }

    #[test]
    fn outcomes_carry_the_revision_or_the_winner() {
        let done =
            TxnResponse { succeeded: true, header: Some(ResponseHeader { revision: 9, ..Default::default() }), ..Default::default() };
        assert_eq!(outcome(done), Guarded::Done(9));
        let kv = KeyValue { key: bytes("/k"), mod_revision: 8, ..Default::default() };
        let range = RangeResponse { kvs: vec![kv.clone()], ..Default::default() };
        let failed = TxnResponse { responses: vec![ResponseOp { response: Some(OpResponse::ResponseRange(range)) }], ..Default::default() };
        assert_eq!(outcome(failed), Guarded::Failed(Some(kv)));
        assert_eq!(outcome(TxnResponse::default()), Guarded::Failed(None));
    }
}
