//! The calls. A [`Client`] is cheap to clone (the clones share one HTTP/2 connection) and
//! connects lazily: building one never waits for the store.
//!
//! Every call has a deadline ([`Config::request_timeout`]) and the connection keeps HTTP/2
//! alive ([`Config::keepalive_interval`], [`Config::keepalive_timeout`]), so a member that
//! vanishes mid-call fails the call instead of hanging it (simulated TCP does not retransmit
//! across a partition, and a SIGSTOPped member accepts connections it never answers). The next
//! call reconnects, to the next member ([`crate::dial::Failover`]).

use crate::dial::{Dial, Failover, authority};
use crate::error::Error;
use crate::txn::{self, Guarded};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, RangeRequest, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
    WatchResponse,
};
use keel_proto::mvccpb::KeyValue;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// How a client talks to the store.
#[derive(Clone, Debug)]
pub struct Config {
    /// One dial attempt to one member.
    pub connect_timeout: Duration,
    /// Deadline of every call (of a watch: until the stream is open).
    pub request_timeout: Duration,
    /// HTTP/2 PING interval, also while idle.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is given up.
    pub keepalive_timeout: Duration,
    /// Largest message accepted from the store (etcd's request limit is 1.5 MiB; answers can be
    /// larger, e.g. a page of 1000 objects).
    pub message_bytes_max: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            message_bytes_max: 256 * 1024 * 1024,
        }
    }
}

/// One page of a range read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// More keys follow in the range.
    pub more: bool,
    /// The revision the page was read at.
    pub revision: i64,
}

/// A client of an etcd v3 cluster (keel-store or etcd).
#[derive(Clone)]
pub struct Client {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
}

impl Client {
    /// A lazily connecting client of `endpoints` (`host:port` or `http://host:port`) reached
    /// through `dial`.
    pub fn connect(endpoints: &[String], config: &Config, dial: Arc<dyn Dial>) -> Result<Client, Error> {
        let authorities = endpoints.iter().map(|e| authority(e)).collect::<Result<Vec<_>, _>>()?;
        let Some(first) = authorities.first() else {
            return Err(Error::Endpoint { endpoint: String::new(), reason: "no endpoint given".into() });
        };
        // The URI only names the :authority of requests; Failover decides where bytes go.
        let endpoint = Endpoint::from_shared(format!("http://{first}"))
            .map_err(|e| Error::Endpoint { endpoint: first.clone(), reason: e.to_string() })?
            .timeout(config.request_timeout)
            .http2_keep_alive_interval(config.keepalive_interval)
            .keep_alive_timeout(config.keepalive_timeout)
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_with_connector_lazy(Failover::new(authorities, dial, config.connect_timeout));
        Ok(Client::from_channel(channel, config))
    }

    /// A client over a channel built elsewhere (the caller answers for its deadlines).
    pub fn from_channel(channel: Channel, config: &Config) -> Client {
        let max = config.message_bytes_max;
        Client {
            kv: KvClient::new(channel.clone()).max_decoding_message_size(max),
            watch: WatchClient::new(channel.clone()).max_decoding_message_size(max),
            lease: LeaseClient::new(channel).max_decoding_message_size(max),
        }
    }

    /// A linearizable read of one key.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>, Error> {
        let req = RangeRequest { key: key.as_ref().to_vec().into(), ..Default::default() };
        Ok(self.kv.clone().range(req).await?.into_inner().kvs.into_iter().next())
    }

    /// Keys from `start` (inclusive) up to `end`, at `revision` (0: the latest), at most
    /// `limit` of them (0: all). A compacted revision is [`Error::Compacted`].
    pub async fn range(&self, start: impl AsRef<[u8]>, end: impl AsRef<[u8]>, revision: i64, limit: i64) -> Result<Page, Error> {
        let req = RangeRequest {
            key: start.as_ref().to_vec().into(),
            range_end: end.as_ref().to_vec().into(),
            revision,
            limit,
            ..Default::default()
        };
        let resp = self.kv.clone().range(req).await?.into_inner();
        let revision = resp.header.map_or(revision, |h| h.revision);
        Ok(Page { kvs: resp.kvs, more: resp.more, revision })
    }

    /// Every key under `prefix`, read at one revision in pages of `page` keys; and that revision
    /// (what Kubernetes' paged list does with `limit` and `continue`).
    pub async fn list(&self, prefix: impl AsRef<[u8]>, page: i64) -> Result<(Vec<KeyValue>, i64), Error> {
        let end = txn::prefix_end(prefix.as_ref());
        let mut out = Vec::new();
        let mut from = prefix.as_ref().to_vec();
        let mut revision = 0;
        loop {
            let p = self.range(&from, &end, revision, page).await?;
            if revision == 0 {
                revision = p.revision;
            }
            let next = p.kvs.last().map(|kv| {
                let mut k = kv.key.to_vec();
                k.push(0);
                k
            });
            out.extend(p.kvs);
            match (p.more, next) {
                (true, Some(k)) => from = k,
                _ => return Ok((out, revision)),
            }
        }
    }

    /// Any Txn.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Error> {
        Ok(self.kv.clone().txn(req).await?.into_inner())
    }

    /// `if mod_revision(key) == expected then put(key, value) else get(key)`; `expected` 0 is a
    /// create, `lease` 0 for none.
    pub async fn put_if(&self, key: impl AsRef<[u8]>, value: Vec<u8>, expected: i64, lease: i64) -> Result<Guarded, Error> {
        Ok(txn::outcome(self.txn(txn::put_if(key, value, expected, lease)).await?))
    }

    /// `if mod_revision(key) == expected then delete(key) else get(key)`.
    pub async fn delete_if(&self, key: impl AsRef<[u8]>, expected: i64) -> Result<Guarded, Error> {
        Ok(txn::outcome(self.txn(txn::delete_if(key, expected)).await?))
    }

    /// Deletes every key under `prefix`; how many there were.
    pub async fn delete_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<i64, Error> {
        let req = DeleteRangeRequest {
            key: prefix.as_ref().to_vec().into(),
            range_end: txn::prefix_end(prefix.as_ref()).into(),
            ..Default::default()
        };
        Ok(self.kv.clone().delete_range(req).await?.into_inner().deleted)
    }

    /// A new lease of `ttl_secs`; its id.
    pub async fn grant(&self, ttl_secs: i64) -> Result<i64, Error> {
        Ok(self.lease.clone().lease_grant(LeaseGrantRequest { ttl: ttl_secs, id: 0 }).await?.into_inner().id)
    }

    /// Compacts the store's history up to `revision`.
    pub async fn compact(&self, revision: i64) -> Result<(), Error> {
        self.kv.clone().compact(CompactionRequest { revision, physical: false }).await?;
        Ok(())
    }

    /// The store's current revision (a linearizable count-only read of one key, so it costs the
    /// same however much the store holds).
    pub async fn revision(&self) -> Result<i64, Error> {
        let req = RangeRequest { key: b"/".to_vec().into(), count_only: true, ..Default::default() };
        Ok(self.kv.clone().range(req).await?.into_inner().header.map_or(0, |h| h.revision))
    }

    /// One watch stream for `create`. See [`crate::watch`] for one that resumes.
    pub async fn watch(&self, create: WatchCreateRequest) -> Result<WatchStream, Error> {
        use futures::StreamExt;
        let req = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        // The request stream stays open while the WatchStream lives (a closed request stream
        // ends the watch on etcd) and ends when it is dropped: then the store's watch goes too.
        // (Dropping only the response would leave the HTTP/2 stream, and the watch, open.)
        let (open, closed) = tokio::sync::oneshot::channel::<()>();
        let until_dropped = futures::stream::once(async move {
            let _ = closed.await;
        })
        .filter_map(|()| async { None::<WatchRequest> });
        let requests = futures::stream::once(async move { req }).chain(until_dropped);
        let inner = self.watch.clone().watch(requests).await?.into_inner();
        Ok(WatchStream { inner, _open: open })
    }
}

/// The responses of one watch; dropping it ends the watch on the store.
pub struct WatchStream {
    inner: tonic::Streaming<WatchResponse>,
    // Dropped with the stream: ends the request stream.
    _open: tokio::sync::oneshot::Sender<()>,
}

impl futures::Stream for WatchStream {
    type Item = Result<WatchResponse, tonic::Status>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}
