//! The storage layer: the apiserver's only way to the store, over [`keel_etcd`], so it works
//! against keel-store and the real etcd alike. Every write is a Txn guarded by `mod_revision`,
//! exactly as kube-apiserver's etcd3 storage does it ([`keel_etcd::txn`]); values pass through
//! the [`encryption::Codec`] both ways (secrets are sealed at rest).
//!
//! Modules: [`keys`] (the key layout), [`encryption`], [`cache`] (the watch cache: one store
//! watch per resource), [`compactor`] (kube-apiserver's compaction loop), [`leases`] (the
//! lease events expire with). Below: `keel_etcd`. Above: `rest`. It reads `registry` for the
//! resource table and metadata rules, nothing else of the crate.

pub mod cache;
pub mod compactor;
pub mod encryption;
pub mod keys;
pub mod leases;

use crate::error::ApiError;
use bytes::Bytes;
use encryption::Codec;
use keel_etcd::{Guarded, KeyValue};
use serde_json::Value;
use std::sync::Arc;

/// A key and value as stored (decrypted), with its revisions.
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
    /// The lease the key is attached to (0: none; events expire through theirs).
    pub lease: i64,
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

/// The key kube-apiserver instances coordinate compaction through (the same key, so Keel and
/// kube-apiserver sharing a store would not both compact).
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// Keys per page when the server reads a whole prefix.
const LIST_PAGE: i64 = 1000;

fn store_error(e: keel_etcd::Error) -> ApiError {
    match e {
        keel_etcd::Error::Compacted => ApiError::Gone(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
        ),
        keel_etcd::Error::FutureRevision => ApiError::TooLargeResourceVersion { requested: 0, current: 0 },
        other => ApiError::Store(other.to_string()),
    }
}

impl From<keel_etcd::Error> for ApiError {
    fn from(e: keel_etcd::Error) -> ApiError {
        store_error(e)
    }
}

/// A key-value pair from the store, decrypted where it was encrypted.
pub fn open(codec: &Codec, kv: KeyValue) -> Result<Stored, ApiError> {
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let value = codec.open(&key, &kv.value).map_err(|reason| ApiError::Corrupt { key: key.clone(), reason })?;
    Ok(Stored { key, value: value.into(), mod_revision: kv.mod_revision, create_revision: kv.create_revision, lease: kv.lease })
}

/// The object stored in `s`, with its resourceVersion.
pub fn decode(s: &Stored) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&s.value).map_err(|e| ApiError::Corrupt { key: s.key.clone(), reason: e.to_string() })?;
    crate::registry::meta::set_resource_version(&mut v, s.mod_revision);
    Ok(v)
}

/// A write that holds only if `key` is still at `revision` (written in another key's Txn).
#[derive(Clone, Debug)]
pub struct GuardedPut {
    /// The key.
    pub key: String,
    /// Its mod_revision when read.
    pub revision: i64,
    /// What to store (unsealed).
    pub value: Vec<u8>,
}

/// The store, as the apiserver uses it. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: keel_etcd::Client,
    codec: Arc<Codec>,
}

impl Store {
    /// The store behind `client`, values sealed and opened by `codec`.
    pub fn new(client: keel_etcd::Client, codec: Arc<Codec>) -> Store {
        Store { client, codec }
    }

    /// The etcd client.
    pub fn client(&self) -> &keel_etcd::Client {
        &self.client
    }

    /// The codec values pass through.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    fn written(&self, g: Guarded) -> Result<Written, ApiError> {
        Ok(match g {
            Guarded::Done(rev) => Written::At(rev),
            Guarded::Failed(current) => Written::Guard(current.map(|kv| open(&self.codec, kv)).transpose()?),
        })
    }

    /// A linearizable read of one key.
    pub async fn get(&self, key: &str) -> Result<Option<Stored>, ApiError> {
        self.client.get(key).await?.map(|kv| open(&self.codec, kv)).transpose()
    }

    /// Keys from `start` (inclusive) up to `end`, at `revision` (0: the latest), at most
    /// `limit` of them (0: all). A compacted revision is 410 Gone.
    pub async fn range(&self, start: &str, end: &[u8], revision: i64, limit: i64) -> Result<Page, ApiError> {
        let p = self.client.range(start, end, revision, limit).await?;
        let kvs = p.kvs.into_iter().map(|kv| open(&self.codec, kv)).collect::<Result<_, _>>()?;
        Ok(Page { kvs, more: p.more, revision: p.revision })
    }

    /// Every key under `prefix`, read at one revision (in pages); and that revision.
    pub async fn list_all(&self, prefix: &str) -> Result<(Vec<Stored>, i64), ApiError> {
        let (kvs, revision) = self.client.list(prefix, LIST_PAGE).await?;
        Ok((kvs.into_iter().map(|kv| open(&self.codec, kv)).collect::<Result<_, _>>()?, revision))
    }

    /// `if mod_revision(key) == expected then put(key, value) else get(key)`; `expected` 0 is a
    /// create. `lease` 0 for none.
    pub async fn put_if(&self, key: &str, value: Vec<u8>, expected: i64, lease: i64) -> Result<Written, ApiError> {
        let sealed = self.codec.seal(key, value);
        let g = self.client.put_if(key, sealed, expected, lease).await?;
        self.written(g)
    }

    /// `if mod_revision(key) == expected then delete(key) else get(key)`.
    pub async fn delete_if(&self, key: &str, expected: i64) -> Result<Written, ApiError> {
        let g = self.client.delete_if(key, expected).await?;
        self.written(g)
    }

    /// `put_if` (with `value`: bytes and lease) or `delete_if` (without) of `key`, in one Txn
    /// with side keys: each of `take` must not exist and is written, each of `free` is
    /// deleted (a Service's IP and node port allocations), and each of `guarded` is written
    /// only if its mod_revision is still the one read (ResourceQuotas whose `status.used`
    /// the write charges). A failed guard reads `key` only, so `Guard(Some(_))` is "the object
    /// changed" and `Guard(None)` on a create is "a side key is taken or a quota changed".
    pub async fn write_with(
        &self,
        key: &str,
        value: Option<(Vec<u8>, i64)>,
        expected: i64,
        take: &[(String, Vec<u8>)],
        free: &[String],
        guarded: &[GuardedPut],
    ) -> Result<Written, ApiError> {
        use keel_etcd::txn;
        let mut compare = vec![txn::compare_mod(key, expected)];
        compare.extend(take.iter().map(|(k, _)| txn::compare_version(k, 0)));
        compare.extend(guarded.iter().map(|g| txn::compare_mod(&g.key, g.revision)));
        let mut success = vec![match value {
            Some((v, lease)) => txn::put(key, self.codec.seal(key, v), lease),
            None => txn::delete(key),
        }];
        success.extend(take.iter().map(|(k, v)| txn::put(k, v.clone(), 0)));
        success.extend(free.iter().map(txn::delete));
        success.extend(guarded.iter().map(|g| txn::put(&g.key, self.codec.seal(&g.key, g.value.clone()), 0)));
        let req = keel_etcd::proto::etcdserverpb::TxnRequest { compare, success, failure: vec![txn::get(key)] };
        let resp = self.client.txn(req).await?;
        self.written(txn::outcome(resp))
    }

    /// The keys under `prefix` (values not opened: allocation keys hold plain JSON).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let (kvs, _) = self.client.list(prefix, LIST_PAGE).await?;
        Ok(kvs.into_iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect())
    }

    /// Deletes every key under `prefix`; how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64, ApiError> {
        Ok(self.client.delete_prefix(prefix).await?)
    }

    /// A new lease of `ttl_secs`.
    pub async fn grant(&self, ttl_secs: i64) -> Result<i64, ApiError> {
        Ok(self.client.grant(ttl_secs).await?)
    }

    /// kube-apiserver's compaction step: `if version(compact_rev_key) == seen then put(rev) else
    /// get`; (whether this server won the round, the key's version now, the store's revision).
    pub async fn compaction_round(&self, seen: i64, rev: i64) -> Result<(bool, i64, i64), ApiError> {
        use keel_etcd::txn;
        let req = txn::guarded(txn::compare_version(COMPACT_REV_KEY, seen), txn::put(COMPACT_REV_KEY, rev.to_string().into_bytes(), 0));
        let resp = self.client.txn(req).await?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        match txn::outcome(resp) {
            Guarded::Done(_) => Ok((true, seen + 1, revision)),
            Guarded::Failed(current) => Ok((false, current.map_or(0, |kv| kv.version), revision)),
        }
    }

    /// Compacts the store's history up to `rev`.
    pub async fn compact(&self, rev: i64) -> Result<(), ApiError> {
        Ok(self.client.compact(rev).await?)
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<i64, ApiError> {
        Ok(self.client.revision().await?)
    }
}
