//! Outgoing peer traffic: openraft's network over Keel's peer gRPC service. One lazily connected
//! channel per peer, shared by every call to it, with a connect timeout, HTTP/2 keepalive (a
//! cut-off connection is noticed and redialed) and a deadline on every call. A failed call is
//! reported as `Unreachable`, so openraft backs off (200 ms) before retrying. A replication
//! session that missed its deadline is a `Timeout`: openraft reopens it at once and backs off
//! only after several in a row, so one slow fsync or scheduling hiccup on a busy follower
//! costs a retry, not a pause of replication to it.
//!
//! Replication is pipelined: `stream_append` keeps one bidirectional `AppendStream` call open
//! per replication session and sends each request as openraft produces it, without waiting for
//! the answer to the one before. A follower so learns of new entries and of a new commit index
//! while it is still syncing earlier ones; a session whose oldest unanswered request waits
//! longer than the call deadline ends with `Unreachable`.

use super::codec::{self, from_json, to_json};
use super::types::{PeerInfo, SnapshotFile, TypeConfig, typ};
use crate::types::MemberId;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use keel_proto::keelpeerpb::peer_client::PeerClient;
use keel_proto::keelpeerpb::{RaftRequest, SnapshotChunk};
use openraft::RaftNetworkFactory;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::RPCOption;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::StreamAppendResult;
use openraft::{OptionalSend, RPCTypes};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// Connect timeout for peer channels.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Snapshot chunk size.
const CHUNK: usize = 1 << 20;

/// Channels to peers, by URL; shared by Raft traffic and forwarded requests.
#[derive(Clone)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// The address outgoing peer connections come from (the peer listener's IP), so peers
    /// see one address per member; `None` lets the system choose.
    dialer: Arc<dyn crate::seams::Dialer>,
}

impl Peers {
    /// Peers dialed from `local` (when given), `https://` ones with `tls`.
    pub fn new(dialer: Arc<dyn crate::seams::Dialer>) -> Peers {
        Peers { channels: Default::default(), dialer }
    }

    /// A client for the peer at `url` (the channel is created once and connects lazily).
    pub fn client(&self, url: &str) -> Result<PeerClient<Channel>, String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(url) {
            return Ok(PeerClient::new(ch.clone()).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX));
        }
        let parsed = crate::config::urls::Url::parse(url)?;
        // The dialer makes the connection (TCP or the simulation's, TLS or not), so the
        // endpoint itself always speaks plain HTTP/2 over what it is given.
        let ep = Endpoint::from_shared(format!("http://{}", parsed.addr))
            .map_err(|e| format!("bad peer URL {url}: {e}"))?
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            // h2 remembers a stream it reset itself for one *real* second (std::time::Instant)
            // and ignores frames for it meanwhile, then answers RST_STREAM(STREAM_CLOSED); with
            // none remembered it always answers so, which costs a peer nothing and keeps the
            // simulation's replays byte for byte (request simcp-2-3).
            .http2_max_concurrent_reset_streams(0);
        let (dialer, addr, secure) = (self.dialer.clone(), parsed.addr, parsed.scheme == "https");
        let ch = ep.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
            let connecting = dialer.dial(addr, secure);
            async move {
                // "connect" in the message tells callers nothing was sent (see `call_leader`).
                let s = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect {addr}: timed out")))?
                    .map_err(|e| std::io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }));
        map.insert(url.to_string(), ch.clone());
        Ok(PeerClient::new(ch).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX))
    }

    /// A client for member `info`.
    pub fn member(&self, info: &PeerInfo) -> Result<PeerClient<Channel>, String> {
        let url = info.peer_urls.first().ok_or("the member has no peer URL")?;
        self.client(url)
    }
}

/// The factory openraft asks for connections.
#[derive(Clone)]
pub struct Network {
    /// This member (never dialed).
    pub me: MemberId,
    /// Shared channels.
    pub peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: MemberId, node: &PeerInfo) -> Connection {
        let client = if target == self.me { Err("refusing to dial this member itself".to_string()) } else { self.peers.member(node) };
        Connection { client, target, me: self.me }
    }
}

/// Calls to one peer.
pub struct Connection {
    client: Result<PeerClient<Channel>, String>,
    target: MemberId,
    me: MemberId,
}

fn unreachable(msg: impl ToString) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(msg))
}

/// A replication session from `me` to `target` got no answer within `ttl`.
fn append_timeout(me: MemberId, target: MemberId, ttl: Duration) -> RPCError<TypeConfig> {
    RPCError::Timeout(Timeout { action: RPCTypes::AppendEntries, id: me, target, timeout: ttl })
}

impl Connection {
    fn client(&self) -> Result<PeerClient<Channel>, RPCError<TypeConfig>> {
        self.client.clone().map_err(unreachable)
    }

    async fn call<F, Fut>(&self, ttl: Duration, f: F) -> Result<Vec<u8>, RPCError<TypeConfig>>
    where
        F: FnOnce(PeerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<keel_proto::keelpeerpb::RaftReply>, tonic::Status>>,
    {
        let client = self.client()?;
        match tokio::time::timeout(ttl, f(client)).await {
            Ok(Ok(r)) => Ok(r.into_inner().meta.to_vec()),
            Ok(Err(status)) => Err(unreachable(format!("peer {:x}: {}", self.target, status.message()))),
            Err(_) => Err(unreachable(format!("peer {:x}: no answer within {ttl:?}", self.target))),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, RPCError<TypeConfig>> {
    from_json(raw).map_err(unreachable)
}

/// The wire form of an AppendEntries request.
fn append_request(rpc: &typ::AppendEntriesRequest) -> RaftRequest {
    let meta = to_json(&(&rpc.vote, &rpc.prev_log_id, &rpc.leader_commit));
    RaftRequest { meta: meta.into(), entries: rpc.entries.iter().map(codec::entry_bytes).collect() }
}

/// When each unanswered request of a pipelined session was sent, oldest first.
type SendTimes = Arc<Mutex<VecDeque<Instant>>>;

/// The next answer of a pipelined session from `me` to `target`, or `None` when the follower
/// closed it. Times out when the oldest unanswered request has waited `ttl`; an idle session
/// (nothing unanswered) waits on, as the connection's keepalive notices a dead peer.
async fn next_answer(
    replies: &mut tonic::Streaming<keel_proto::keelpeerpb::RaftReply>,
    sent: &SendTimes,
    ttl: Duration,
    (me, target): (MemberId, MemberId),
) -> Option<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> {
    loop {
        let oldest = sent.lock().unwrap_or_else(|p| p.into_inner()).front().copied();
        let wait = oldest.map_or(ttl, |t| ttl.saturating_sub(t.elapsed()));
        match tokio::time::timeout(wait, replies.message()).await {
            Ok(Ok(Some(reply))) => {
                sent.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                return Some(decode(&reply.meta));
            }
            Ok(Ok(None)) => return None,
            Ok(Err(status)) => return Some(Err(unreachable(format!("peer {target:x}: {}", status.message())))),
            Err(_) if oldest.is_some() => return Some(Err(append_timeout(me, target, ttl))),
            Err(_) => {}
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: typ::AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<typ::AppendEntriesResponse, typ::RpcError> {
        let req = append_request(&rpc);
        let raw = self.call(option.hard_ttl(), |mut c| async move { c.append_entries(req).await }).await?;
        decode(&raw)
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, typ::RpcError>>, typ::RpcError>>
    where
        S: Stream<Item = typ::AppendEntriesRequest> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let mut client = self.client()?;
            let (ttl, me, target) = (option.hard_ttl(), self.me, self.target);
            // openraft sleeps out its backoff while making a request, so the call opens only
            // once the first request exists: a peer refusing connections is not redialed in a
            // tight loop, and a session with nothing to send opens no call.
            let mut input = input;
            let Some(first) = input.next().await else {
                return Ok(futures::stream::empty().boxed());
            };
            let sent = SendTimes::default();
            let stamp = sent.clone();
            let requests = futures::stream::once(async { first }).chain(input).map(move |rpc| {
                stamp.lock().unwrap_or_else(|p| p.into_inner()).push_back(Instant::now());
                append_request(&rpc)
            });
            let replies = match tokio::time::timeout(ttl, client.append_stream(requests)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => return Err(unreachable(format!("peer {target:x}: {}", status.message()))),
                Err(_) => return Err(append_timeout(me, target, ttl)),
            };
            let answers = futures::stream::unfold(Some(replies), move |state| {
                let sent = sent.clone();
                async move {
                    let mut replies = state?;
                    let answer = next_answer(&mut replies, &sent, ttl, (me, target)).await?;
                    // openraft ends a session at its first failure; so does the stream.
                    let more = matches!(answer, Ok(Ok(_))).then_some(replies);
                    Some((answer, more))
                }
            });
            Ok(answers.boxed())
        })
    }

    async fn vote(&mut self, rpc: typ::VoteRequest, option: RPCOption) -> Result<typ::VoteResponse, typ::RpcError> {
        let req = RaftRequest { meta: to_json(&rpc).into(), entries: vec![] };
        let raw = self.call(option.hard_ttl(), |mut c| async move { c.vote(req).await }).await?;
        decode(&raw)
    }

    async fn pre_vote(&mut self, rpc: typ::VoteRequest, option: RPCOption) -> Result<typ::VoteResponse, typ::RpcError> {
        let req = RaftRequest { meta: to_json(&rpc).into(), entries: vec![] };
        let raw = self.call(option.hard_ttl(), |mut c| async move { c.pre_vote(req).await }).await?;
        decode(&raw)
    }

    async fn transfer_leader(
        &mut self,
        rpc: typ::TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<typ::TransferLeaderResponse, typ::RpcError> {
        let req = RaftRequest { meta: to_json(&rpc).into(), entries: vec![] };
        let raw = self.call(option.hard_ttl(), |mut c| async move { c.transfer_leader(req).await }).await?;
        decode(&raw)
    }

    async fn full_snapshot(
        &mut self,
        vote: typ::Vote,
        snapshot: typ::Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<typ::SnapshotResponse, typ::StreamingError> {
        let mut client = self.client().map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))?;
        let meta = to_json(&(vote, snapshot.meta.clone()));
        let path = snapshot.snapshot.path.clone();
        // Read by a blocking thread, sent as it is read.
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::File::open(&path)?;
            let mut first = Some(meta);
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                let chunk = SnapshotChunk { meta: first.take().unwrap_or_default().into(), data: buf.into() };
                if tx.blocking_send(chunk).is_err() || n == 0 {
                    return Ok(());
                }
            }
        });
        let send = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let target = self.target;
        let result = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r,
        };
        if let Ok(Err(e)) = reader.await {
            return Err(StreamingError::Unreachable(Unreachable::from_string(format!("reading the snapshot: {e}"))));
        }
        match result {
            Ok(r) => from_json(&r.into_inner().meta).map_err(|e| StreamingError::Unreachable(Unreachable::new(&e))),
            Err(status) => Err(StreamingError::Unreachable(Unreachable::from_string(format!("peer {target:x}: {}", status.message())))),
        }
    }
}
