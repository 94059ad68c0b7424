//! The Maintenance service: Status (with the Raft leader, term and indexes), Alarm, Hash,
//! HashKV, MoveLeader, Snapshot (the member's data streamed as an etcd snapshot file) and
//! Defragment (this member's backend rewritten without dead records). Downgrade answers
//! `Unimplemented`.

use super::context::Context;
use super::rpc::Rpc;
use super::{caller, grpc};
use crate::auth::Caller;
use crate::error::{Error, Internal, Result};
use crate::types::{MemberId, Revision};
use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::maintenance_server::Maintenance;
use keel_proto::etcdserverpb::*;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The etcd version Keel reports: 3.5 API, late enough that version-gating clients (such as
/// kube-apiserver's watch-progress check, which needs >= 3.5.13) enable their features.
pub const ETCD_VERSION: &str = "3.5.21";
/// The cluster version reported next to it.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";

/// etcd's Maintenance service.
#[derive(Clone)]
pub struct MaintenanceService {
    ctx: Arc<Context>,
}

/// The Snapshot stream type.
pub type SnapshotStream = Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

impl MaintenanceService {
    /// The Maintenance service of the member `ctx` serves.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    fn alarms(&self) -> Vec<AlarmMember> {
        self.ctx.applied.read_state().alarms.iter().map(|&(member_id, alarm)| AlarmMember { member_id, alarm }).collect()
    }

    /// Maintenance.Status.
    pub fn status(&self) -> Result<StatusResponse> {
        self.ctx.gate(Rpc::Status, false)?;
        let s = &self.ctx;
        let size = s.applied.backend.size_bytes() as i64;
        let replica = &s.replica;
        let m = replica.metrics();
        let is_learner = !m.membership_config.membership().voter_ids().any(|id| id == replica.id);
        Ok(StatusResponse {
            header: s.header_now(),
            version: ETCD_VERSION.to_string(),
            db_size: size,
            leader: m.current_leader.map_or(0, |l| l.0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: s.applied.applied_index().0,
            errors: self.alarms().iter().map(|a| format!("memberID:{} alarm:NOSPACE ", a.member_id)).collect(),
            db_size_in_use: size,
            is_learner,
            storage_version: String::new(),
            db_size_quota: s.limits.quota_backend_bytes as i64,
            downgrade_info: None,
        })
    }

    /// Maintenance.Defragment: rewrite this member's backend (member-local, as in etcd; its
    /// reads and writes wait meanwhile).
    pub async fn defragment(&self, caller: &Caller) -> Result<DefragmentResponse> {
        self.ctx.enter(Rpc::Defragment, caller).await?;
        let applied = self.ctx.applied.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut sm = applied.write_state();
            sm.write_group()?;
            let before = applied.backend.size_bytes();
            applied.backend.defragment()?;
            tracing::info!(before, after = applied.backend.size_bytes(), "defragmented the backend");
            Ok(())
        })
        .await
        .map_err(Error::task)??;
        self.ctx.applied.note_growth();
        Ok(DefragmentResponse { header: self.ctx.header_now() })
    }

    /// Maintenance.MoveLeader, on the leader.
    pub async fn move_leader(&self, req: &MoveLeaderRequest, caller: &Caller) -> Result<MoveLeaderResponse> {
        self.ctx.enter(Rpc::MoveLeader, caller).await?;
        let deadline = tokio::time::Instant::now() + super::REQUEST_TIMEOUT;
        self.ctx.replica.move_leader(MemberId(req.target_id), deadline).await?;
        Ok(MoveLeaderResponse { header: self.ctx.header_now() })
    }

    /// Maintenance.Snapshot: this member's data as of now, as an etcd backend file with etcd's
    /// SHA-256 trailer (see [`crate::snapshot`]).
    pub async fn snapshot(&self, caller: &Caller) -> Result<SnapshotStream> {
        self.ctx.enter(Rpc::Snapshot, caller).await?;
        let applied = self.ctx.applied.clone();
        let members = super::cluster::known_members(&self.ctx);
        let io = |e: std::io::Error| Error::Internal(Internal::Storage(e.to_string()));
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
            // The state lock keeps writers out while the records are read, so the file is
            // one revision's state.
            let out = tempfile::tempfile().map_err(io)?;
            let mut sm = applied.write_state();
            sm.write_group()?;
            let (f, _) = crate::snapshot::etcd::export(&*applied.backend, &members, out)?;
            drop(sm);
            // Hashed after the lock is released: the trailer reads the whole file again.
            crate::snapshot::seal(f)
        })
        .await
        .map_err(Error::task)??;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        let header = self.ctx.header_now();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut sent = 0u64;
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = match std::io::Read::read(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                };
                buf.truncate(n);
                sent += n as u64;
                let last = n == 0 || sent >= total;
                let msg = SnapshotResponse { header, remaining_bytes: total - sent, blob: buf.into(), version: ETCD_VERSION.into() };
                if (n > 0 || sent == 0) && tx.blocking_send(Ok(msg)).is_err() {
                    return;
                }
                if last {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// Maintenance.Alarm: GET lists the cluster's alarms; ACTIVATE and DEACTIVATE go through
    /// Raft, so every member agrees on them. While auth is on, only the root role may change
    /// alarms (a NOSPACE alarm stops every write; etcd 3.4 lets anyone raise it).
    pub async fn alarm(&self, req: AlarmRequest, caller: &Caller) -> Result<AlarmResponse> {
        self.ctx.gate(Rpc::Alarm, false)?;
        if req.action() == AlarmAction::Get {
            // etcd serves GET through Raft too: a linearizable view of the alarms.
            self.ctx.read_barrier().await?;
            return Ok(AlarmResponse { header: self.ctx.header_now(), alarms: self.alarms() });
        }
        // Changes, unlike listing, need the root role: a NOSPACE alarm stops every write.
        self.ctx.authorize(caller).await?.check_admin()?;
        let r: AlarmResponse = super::propose_as(&self.ctx, crate::apply::Command::Alarm(req)).await?;
        // A member still over its quota raises its alarm again at its next write.
        Ok(r)
    }

    /// Maintenance.HashKV.
    pub async fn hash_kv(&self, req: &HashKvRequest, caller: &Caller) -> Result<HashKvResponse> {
        self.ctx.enter(Rpc::HashKv, caller).await?;
        // Records still held back from the backend are written first, so the hash covers the
        // same records on every member whatever its timing.
        let mut sm = self.ctx.applied.write_state();
        sm.write_group()?;
        let visible = self.ctx.applied.visible();
        let rev = if req.revision <= 0 { visible } else { Revision(req.revision) };
        if rev > visible {
            return Err(Error::FutureRevision);
        }
        let (hash, rev) = sm.mvcc.hash_kv(rev)?;
        Ok(HashKvResponse { header: self.ctx.header_now(), hash, compact_revision: sm.mvcc.first_rev().0, hash_revision: rev.0 })
    }

    /// Maintenance.Hash: every record of the backend (revision records, leases, the compacted
    /// revision's records) except member-local metadata.
    pub async fn hash(&self, caller: &Caller) -> Result<HashResponse> {
        self.ctx.enter(Rpc::Hash, caller).await?;
        let applied = &self.ctx.applied;
        applied.write_state().write_group()?;
        let mut h = crc32fast::Hasher::new();
        for (k, v) in applied.backend.scan(b"", &[0xff], usize::MAX)? {
            // Member-local metadata (IDs, start count, applied index) differs between members by
            // design; the hash covers the replicated data.
            if !k.starts_with(b"m/") {
                h.update(&k);
                h.update(&v);
            }
        }
        Ok(HashResponse { header: self.ctx.header_now(), hash: h.finalize() })
    }

    /// Maintenance.Downgrade: not served.
    pub fn downgrade(&self) -> Result<DowngradeResponse> {
        self.ctx.gate(Rpc::Downgrade, false)?;
        Err(Error::Unimplemented("Maintenance.Downgrade"))
    }
}

/// Raise this member's NOSPACE alarm when its backend outgrew the quota: checked after each
/// applied write that can grow the store (and after a defragment), proposed once while it is
/// not active (it comes back after a disarm while the backend is still over quota).
pub async fn run_quota_alarm(ctx: Arc<Context>) {
    use keel_proto::etcdserverpb::AlarmType;
    loop {
        ctx.applied.grown().await;
        if ctx.applied.backend.size_bytes() <= ctx.limits.quota_backend_bytes {
            continue;
        }
        let me = ctx.identity.member_id.0;
        if ctx.applied.read_state().alarms.contains(&(me, AlarmType::Nospace as i32)) {
            continue;
        }
        tracing::warn!(quota = ctx.limits.quota_backend_bytes, "database space exceeded; raising alarm NOSPACE");
        let req = AlarmRequest { action: AlarmAction::Activate as i32, member_id: me, alarm: AlarmType::Nospace as i32 };
        if let Err(e) = super::propose_as::<AlarmResponse>(&ctx, crate::apply::Command::Alarm(req)).await {
            tracing::warn!(error = %e, "raising alarm NOSPACE failed");
        }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = SnapshotStream;

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        grpc(MaintenanceService::status(self))
    }

    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let c = caller(&request);
        grpc(MaintenanceService::alarm(self, request.into_inner(), &c).await)
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        grpc(MaintenanceService::hash(self, &caller(&request)).await)
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        grpc(MaintenanceService::hash_kv(self, request.get_ref(), &caller(&request)).await)
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        grpc(MaintenanceService::defragment(self, &caller(&request)).await)
    }

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        grpc(MaintenanceService::snapshot(self, &caller(&request)).await)
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        grpc(MaintenanceService::move_leader(self, request.get_ref(), &caller(&request)).await)
    }

    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        grpc(MaintenanceService::downgrade(self))
    }
}
