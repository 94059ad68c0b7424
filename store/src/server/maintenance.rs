//! The Maintenance service for one member: Status, Alarm, Hash, HashKV. Defragment, Snapshot,
//! MoveLeader and Downgrade come with replication and answer `Unimplemented` until then.

use super::grpc;
use super::state::Shared;
use super::unimplemented;
use crate::error::Result;
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
        if self.shared.no_space() {
            vec![AlarmMember { member_id: self.shared.identity.member_id.0, alarm: AlarmType::Nospace as i32 }]
        } else {
            Vec::new()
        }
    }

    /// Maintenance.Status.
    pub fn status(&self) -> StatusResponse {
        let s = &self.shared;
        let size = s.backend.size_bytes() as i64;
        StatusResponse {
            header: s.header(s.visible()),
            version: ETCD_VERSION.to_string(),
            db_size: size,
            leader: s.identity.member_id.0,
            raft_index: s.applied_index(),
            raft_term: s.term(),
            raft_applied_index: s.applied_index(),
            errors: self.alarms().iter().map(|a| format!("memberID:{} alarm:NOSPACE ", a.member_id)).collect(),
            db_size_in_use: size,
            is_learner: false,
            storage_version: String::new(),
            db_size_quota: s.limits.quota_backend_bytes as i64,
            downgrade_info: None,
        }
    }

    /// Maintenance.Alarm.
    pub fn alarm(&self, req: &AlarmRequest) -> AlarmResponse {
        let before = self.alarms();
        if req.action() == AlarmAction::Deactivate && req.alarm == AlarmType::Nospace as i32 {
            self.shared.disarm_no_space();
        }
        let alarms =
            if req.action() == AlarmAction::Get { before.clone() } else { before.into_iter().filter(|a| a.alarm == req.alarm).collect() };
        AlarmResponse { header: self.shared.header(self.shared.visible()), alarms }
    }

    /// Maintenance.HashKV.
    pub fn hash_kv(&self, req: &HashKvRequest) -> Result<HashKvResponse> {
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
        Ok(Response::new(MaintenanceService::status(self)))
    }

    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        self.shared.metrics.count("Alarm");
        Ok(Response::new(MaintenanceService::alarm(self, request.get_ref())))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.shared.metrics.count("Hash");
        grpc(MaintenanceService::hash(self))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.shared.metrics.count("HashKV");
        grpc(MaintenanceService::hash_kv(self, request.get_ref()))
    }

    async fn defragment(&self, _request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Err(unimplemented("Maintenance.Defragment"))
    }

    async fn snapshot(&self, _request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(unimplemented("Maintenance.Snapshot"))
    }

    async fn move_leader(&self, _request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(unimplemented("Maintenance.MoveLeader"))
    }

    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(unimplemented("Maintenance.Downgrade"))
    }
}
