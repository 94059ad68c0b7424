//! The peer gRPC service (port 2380): Raft messages in, and requests other members send the
//! leader on behalf of their clients (writes, read-index, lease renewals, membership changes).

use super::context::Context;
use super::lease::LeaseService;
use super::{REQUEST_TIMEOUT, cluster};
use crate::error::Error;
use crate::raft::codec::{self, from_json, to_json};
use crate::raft::types::{SnapshotFile, typ};
use crate::raft::{Replica, to_forward_reply};
use crate::types::{LeaseId, MemberId};
use futures::StreamExt;
use keel_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, Member, MemberAddRequest,
    MemberAddResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use keel_proto::keelpeerpb::peer_server::Peer;
use keel_proto::keelpeerpb::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

/// The peer service of one member.
#[derive(Clone)]
pub struct PeerService {
    replica: Arc<Replica>,
    ctx: Arc<Context>,
    snap_dir: PathBuf,
}

impl PeerService {
    /// The peer service of the member `ctx` serves, receiving snapshots into `snap_dir`.
    pub fn new(ctx: Arc<Context>, snap_dir: PathBuf) -> Self {
        Self { replica: ctx.replica.clone(), ctx, snap_dir }
    }
}

fn bad(e: std::io::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

/// An AppendEntries request from its wire form.
fn decode_append(req: &RaftRequest) -> Result<typ::AppendEntriesRequest, Status> {
    let (vote, prev_log_id, leader_commit): (typ::Vote, Option<typ::LogId>, Option<typ::LogId>) = from_json(&req.meta).map_err(bad)?;
    // Copied out of the receive buffer: the log keeps entries until a snapshot, and a slice
    // would pin the whole message buffer as long.
    let entries =
        req.entries.iter().map(|e| codec::decode_entry(bytes::Bytes::copy_from_slice(e))).collect::<Result<Vec<_>, _>>().map_err(bad)?;
    Ok(typ::AppendEntriesRequest { vote, prev_log_id, entries, leader_commit })
}

/// Propose a follower's batch of forwarded writes concurrently; one result per command. A
/// command that does not decode is refused here: applied, it would stop every member's state
/// machine.
async fn propose_forwarded(replica: &Replica, batch: ForwardRequest) -> ForwardResponse {
    // Commands that do not decode are refused; the rest go to openraft in one submission.
    let refusals: Vec<Option<Error>> = batch
        .commands
        .iter()
        .map(|cmd| crate::apply::Command::from_log_bytes(cmd).err().map(|e| Error::InvalidArgument(format!("forwarded command: {e}"))))
        .collect();
    let commands = batch.commands.into_iter().zip(&refusals).filter(|(_, refused)| refused.is_none()).map(|(cmd, _)| cmd).collect();
    let mut proposed = replica.propose_many(commands, deadline()).await.into_iter();
    let results = refusals
        .into_iter()
        .map(|refused| {
            let r = match refused {
                Some(e) => Err(e),
                None => proposed.next().unwrap_or(Err(Error::Stopped)),
            };
            ForwardResult {
                outcome: Some(match r {
                    Ok((outcome, index)) => forward_result::Outcome::Reply(to_forward_reply(outcome, index)),
                    Err(e) => forward_result::Outcome::Failure(Failure { code: e.code() as i32, message: e.to_string() }),
                }),
            }
        })
        .collect();
    ForwardResponse { results, id: batch.id }
}

fn reply<T: serde::Serialize>(t: &T) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply { meta: to_json(t).into() }))
}

fn deadline() -> Instant {
    Instant::now() + REQUEST_TIMEOUT
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = decode_append(&request.into_inner())?;
        reply(&self.replica.raft.append_entries(rpc).await.map_err(fatal)?)
    }

    type AppendStreamStream = futures::stream::BoxStream<'static, Result<RaftReply, Status>>;

    async fn append_stream(&self, request: Request<Streaming<RaftRequest>>) -> Result<Response<Self::AppendStreamStream>, Status> {
        // Requests go to openraft as they arrive; it answers each in order. The first one that
        // does not decode ends the input, and its error follows the answers to those before it.
        let failure = Arc::new(std::sync::Mutex::new(None::<Status>));
        let noted = failure.clone();
        let input = request.into_inner().scan((), move |_, req| {
            let decoded = req.and_then(|r| decode_append(&r));
            futures::future::ready(decoded.map_err(|e| *noted.lock().unwrap_or_else(|p| p.into_inner()) = Some(e)).ok())
        });
        // openraft spawns the task that feeds the requests in; its runtime draws that task's
        // seed from the caller's scope, which a gRPC handler lacks. The task draws no random
        // numbers, so any fixed seed keeps a simulation's replay exact.
        let raft = &self.replica.raft;
        let answers = crate::raft::types::Runtime::scope(self.replica.id.0, async move { raft.stream_append(input) }).await;
        let answers = answers.map(|r| match r {
            Ok(result) => Ok(RaftReply { meta: to_json(&result).into() }),
            Err(e) => Err(fatal(e)),
        });
        let failed = futures::stream::once(async move { failure.lock().unwrap_or_else(|p| p.into_inner()).take().map(Err) });
        Ok(Response::new(answers.chain(failed.filter_map(futures::future::ready)).boxed()))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: typ::VoteRequest = from_json(&request.into_inner().meta).map_err(bad)?;
        reply(&self.replica.raft.vote(rpc).await.map_err(fatal)?)
    }

    async fn pre_vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: typ::VoteRequest = from_json(&request.into_inner().meta).map_err(bad)?;
        reply(&self.replica.raft.pre_vote(rpc).await.map_err(fatal)?)
    }

    async fn transfer_leader(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: typ::TransferLeaderRequest = from_json(&request.into_inner().meta).map_err(bad)?;
        reply(&self.replica.raft.handle_transfer_leader(rpc).await.map_err(fatal)?)
    }

    async fn install_snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftReply>, Status> {
        let mut stream = request.into_inner();
        let path = self.snap_dir.join(format!("recv-{:016x}.tmp", self.ctx.next_id()));
        let mut file = std::fs::File::create(&path).map_err(|e| Status::internal(e.to_string()))?;
        let mut head: Option<(typ::Vote, typ::SnapshotMeta)> = None;
        let received = async {
            while let Some(chunk) = stream.message().await? {
                if head.is_none() {
                    head = Some(from_json(&chunk.meta).map_err(bad)?);
                }
                file.write_all(&chunk.data).map_err(|e| Status::internal(e.to_string()))?;
            }
            file.sync_all().map_err(|e| Status::internal(e.to_string()))?;
            head.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))
        }
        .await;
        let (vote, meta) = match received {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let snapshot = typ::Snapshot { meta, snapshot: SnapshotFile { path: path.clone() } };
        let resp = self.replica.raft.install_full_snapshot(vote, snapshot).await;
        let _ = std::fs::remove_file(&path);
        reply(&resp.map_err(fatal)?)
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardResponse>, Status> {
        Ok(Response::new(propose_forwarded(&self.replica, request.into_inner()).await))
    }

    type ForwardStreamStream = futures::stream::BoxStream<'static, Result<ForwardResponse, Status>>;

    async fn forward_stream(&self, request: Request<Streaming<ForwardRequest>>) -> Result<Response<Self::ForwardStreamStream>, Status> {
        // Each batch is proposed as it arrives and answered when done; the answers end after
        // the last batch's, once the follower has closed its side.
        let mut batches = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let replica = self.replica.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = batches.message().await {
                let (replica, tx) = (replica.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(Ok(propose_forwarded(&replica, batch).await));
                });
            }
        });
        Ok(Response::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed()))
    }

    async fn read_index(&self, _request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        let index = self.replica.leader_read_index(deadline()).await.map_err(Status::from)?;
        Ok(Response::new(ReadIndexReply { index: index.0 }))
    }

    async fn lease_keep_alive(&self, request: Request<LeaseKeepAliveRequest>) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        if !self.replica.is_leader() {
            return Err(Error::NotLeader.into());
        }
        let r = LeaseService::new(self.ctx.clone()).keep_alive_here(LeaseId(request.into_inner().id)).await;
        Ok(Response::new(r.map_err(Status::from)?))
    }

    async fn lease_time_to_live(&self, request: Request<LeaseTimeToLiveRequest>) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        if !self.replica.is_leader() {
            return Err(Error::NotLeader.into());
        }
        Ok(Response::new(LeaseService::new(self.ctx.clone()).time_to_live_here(request.get_ref())))
    }

    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let r = cluster::add_here(&self.ctx, request.into_inner()).await;
        r.map(Response::new).map_err(Status::from)
    }

    async fn member_remove(&self, request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.replica.remove_member(MemberId(request.get_ref().id)).await.map_err(Status::from)?;
        Ok(Response::new(MemberRemoveResponse::default()))
    }

    async fn member_update(&self, request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        self.replica.update_member(MemberId(req.id), req.peer_ur_ls).await.map_err(Status::from)?;
        Ok(Response::new(MemberUpdateResponse::default()))
    }

    async fn member_promote(&self, request: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        self.replica.promote_member(MemberId(request.get_ref().id)).await.map_err(Status::from)?;
        Ok(Response::new(MemberPromoteResponse::default()))
    }

    async fn publish(&self, request: Request<Member>) -> Result<Response<PublishReply>, Status> {
        let m = request.into_inner();
        self.replica.publish_member(MemberId(m.id), m.name, m.client_ur_ls).await.map_err(Status::from)?;
        Ok(Response::new(PublishReply {}))
    }

    async fn members(&self, _request: Request<MembersRequest>) -> Result<Response<MembersReply>, Status> {
        Ok(Response::new(MembersReply { cluster_id: self.ctx.identity.cluster_id.0, members: self.replica.members() }))
    }
}
