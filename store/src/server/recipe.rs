//! The queueing recipe behind v3lock and v3election, as etcd's `clientv3/concurrency` builds it
//! on KV and Watch: each contender owns a key `<prefix>/<lease hex>` attached to its lease; the
//! contender whose key has the lowest create revision holds the lock (or leads); the others wait
//! until every key created before theirs is deleted.

use super::kv::KvService;
use super::watch::WatchService;
use crate::auth::Caller;
use crate::error::{Error, Result};
pub use crate::mvcc::prefix_end;
use bytes::Bytes;
use futures::StreamExt;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::response_op::Response as OpResp;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest, WatchCreateRequest, WatchRequest,
};
use keel_proto::mvccpb::KeyValue;
use keel_proto::mvccpb::event::EventType;

/// `<prefix>/<lease hex>`, the key a contender owns.
pub fn contender_key(name: &[u8], lease: i64) -> Bytes {
    let mut k = name.to_vec();
    k.extend_from_slice(format!("/{lease:x}").as_bytes());
    Bytes::from(k)
}

/// `<name>/`, the prefix every contender key of `name` shares.
pub fn queue_prefix(name: &[u8]) -> Bytes {
    let mut k = name.to_vec();
    k.push(b'/');
    Bytes::from(k)
}

/// Put `key` (attached to `lease`) unless it exists; returns the key as stored and the revision.
/// The write is the caller's (`caller`'s rights, logged with its guard).
pub async fn create_or_get(kv: &KvService, key: Bytes, value: Bytes, lease: i64, caller: &Caller) -> Result<(KeyValue, i64)> {
    let get = RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.clone(), ..Default::default() })) };
    let txn = TxnRequest {
        compare: vec![Compare {
            key: key.clone(),
            target: CompareTarget::Create as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: Bytes::new(),
        }],
        success: vec![
            RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.clone(), value, lease, ..Default::default() })) },
            get.clone(),
        ],
        failure: vec![get],
    };
    let resp = kv.txn(txn, caller).await?;
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    let kv = resp
        .responses
        .into_iter()
        .rev()
        .find_map(|r| match r.response {
            Some(OpResp::ResponseRange(rr)) => rr.kvs.into_iter().next(),
            _ => None,
        })
        .ok_or_else(|| Error::InvalidArgument("the contender key vanished while it was created".into()))?;
    Ok((kv, rev))
}

/// The key with the lowest create revision under `prefix`: the holder or leader.
pub async fn first_created(kv: &KvService, prefix: &Bytes) -> Result<Option<KeyValue>> {
    let req = RangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(prefix),
        sort_target: SortTarget::Create as i32,
        sort_order: SortOrder::Ascend as i32,
        limit: 1,
        ..Default::default()
    };
    Ok(kv.range(&req, &Caller::member()).await?.kvs.into_iter().next())
}

/// Wait until every key under `prefix` created before `my_rev` is deleted.
pub async fn wait_for_predecessors(kv: &KvService, watch: &WatchService, prefix: &Bytes, my_rev: i64) -> Result<()> {
    loop {
        let req = RangeRequest {
            key: prefix.clone(),
            range_end: prefix_end(prefix),
            sort_target: SortTarget::Create as i32,
            sort_order: SortOrder::Descend as i32,
            max_create_revision: my_rev - 1,
            limit: 1,
            ..Default::default()
        };
        let resp = kv.range(&req, &Caller::member()).await?;
        let Some(last) = resp.kvs.into_iter().next() else { return Ok(()) };
        let from = resp.header.map_or(0, |h| h.revision) + 1;
        wait_deleted(watch, last.key, from).await;
    }
}

/// Wait until the contender key `key` (created at revision `mine`) is first in line under
/// `name`, then confirm it still exists: its lease may have ended while it waited (the bug Jepsen
/// found in etcd 3.4.3, etcd#11408). On success the guard is disarmed and the header of the
/// confirming read returned; on failure or cancellation the guard removes the key.
pub async fn wait_turn(
    kv: &KvService,
    watch: &WatchService,
    name: &[u8],
    key: Bytes,
    mine: i64,
    guard: KeyGuard,
) -> Result<Option<ResponseHeader>> {
    wait_for_predecessors(kv, watch, &queue_prefix(name), mine).await?;
    let now = kv.range(&RangeRequest { key, ..Default::default() }, &Caller::member()).await?;
    match now.kvs.first() {
        Some(kv) if kv.create_revision == mine => {
            guard.disarm();
            Ok(now.header)
        }
        _ => Err(Error::LeaseNotFound),
    }
}

/// Wait for a DELETE of `key` at or after revision `from` (or for the watch to end, after which
/// the caller looks again).
async fn wait_deleted(watch: &WatchService, key: Bytes, from: i64) {
    let create = WatchCreateRequest {
        key,
        start_revision: from,
        filters: vec![keel_proto::etcdserverpb::watch_create_request::FilterType::Noput as i32],
        ..Default::default()
    };
    let first = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
    let requests = futures::stream::iter([Ok(first)]).chain(futures::stream::pending());
    let Ok(mut responses) = watch.open(Box::pin(requests), Caller::member()) else { return };
    while let Some(Ok(resp)) = responses.next().await {
        if resp.canceled || resp.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
            return;
        }
    }
}

/// Deletes a contender key when dropped, unless disarmed: a client that goes away while waiting
/// leaves no key behind to block the queue.
pub struct KeyGuard {
    kv: Option<KvService>,
    key: Bytes,
}

impl KeyGuard {
    /// Guard `key`.
    pub fn new(kv: KvService, key: Bytes) -> Self {
        Self { kv: Some(kv), key }
    }
    /// Keep the key.
    pub fn disarm(mut self) {
        self.kv = None;
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Some(kv) = self.kv.take() {
            let key = self.key.clone();
            tokio::spawn(async move {
                let _ = kv.delete_range(DeleteRangeRequest { key, ..Default::default() }, &Caller::member()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contender_keys_name_the_lease_in_hex() {
        assert_eq!(&contender_key(b"lk", 0x1f)[..], b"lk/1f");
    }
}
