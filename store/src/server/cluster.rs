//! The Cluster service: membership from the Raft configuration. Changes are made by the leader;
//! another member passes them on over the peer protocol and answers with the leader's result.

use super::grpc;
use super::state::Shared;
use crate::error::{Error, Result};
use keel_proto::etcdserverpb::cluster_server::Cluster;
use keel_proto::etcdserverpb::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// etcd's Cluster service.
#[derive(Clone)]
pub struct ClusterService {
    shared: Arc<Shared>,
}

/// MemberAdd on the leader: a fresh member ID, the member added, the new list.
pub async fn add_here(shared: &Shared, req: MemberAddRequest) -> Result<MemberAddResponse> {
    let replica = shared.replica()?;
    let id = shared.next_id() as u64;
    let member = replica.add_member(id, req.peer_ur_ls, req.is_learner).await?;
    Ok(MemberAddResponse { header: shared.header(0), member: Some(member), members: replica.members() })
}

/// Run `here` on the leader when this member leads, else `remote` against the leader's peer
/// service (mapping its error back).
macro_rules! on_leader {
    ($shared:expr, $here:expr, |$client:ident| $remote:expr) => {{
        let replica = $shared.replica()?;
        if replica.is_leader() {
            $here
        } else {
            let (_, leader) = replica.leader().ok_or(Error::NoLeader)?;
            let mut $client = replica.peers.member(&leader).map_err(|_| Error::NoLeader)?;
            match tokio::time::timeout(super::REQUEST_TIMEOUT, $remote).await {
                Err(_) => Err(Error::Timeout),
                Ok(Err(status)) => Err(Error::from_status(&status)),
                Ok(Ok(r)) => Ok(r.into_inner()),
            }
        }
    }};
}

impl ClusterService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Cluster.MemberList.
    pub fn member_list(&self) -> Result<MemberListResponse> {
        // etcd's Cluster service leaves the revision out of its headers.
        Ok(MemberListResponse { header: self.shared.header(0), members: self.shared.replica()?.members() })
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(&self, req: MemberAddRequest) -> Result<MemberAddResponse> {
        let mut r = on_leader!(self.shared, add_here(&self.shared, req).await, |c| c.member_add(req.clone()))?;
        r.header = self.shared.header(0);
        Ok(r)
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, req: MemberRemoveRequest) -> Result<MemberRemoveResponse> {
        on_leader!(self.shared, self.shared.replica()?.remove_member(req.id).await.map(|_| MemberRemoveResponse::default()), |c| c
            .member_remove(req))?;
        Ok(MemberRemoveResponse { header: self.shared.header(0), members: self.shared.replica()?.members() })
    }

    /// Cluster.MemberUpdate.
    pub async fn member_update(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        let (id, urls) = (req.id, req.peer_ur_ls.clone());
        on_leader!(self.shared, self.shared.replica()?.update_member(id, urls).await.map(|_| MemberUpdateResponse::default()), |c| c
            .member_update(req))?;
        Ok(MemberUpdateResponse { header: self.shared.header(0), members: self.shared.replica()?.members() })
    }

    /// Cluster.MemberPromote.
    pub async fn member_promote(&self, req: MemberPromoteRequest) -> Result<MemberPromoteResponse> {
        on_leader!(self.shared, self.shared.replica()?.promote_member(req.id).await.map(|_| MemberPromoteResponse::default()), |c| c
            .member_promote(req))?;
        Ok(MemberPromoteResponse { header: self.shared.header(0), members: self.shared.replica()?.members() })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, _request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.shared.metrics.count("MemberList");
        grpc(ClusterService::member_list(self))
    }

    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.shared.metrics.count("MemberAdd");
        grpc(ClusterService::member_add(self, request.into_inner()).await)
    }

    async fn member_remove(&self, request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.shared.metrics.count("MemberRemove");
        grpc(ClusterService::member_remove(self, request.into_inner()).await)
    }

    async fn member_update(&self, request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        self.shared.metrics.count("MemberUpdate");
        grpc(ClusterService::member_update(self, request.into_inner()).await)
    }

    async fn member_promote(&self, request: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        self.shared.metrics.count("MemberPromote");
        grpc(ClusterService::member_promote(self, request.into_inner()).await)
    }
}
