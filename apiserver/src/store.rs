//! The apiserver's only way to the store: etcd v3 gRPC (KV and Watch), so it works against
//! keel-store and the real etcd alike. Every write is a Txn guarded by `mod_revision`, exactly as
//! kube-apiserver's etcd3 storage does it:
//!
//! - create: `if mod_revision(key) == 0 then put`;
//! - update and delete: `if mod_revision(key) == <resourceVersion> then put | delete`.
//!
//! The channel balances over every `--etcd-servers` endpoint; one that cannot be reached drops
//! out until it can, which is the failover. Every call has a deadline and the channel keeps
//! HTTP/2 alive, so a store that vanishes mid-call fails the call instead of hanging it.

use crate::encryption::Codec;
use crate::error::ApiError;
use bytes::Bytes;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use keel_proto::mvccpb::KeyValue;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// A key and value as stored, with its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Key.
    pub key: String,
    /// Value (the object's JSON).
    pub value: Bytes,
    /// Revision of its last change: the object's resourceVersion.
    pub mod_revision: i64,
    /// Revision it was created at.
    pub create_revision: i64,
}

/// A key-value pair from the store, decrypted where it was encrypted.
pub fn open(codec: &Codec, kv: KeyValue) -> Result<Stored, ApiError> {
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let value = codec.open(&key, &kv.value).map_err(|reason| ApiError::Corrupt { key: key.clone(), reason })?;
    Ok(Stored { key, value: value.into(), mod_revision: kv.mod_revision, create_revision: kv.create_revision })
}

/// One page of a range read.
#[derive(Debug)]
pub struct Page {
    /// The keys, in key order.
    pub kvs: Vec<Stored>,
    /// More keys follow in the range.
    pub more: bool,
    /// The revision the page was read at.
    pub revision: i64,
}

/// What a guarded write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Done, at this revision.
    At(i64),
    /// The guard failed: the key's current state (None: absent).
    Guard(Option<Stored>),
}

/// Client of the store. Values pass through the [`Codec`] both ways (secrets are encrypted).
#[derive(Clone)]
pub struct Store {
    codec: Arc<Codec>,
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
}

/// The key kube-apiserver instances coordinate compaction through (the same key, so Keel and
/// kube-apiserver sharing a store would not both compact).
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// Bytes one store message may carry (etcd's default request limit is 1.5 MiB; answers can be
/// larger, e.g. a page of 500 objects).
const MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The end of the range of every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Store {
    /// A lazily connecting client of `endpoints` (`http://host:port`, comma list on the flag).
    pub fn connect(endpoints: &[String], codec: Arc<Codec>) -> Result<Store, ApiError> {
        let mut list = Vec::new();
        for e in endpoints {
            let url = if e.contains("://") { e.clone() } else { format!("http://{e}") };
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|err| ApiError::BadRequest(format!("--etcd-servers: {url}: {err}")))?
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            list.push(ep);
        }
        if list.is_empty() {
            return Err(ApiError::BadRequest("--etcd-servers: no endpoint given".into()));
        }
        let channel = Channel::balance_list(list.into_iter());
        Ok(Store {
            codec,
            kv: KvClient::new(channel.clone()).max_decoding_message_size(MESSAGE_BYTES_MAX),
            watch: WatchClient::new(channel.clone()).max_decoding_message_size(MESSAGE_BYTES_MAX),
            lease: LeaseClient::new(channel),
        })
    }

    /// The codec values pass through.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    fn open(&self, kv: KeyValue) -> Result<Stored, ApiError> {
        open(&self.codec, kv)
    }

    /// A linearizable read of one key.
    pub async fn get(&self, key: &str) -> Result<Option<Stored>, ApiError> {
        let req = RangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() };
        let resp = self.kv.clone().range(req).await?.into_inner();
        resp.kvs.into_iter().next().map(|kv| self.open(kv)).transpose()
    }

    /// Keys from `start` (inclusive) up to `end`, at `revision` (0: the latest), at most
    /// `limit` of them (0: all).
    pub async fn range(&self, start: &str, end: &[u8], revision: i64, limit: i64) -> Result<Page, ApiError> {
        let req =
            RangeRequest { key: start.as_bytes().to_vec().into(), range_end: end.to_vec().into(), revision, limit, ..Default::default() };
        match self.kv.clone().range(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                let revision = resp.header.map_or(revision, |h| h.revision);
                let kvs = resp.kvs.into_iter().map(|kv| self.open(kv)).collect::<Result<_, _>>()?;
                Ok(Page { kvs, more: resp.more, revision })
            }
            Err(s) if s.code() == tonic::Code::OutOfRange => Err(ApiError::Gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
            )),
            Err(s) => Err(s.into()),
        }
    }

    /// `if mod_revision(key) == expected then put(key, value) else get(key)`; `expected` 0 is a
    /// create. `lease` 0 for none.
    pub async fn put_if(&self, key: &str, value: Vec<u8>, expected: i64, lease: i64) -> Result<Written, ApiError> {
        let value = self.codec.seal(key, value);
        let put = Op::RequestPut(PutRequest { key: key.as_bytes().to_vec().into(), value: value.into(), lease, ..Default::default() });
        self.txn(key, expected, put).await
    }

    /// `if mod_revision(key) == expected then delete(key) else get(key)`.
    pub async fn delete_if(&self, key: &str, expected: i64) -> Result<Written, ApiError> {
        let delete = Op::RequestDeleteRange(DeleteRangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() });
        self.txn(key, expected, delete).await
    }

    async fn txn(&self, key: &str, expected: i64, then: Op) -> Result<Written, ApiError> {
        let (succeeded, current, revision) = self.guarded(key, CompareTarget::Mod, TargetUnion::ModRevision(expected), then).await?;
        if succeeded {
            return Ok(Written::At(revision));
        }
        Ok(Written::Guard(current.map(|kv| self.open(kv)).transpose()?))
    }

    /// `if <target>(key) == <value> then <then> else get(key)`: whether it held, the key as the
    /// else branch read it, and the revision after.
    async fn guarded(
        &self,
        key: &str,
        target: CompareTarget,
        value: TargetUnion,
        then: Op,
    ) -> Result<(bool, Option<KeyValue>, i64), ApiError> {
        let k: Bytes = key.as_bytes().to_vec().into();
        let req = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: target as i32,
                key: k.clone(),
                target_union: Some(value),
                ..Default::default()
            }],
            success: vec![RequestOp { request: Some(then) }],
            failure: vec![RequestOp { request: Some(Op::RequestRange(RangeRequest { key: k, ..Default::default() })) }],
        };
        let resp = self.kv.clone().txn(req).await?.into_inner();
        let revision = resp.header.map_or(0, |h| h.revision);
        let current = resp.responses.into_iter().find_map(|r| match r.response {
            Some(keel_proto::etcdserverpb::response_op::Response::ResponseRange(range)) => range.kvs.into_iter().next(),
            _ => None,
        });
        Ok((resp.succeeded, current, revision))
    }

    /// Deletes every key under `prefix`; how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64, ApiError> {
        let req = DeleteRangeRequest { key: prefix.as_bytes().to_vec().into(), range_end: prefix_end(prefix).into(), ..Default::default() };
        Ok(self.kv.clone().delete_range(req).await?.into_inner().deleted)
    }

    /// A new lease of `ttl_secs` (events expire with one, as kube-apiserver's `--event-ttl`).
    pub async fn grant(&self, ttl_secs: i64) -> Result<i64, ApiError> {
        let req = LeaseGrantRequest { ttl: ttl_secs, id: 0 };
        Ok(self.lease.clone().lease_grant(req).await?.into_inner().id)
    }

    /// kube-apiserver's compaction step: `if version(compact_rev_key) == seen then put(rev) else
    /// get`; (whether this server won the round, the key's version now, the store's revision).
    pub async fn compaction_round(&self, seen: i64, rev: i64) -> Result<(bool, i64, i64), ApiError> {
        let put = Op::RequestPut(PutRequest {
            key: COMPACT_REV_KEY.as_bytes().to_vec().into(),
            value: rev.to_string().into_bytes().into(),
            ..Default::default()
        });
        let (won, current, revision) = self.guarded(COMPACT_REV_KEY, CompareTarget::Version, TargetUnion::Version(seen), put).await?;
        if won {
            return Ok((true, seen + 1, revision));
        }
        Ok((false, current.map_or(0, |kv| kv.version), revision))
    }

    /// Compacts the store's history up to `rev`.
    pub async fn compact(&self, rev: i64) -> Result<(), ApiError> {
        self.kv.clone().compact(CompactionRequest { revision: rev, physical: false }).await?;
        Ok(())
    }

    /// Every key under `prefix`, read at one revision (in pages); and that revision.
    pub async fn list_all(&self, prefix: &str) -> Result<(Vec<Stored>, i64), ApiError> {
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        let mut from = prefix.to_string();
        let mut revision = 0;
        loop {
            let page = self.range(&from, &end, revision, 1000).await?;
            if revision == 0 {
                revision = page.revision;
            }
            let last = page.kvs.last().map(|s| format!("{}\0", s.key));
            out.extend(page.kvs);
            match (page.more, last) {
                (true, Some(next)) => from = next,
                _ => return Ok((out, revision)),
            }
        }
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<i64, ApiError> {
        let req = RangeRequest { key: b"/registry/".to_vec().into(), count_only: true, ..Default::default() };
        let resp = self.kv.clone().range(req).await?.into_inner();
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    /// A watch of every key under `prefix` from `start_revision`, with previous values and
    /// progress notifications. The stream ends when the store cancels it (compaction: the
    /// response says so in `compact_revision`).
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<tonic::Streaming<WatchResponse>, ApiError> {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: prefix.as_bytes().to_vec().into(),
                range_end: prefix_end(prefix).into(),
                start_revision,
                progress_notify: true,
                prev_kv: true,
                ..Default::default()
            })),
        };
        // The request stream stays open (a closed request stream ends the watch on etcd).
        let requests = futures::stream::once(async move { create }).chain(futures::stream::pending());
        let resp = self.watch.clone().watch(requests).await?.into_inner();
        Ok(resp)
    }
}

use futures::StreamExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
