//! The Maintenance service: Status (with the Raft leader, term and indexes), Alarm, Hash,
//! HashKV, MoveLeader, Snapshot (the member's data streamed in Keel's snapshot format) and
//! Defragment (this member's backend rewritten without dead records). Downgrade answers
//! `Unimplemented`.

use super::grpc;
use super::state::Shared;
use super::unimplemented;
use crate::auth::Caller;
use crate::error::{Error, Result};
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
    shared: Arc<Shared>,
}

/// The Snapshot stream type.
pub type SnapshotStream = Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

impl MaintenanceService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn alarms(&self) -> Vec<AlarmMember> {
        self.shared.read_state().alarms.iter().map(|&(member_id, alarm)| AlarmMember { member_id, alarm }).collect()
    }

    /// Maintenance.Status.
    pub fn status(&self) -> Result<StatusResponse> {
        let s = &self.shared;
        let size = s.backend.size_bytes() as i64;
        let replica = s.replica()?;
        let m = replica.metrics();
        let is_learner = !m.membership_config.membership().voter_ids().any(|id| id == replica.id);
        Ok(StatusResponse {
            header: s.header(s.visible()),
            version: ETCD_VERSION.to_string(),
            db_size: size,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: s.applied_index(),
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
    pub async fn defragment(&self) -> Result<DefragmentResponse> {
        self.shared.refuse_if_learner()?;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut sm = shared.write_state();
            sm.write_group()?;
            let before = shared.backend.size_bytes();
            shared.backend.defragment()?;
            tracing::info!(before, after = shared.backend.size_bytes(), "defragmented the backend");
            Ok(())
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))??;
        self.shared.check_quota();
        Ok(DefragmentResponse { header: self.shared.header(self.shared.visible()) })
    }

    /// Maintenance.MoveLeader, on the leader.
    pub async fn move_leader(&self, req: &MoveLeaderRequest) -> Result<MoveLeaderResponse> {
        self.shared.refuse_if_learner()?;
        let deadline = tokio::time::Instant::now() + super::REQUEST_TIMEOUT;
        self.shared.replica()?.move_leader(req.target_id, deadline).await?;
        Ok(MoveLeaderResponse { header: self.shared.header(self.shared.visible()) })
    }

    /// Maintenance.Snapshot: this member's data as of now, in Keel's snapshot format.
    pub async fn snapshot(&self) -> Result<SnapshotStream> {
        self.shared.refuse_if_learner()?;
        let shared = self.shared.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
            let mut sm = shared.write_state();
            sm.write_group()?;
            let mut f = tempfile::tempfile().map_err(|e| Error::Storage(e.to_string()))?;
            crate::raft::snapshot::dump(&*shared.backend, &mut f).map_err(|e| Error::Storage(e.to_string()))?;
            drop(sm);
            crate::raft::snapshot::seal_for_etcdctl(&mut f).map_err(|e| Error::Storage(e.to_string()))?;
            Ok(f)
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))??;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        let header = self.shared.header(self.shared.visible());
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
        self.shared.refuse_if_learner()?;
        if req.action() != AlarmAction::Get {
            self.shared.require_admin(caller).await?;
        }
        if req.action() == AlarmAction::Get {
            // etcd serves GET through Raft too: a linearizable view of the alarms.
            super::read_barrier(&self.shared).await?;
            return Ok(AlarmResponse { header: self.shared.header(self.shared.visible()), alarms: self.alarms() });
        }
        let r: AlarmResponse = super::propose_as(&self.shared, crate::apply::Command::Alarm(req)).await?;
        // A member still over its quota raises its alarm again at its next write.
        Ok(r)
    }

    /// Maintenance.HashKV.
    pub fn hash_kv(&self, req: &HashKvRequest) -> Result<HashKvResponse> {
        self.shared.refuse_if_learner()?;
        // Records still held back from the backend are written first, so the hash covers the
        // same records on every member whatever its timing.
        let mut sm = self.shared.write_state();
        sm.write_group()?;
        let visible = self.shared.visible();
        let rev = if req.revision <= 0 { visible } else { req.revision };
        if rev > visible {
            return Err(crate::error::Error::FutureRevision);
        }
        let (hash, rev) = sm.mvcc.hash_kv(rev)?;
        Ok(HashKvResponse {
            header: self.shared.header(self.shared.visible()),
            hash,
            compact_revision: sm.mvcc.compacted(),
            hash_revision: rev,
        })
    }

    /// Maintenance.Hash: every record of the backend (revision records, leases, the compacted
    /// revision's records) except member-local metadata.
    pub fn hash(&self) -> Result<HashResponse> {
        self.shared.refuse_if_learner()?;
        self.shared.write_state().write_group()?;
        let mut h = crc32fast::Hasher::new();
        for (k, v) in self.shared.backend.scan(b"", &[0xff], usize::MAX)? {
            // Member-local metadata (IDs, start count, applied index) differs between members by
            // design; the hash covers the replicated data.
            if !k.starts_with(b"m/") {
                h.update(&k);
                h.update(&v);
            }
        }
        Ok(HashResponse { header: self.shared.header(self.shared.visible()), hash: h.finalize() })
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = SnapshotStream;

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.shared.metrics.count("Status");
        grpc(MaintenanceService::status(self))
    }

    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        self.shared.metrics.count("Alarm");
        let c = super::auth::caller(&request);
        grpc(MaintenanceService::alarm(self, request.into_inner(), &c).await)
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("Hash");
        grpc(MaintenanceService::hash(self))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("HashKV");
        grpc(MaintenanceService::hash_kv(self, request.get_ref()))
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("Defragment");
        grpc(MaintenanceService::defragment(self).await)
    }

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("Snapshot");
        grpc(MaintenanceService::snapshot(self).await)
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("MoveLeader");
        grpc(MaintenanceService::move_leader(self, request.get_ref()).await)
    }

    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(unimplemented("Maintenance.Downgrade"))
    }
}
