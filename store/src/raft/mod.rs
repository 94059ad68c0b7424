//! Replication: openraft behind one handle, [`Replica`]. The rest of the store proposes
//! commands, asks for read barriers and changes membership through it, and never sees
//! openraft's generics.
//!
//! - [`types`]: the type configuration and the types it carries.
//! - [`codec`]: log entries in binary, openraft structures as JSON.
//! - [`log_store`]: the Raft log (group commit); [`log_disk`]: where its bytes live.
//! - [`state_machine`]: committed entries applied to [`crate::apply::StateMachine`]; snapshots.
//! - [`snapshot`]: the snapshot file format.
//! - [`network`]: outgoing peer calls (appends pipelined on one stream per follower); the peer
//!   gRPC service that answers them is `server::peer`.
//! - [`membership`]: etcd's Cluster operations on the Raft membership.
//! - [`rounds`]: requests served in rounds (read-index rounds, forwarded write batches).
//! - [`forward`]: forwarded batches pipelined on one call to the leader.
//!
//! Flows are described in `store/docs/replication.md`.

pub mod codec;
pub mod forward;
pub mod log_disk;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod rounds;
pub mod snapshot;
pub mod state_machine;
pub mod types;

use crate::applied::Applied;
use crate::apply::{Command, Outcome};
use crate::error::{Error, Internal, Result};
use crate::types::{LogIndex, MemberId, Term};
use futures::StreamExt;
use keel_proto::keelpeerpb::peer_client::PeerClient;
use keel_proto::keelpeerpb::{ForwardReply, ForwardResponse, ForwardResult, ReadIndexRequest, forward_reply, forward_result};
use network::Peers;
use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use rounds::Rounds;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::transport::Channel;
use types::{LogCmd, PeerInfo, typ};

/// The Raft handle.
pub type Raft = openraft::Raft<types::TypeConfig, state_machine::SmStore>;

/// How long a request may wait for Raft before the client is told it timed out.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// How long to wait between attempts while no leader is known.
const RETRY: Duration = Duration::from_millis(25);

/// Forwarded batches under way at once: a write that arrives while batches wait for their
/// answers goes out in the next batch at once, up to this many (see [`forward`]).
const FORWARDS_IN_FLIGHT: usize = 4;

/// Raft timing and snapshot settings, from etcd's flags.
///
/// `replicate_over_reverted_logs` is [`crate::seams::Bugs::replicate_over_reverted_logs`]: off in
/// the binary, where a follower whose log went back stops its leader's replication loudly.
pub fn config(
    heartbeat: Duration,
    election: Duration,
    snapshot_count: u64,
    replicate_over_reverted_logs: bool,
) -> Result<openraft::Config> {
    let hb = heartbeat.as_millis().max(1) as u64;
    let el = election.as_millis().max(2) as u64;
    openraft::Config {
        cluster_name: "keel".into(),
        heartbeat_interval: hb,
        // openraft's followers honour a leader for `election_timeout_max` after its last
        // heartbeat (its leader lease) and campaign after a random [min, max) without one;
        // pre-votes during the lease are refused. Both are kept under `--election-timeout`, so
        // a dead leader is replaced about 1 s after it died at the default 1 s (etcd: 1–2 s).
        election_timeout_min: (el / 2).max(hb * 2 + 1),
        election_timeout_max: (el * 3 / 4).max(hb * 3 + 1),
        // Snapshots are a backend flush here (cheap); keep the in-memory log short.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_count.clamp(100, 10_000)),
        max_in_snapshot_log_to_keep: snapshot_count.min(1000),
        enable_pre_vote: Some(true),
        // Replicate entries while the leader syncs them itself (as etcd does), not after.
        broadcast_submitted_on_append: Some(true),
        install_snapshot_timeout: 10_000,
        // A restarted leader campaigns again, in a new term, as in standard Raft. Restoring its
        // leadership in the same term (openraft's default) reuses log positions: entries it had
        // sent to followers but lost itself (not yet synced when the power went) are replaced by
        // new ones with the same (term, index), which the followers holding the old ones take
        // as matching, and the members' states diverge (found by the simulation's torn-write
        // disk: `keel-sim --reproduce 7 --scenario crash`, HashKV differed after a power loss).
        enable_leader_restore: Some(false),
        allow_log_reversion: Some(replicate_over_reverted_logs),
        ..Default::default()
    }
    .validate()
    .map_err(|e| Error::InvalidArgument(format!("raft settings: {e}")))
}

/// This member's replication handle.
pub struct Replica {
    /// openraft.
    pub raft: Raft,
    /// This member's ID.
    pub id: MemberId,
    /// Channels to peers.
    pub peers: Peers,
    /// What this member has applied (proposers wait on its applied index).
    applied: Arc<Applied>,
    /// Linearizable reads waiting for a read index.
    reads: Rounds<(), LogIndex>,
    /// Writes waiting to be forwarded to the leader.
    forwards: Rounds<bytes::Bytes, (Outcome, LogIndex)>,
    /// Forwarded batches that may be under way at once.
    forward_slots: Arc<Semaphore>,
    /// The open forwarding call to the leader, if any.
    forward_link: tokio::sync::Mutex<Option<Arc<forward::Link>>>,
    /// The next forwarded batch's id.
    next_batch: AtomicU64,
}

impl Replica {
    /// Wrap a built Raft node.
    pub fn new(raft: Raft, id: MemberId, peers: Peers, applied: Arc<Applied>) -> Replica {
        Replica {
            raft,
            id,
            peers,
            applied,
            reads: Rounds::default(),
            forwards: Rounds::default(),
            forward_slots: Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT)),
            forward_link: Default::default(),
            next_batch: Default::default(),
        }
    }

    /// The latest metrics (cloned at once: holding the borrow would stall Raft).
    pub fn metrics(&self) -> typ::Metrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The current leader and its addresses.
    pub fn leader(&self) -> Option<(MemberId, PeerInfo)> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id).cloned()?;
        Some((id, info))
    }

    /// The current leader's ID, if one is known.
    pub fn leader_id(&self) -> Option<MemberId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The term this member leads in, if it leads.
    pub fn leader_term(&self) -> Option<Term> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        (m.current_leader == Some(self.id)).then_some(Term(m.current_term))
    }

    /// True while this member leads.
    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.id)
    }

    /// Call the leader's peer service with `call` until it answers, the leader cannot be
    /// reached and no other leader appears, or `deadline`. Only failures that prove the call
    /// was not acted on (no connection, "not leader") are retried.
    pub async fn call_leader<T, F, Fut>(&self, deadline: Instant, mut call: F) -> Result<T>
    where
        F: FnMut(PeerClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        loop {
            if let Some((id, info)) = self.leader()
                && id != self.id
                && let Ok(client) = self.peers.member(&info)
            {
                match tokio::time::timeout_at(deadline, call(client)).await {
                    Err(_) => return Err(Error::Timeout),
                    Ok(Ok(r)) => return Ok(r.into_inner()),
                    Ok(Err(status)) => {
                        let refused = status.code() == tonic::Code::Unavailable && status.message().contains("connect");
                        let e = Error::from_status(&status);
                        if !refused && e != Error::NotLeader {
                            return Err(e);
                        }
                    }
                }
            } else if self.is_leader() {
                return Err(Error::NotLeader);
            }
            if Instant::now() + RETRY >= deadline {
                return Err(if self.leader_id().is_some() { Error::Timeout } else { Error::NoLeader });
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Propose `cmd` and wait until it is committed and applied; from a follower, the leader
    /// proposes it. Gives up with etcd's errors at `deadline`.
    pub async fn propose(self: &Arc<Self>, cmd: &Command, guard: Option<&crate::auth::Guard>, deadline: Instant) -> Result<Outcome> {
        let raw = bytes::Bytes::from(cmd.to_log_bytes(guard));
        loop {
            // A member that knows another leader forwards at once; otherwise openraft decides.
            let elsewhere = self.leader_id().is_some_and(|id| id != self.id);
            if !elsewhere {
                match self.propose_here(raw.clone(), deadline).await {
                    Err(Error::NotLeader) => {}
                    other => return other,
                }
            }
            match self.forward(raw.clone(), deadline).await {
                // Leadership came here meanwhile, or the leader lost it before proposing.
                Err(Error::NotLeader) if Instant::now() + RETRY < deadline => tokio::time::sleep(RETRY).await,
                Err(Error::NotLeader) => return Err(Error::Timeout),
                // As etcd, answer once this member has applied the write too: a serializable
                // read here then sees it, and this member's watchers have had its events.
                Ok((applied, index)) => {
                    self.applied.wait_applied(index, deadline).await?;
                    return Ok(applied);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Have the leader propose `raw`, in the next batch of forwarded writes.
    async fn forward(self: &Arc<Self>, raw: bytes::Bytes, deadline: Instant) -> Result<(Outcome, LogIndex)> {
        let joined = self.forwards.join(raw);
        if joined.start_runner {
            let me = self.clone();
            tokio::spawn(async move { me.run_forwards().await });
        }
        joined.answer(deadline).await
    }

    /// Send forwarded writes in batches, up to [`FORWARDS_IN_FLIGHT`] under way at once, until
    /// none waits.
    async fn run_forwards(self: Arc<Self>) {
        loop {
            let Ok(slot) = self.forward_slots.clone().acquire_owned().await else { return };
            let Some(batch) = self.forwards.next() else { return };
            let me = self.clone();
            tokio::spawn(async move {
                me.forward_batch(batch).await;
                drop(slot);
            });
        }
    }

    /// Send one batch of forwarded writes and hand out the answers.
    async fn forward_batch(&self, batch: Vec<rounds::Waiter<bytes::Bytes, (Outcome, LogIndex)>>) {
        let commands: Vec<bytes::Bytes> = batch.iter().map(|(c, _)| c.clone()).collect();
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let results: Vec<Result<(Outcome, LogIndex)>> = match self.forward_on_link(commands, deadline).await {
            Ok(resp) if resp.results.len() == batch.len() => resp.results.into_iter().map(from_forward_result).collect(),
            Ok(_) => (0..batch.len()).map(|_| Err(Internal::Peer("a forwarded batch answered with the wrong count").into())).collect(),
            Err(e) => (0..batch.len()).map(|_| Err(e.clone())).collect(),
        };
        for ((_, tx), r) in batch.into_iter().zip(results) {
            let _ = tx.send(r);
        }
    }

    /// Send a batch on the forwarding call, opening one when there is none (or it ended, or
    /// the leader changed).
    async fn forward_on_link(&self, commands: Vec<bytes::Bytes>, deadline: Instant) -> Result<ForwardResponse> {
        loop {
            let link = self.forward_link(deadline).await?;
            let id = self.next_batch.fetch_add(1, Ordering::Relaxed);
            if let Some(answer) = link.send(id, commands.clone(), deadline).await {
                return answer;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
        }
    }

    /// The forwarding call to the current leader, opened if needed.
    async fn forward_link(&self, deadline: Instant) -> Result<Arc<forward::Link>> {
        let mut slot = self.forward_link.lock().await;
        let leader = self.leader_id();
        if let Some(link) = slot.as_ref()
            && !link.closed()
            && link.leader == leader
        {
            return Ok(link.clone());
        }
        // Each attempt gets a fresh request side; the one of the attempt that opened is kept.
        let opened = std::sync::Mutex::new(None);
        let answers = self
            .call_leader(deadline, |mut c| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                *opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
                async move { c.forward_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await }
            })
            .await?;
        let batches = opened.into_inner().unwrap_or_else(|p| p.into_inner()).ok_or(Error::Stopped)?;
        let link = forward::Link::start(leader, batches, answers);
        *slot = Some(link.clone());
        Ok(link)
    }

    /// Propose `cmd` only while this member leads, never forwarding it (lease expiry: a
    /// decision taken from this member's clock). `NotLeader` when it does not lead.
    pub async fn propose_if_leader(&self, cmd: &Command, deadline: Instant) -> Result<Outcome> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        self.propose_here(bytes::Bytes::from(cmd.to_log_bytes(None)), deadline).await
    }

    /// Propose on this member only: [`Error::NotLeader`] when it does not lead.
    pub async fn propose_here(&self, raw: bytes::Bytes, deadline: Instant) -> Result<Outcome> {
        self.propose_indexed(raw, deadline).await.map(|(applied, _)| applied)
    }

    /// [`Replica::propose_here`], with the log index the write was applied at.
    pub async fn propose_indexed(&self, raw: bytes::Bytes, deadline: Instant) -> Result<(Outcome, LogIndex)> {
        let write = self.raft.client_write(LogCmd(raw));
        match tokio::time::timeout_at(deadline, write).await {
            Err(_) => Err(Error::Timeout),
            Ok(Ok(resp)) => written(resp.log_id.index, resp.data),
            Ok(Err(RaftError::APIError(e))) => Err(refused(e)),
            Ok(Err(RaftError::Fatal(e))) => Err(stopped(e)),
        }
    }

    /// [`Replica::propose_indexed`] for several commands in one submission: openraft appends
    /// and replicates them together (one log write, one message per follower) instead of one
    /// by one. Answers come in the commands' order.
    pub async fn propose_many(&self, raws: Vec<bytes::Bytes>, deadline: Instant) -> Vec<Result<(Outcome, LogIndex)>> {
        let n = raws.len();
        let mut out = Vec::with_capacity(n);
        // What the commands left without an answer get: the deadline passed, or raft stopped.
        let mut rest = Error::Timeout;
        match tokio::time::timeout_at(deadline, self.raft.client_write_many(raws.into_iter().map(LogCmd))).await {
            Err(_) => {}
            Ok(Err(e)) => rest = stopped(e),
            Ok(Ok(mut answers)) => {
                let collect = async {
                    while let Some(answer) = answers.next().await {
                        match answer {
                            Ok(Ok(w)) => out.push(written(w.log_id.index, w.response)),
                            Ok(Err(e)) => out.push(Err(refused(e))),
                            Err(e) => return stopped(e),
                        }
                    }
                    Error::Timeout
                };
                if let Ok(e) = tokio::time::timeout_at(deadline, collect).await {
                    rest = e;
                }
            }
        }
        out.resize_with(n, || Err(rest.clone()));
        out
    }

    /// Wait until this member has applied everything committed before the call, as confirmed
    /// by the leader with a quorum (read-index), so a read after it is linearizable.
    pub async fn read_barrier(self: &Arc<Self>, deadline: Instant) -> Result<()> {
        loop {
            match self.batched_read_index(deadline).await {
                Ok(index) => return self.applied.wait_applied(index, deadline).await,
                Err(Error::NotLeader | Error::NoLeader) if Instant::now() + RETRY < deadline => tokio::time::sleep(RETRY).await,
                Err(Error::NotLeader) => return Err(Error::Timeout),
                Err(e) => return Err(e),
            }
        }
    }

    /// A read index for a read that arrived now, from the next read-index round.
    async fn batched_read_index(self: &Arc<Self>, deadline: Instant) -> Result<LogIndex> {
        let joined = self.reads.join(());
        if joined.start_runner {
            let me = self.clone();
            tokio::spawn(async move { me.run_read_rounds().await });
        }
        joined.answer(deadline).await
    }

    /// Serve read-index rounds until no read waits.
    async fn run_read_rounds(&self) {
        while let Some(batch) = self.reads.next() {
            let r = self.read_index_once(Instant::now() + REQUEST_TIMEOUT).await;
            for (_, tx) in batch {
                let _ = tx.send(r.clone());
            }
        }
    }

    /// One read-index round: the leader confirms its leadership itself, a follower asks it.
    async fn read_index_once(&self, deadline: Instant) -> Result<LogIndex> {
        if self.is_leader() {
            match self.leader_read_index(deadline).await {
                Err(Error::NotLeader | Error::NoLeader) => {}
                other => return other,
            }
        }
        self.call_leader(deadline, |mut c| async move { c.read_index(ReadIndexRequest {}).await }).await.map(|r| LogIndex(r.index))
    }

    /// The leader's side of a follower's read barrier: confirm leadership, return the index.
    ///
    /// The index is at least the leader's last log index when the read arrived. openraft's own
    /// read index is max(committed, its term's first entry); a leader that restarted and took
    /// its leadership back with the same vote can hold a committed index older than entries a
    /// client already saw acknowledged (its commit record was not synced), and its term's first
    /// entry is older still, so a read could miss an acknowledged write. Every committed entry
    /// is in the leader's log, so its last index covers them all (found by the simulation:
    /// `keel-sim --reproduce 7 --scenario crash`).
    pub async fn leader_read_index(&self, deadline: Instant) -> Result<LogIndex> {
        let floor = self.raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
        let read = self.raft.get_read_linearizer(ReadPolicy::ReadIndex);
        match tokio::time::timeout_at(deadline, read).await {
            Err(_) => Err(Error::Timeout),
            Ok(Ok(lin)) => Ok(LogIndex(lin.read_log_id().log_id().index.max(floor))),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => Err(Error::NotLeader),
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)))) => Err(Error::NoLeader),
            Ok(Err(RaftError::Fatal(e))) => Err(Error::raft_stopped(e)),
        }
    }
}

/// An applied entry's result, with its log index.
fn written(index: u64, reply: types::ApplyReply) -> Result<(Outcome, LogIndex)> {
    let outcome = reply.0.unwrap_or_else(|| Err(Internal::NoOutput.into()));
    outcome.map(|o| (o, LogIndex(index)))
}

/// A write openraft refused or gave up on.
fn refused(e: ClientWriteError<types::TypeConfig>) -> Error {
    match e {
        ClientWriteError::ForwardToLeader(_) => Error::NotLeader,
        // The entry was appended and then replaced by another leader's: not applied.
        e => Error::Remote(tonic::Code::Unavailable, format!("etcdserver: leader changed ({e})")),
    }
}

fn stopped(e: impl std::fmt::Display) -> Error {
    Error::raft_stopped(e)
}

/// One forwarded command's outcome as this member's own result, with the leader's log index.
fn from_forward_result(r: ForwardResult) -> Result<(Outcome, LogIndex)> {
    match r.outcome {
        Some(forward_result::Outcome::Reply(reply)) => from_forward_reply(reply),
        Some(forward_result::Outcome::Failure(f)) => Err(Error::from_status(&tonic::Status::new(tonic::Code::from_i32(f.code), f.message))),
        None => Err(Internal::Peer("a forwarded write answered with nothing").into()),
    }
}

/// The forwarded answer as this member's own result (its events come through local apply),
/// with the log index the leader applied it at; the inverse of [`to_forward_reply`].
pub fn from_forward_reply(r: ForwardReply) -> Result<(Outcome, LogIndex)> {
    use crate::apply::Output;
    let output = match r.result {
        Some(forward_reply::Result::Put(x)) => Output::Put(x),
        Some(forward_reply::Result::DeleteRange(x)) => Output::DeleteRange(x),
        Some(forward_reply::Result::Txn(x)) => Output::Txn(x),
        Some(forward_reply::Result::Compact(x)) => Output::Compact(x),
        Some(forward_reply::Result::LeaseGrant(x)) => Output::LeaseGrant(x),
        Some(forward_reply::Result::LeaseRevoke(x)) => Output::LeaseRevoke(x),
        Some(forward_reply::Result::Alarm(x)) => Output::Alarm(x),
        Some(forward_reply::Result::Auth(x)) => Output::Auth(x),
        None => return Err(Internal::Peer("a forwarded write answered with nothing").into()),
    };
    Ok((Outcome { output, revision: crate::types::Revision(r.revision), events: Vec::new(), unread: Vec::new() }, LogIndex(r.index)))
}

/// A result, applied at log `index`, as the answer to a forwarded write.
pub fn to_forward_reply(a: Outcome, index: LogIndex) -> ForwardReply {
    use crate::apply::Output;
    let result = match a.output {
        Output::Put(x) => forward_reply::Result::Put(x),
        Output::DeleteRange(x) => forward_reply::Result::DeleteRange(x),
        Output::Txn(x) => forward_reply::Result::Txn(x),
        Output::Compact(x) => forward_reply::Result::Compact(x),
        Output::LeaseGrant(x) => forward_reply::Result::LeaseGrant(x),
        Output::LeaseRevoke(x) => forward_reply::Result::LeaseRevoke(x),
        Output::Alarm(x) => forward_reply::Result::Alarm(x),
        Output::Auth(x) => forward_reply::Result::Auth(x),
    };
    ForwardReply { revision: a.revision.0, result: Some(result), index: index.0 }
}
