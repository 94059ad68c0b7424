//! The Cluster service: membership from the Raft configuration. Changes are made by the leader;
//! another member passes them on over the peer protocol and answers with the leader's result.

use super::grpc;
use super::state::Shared;
use crate::error::Result;
use keel_proto::etcdserverpb::cluster_server::Cluster;
use keel_proto::etcdserverpb::*;
use keel_proto::keelpeerpb::peer_client::PeerClient;
use std::sync::Arc;
use tonic::transport::Channel;
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

impl ClusterService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Cluster.MemberList.
    pub fn member_list(&self) -> Result<MemberListResponse> {
        let mut members = self.shared.replica()?.members();
        if members.is_empty() {
            // Raft has not loaded its first membership yet: this member is all it knows.
            let id = &self.shared.identity;
            members.push(Member {
                id: id.member_id.0,
                name: id.name.clone(),
                peer_ur_ls: id.peer_urls.clone(),
                client_ur_ls: id.client_urls.clone(),
                is_learner: false,
            });
        }
        // etcd's Cluster service leaves the revision out of its headers.
        Ok(MemberListResponse { header: self.shared.header(0), members })
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(&self, req: MemberAddRequest) -> Result<MemberAddResponse> {
        let shared = &self.shared;
        let mut r = super::on_leader!(self.shared, |_r| add_here(shared, req.clone()), |mut c: PeerClient<Channel>| {
            let req = req.clone();
            async move { c.member_add(req).await }
        })?;
        r.header = self.shared.header(0);
        Ok(r)
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, req: MemberRemoveRequest) -> Result<MemberRemoveResponse> {
        super::on_leader!(self.shared, |r| r.remove_member(req.id), |mut c: PeerClient<Channel>| async move {
            c.member_remove(req).await.map(|r| r.map(|_| ()))
        })?;
        Ok(MemberRemoveResponse { header: self.shared.header(0), members: self.shared.replica()?.members() })
    }

    /// Cluster.MemberUpdate.
    pub async fn member_update(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        super::on_leader!(self.shared, |r| r.update_member(req.id, req.peer_ur_ls.clone()), |mut c: PeerClient<Channel>| {
            let req = req.clone();
            async move { c.member_update(req).await.map(|r| r.map(|_| ())) }
        })?;
        Ok(MemberUpdateResponse { header: self.shared.header(0), members: self.shared.replica()?.members() })
    }

    /// Cluster.MemberPromote.
    pub async fn member_promote(&self, req: MemberPromoteRequest) -> Result<MemberPromoteResponse> {
        super::on_leader!(self.shared, |r| r.promote_member(req.id), |mut c: PeerClient<Channel>| async move {
            c.member_promote(req).await.map(|r| r.map(|_| ()))
        })?;
        Ok(MemberPromoteResponse { header: self.shared.header(0), members: self.shared.replica()?.members() })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.shared.metrics.count("MemberList");
        // etcd 3.5's `linearizable`: the list reflects every change committed before the call
        // (found by the simulation: a member that had not applied a removal still listed it).
        if request.get_ref().linearizable {
            super::read_barrier(&self.shared).await?;
        }
        grpc(ClusterService::member_list(self))
    }

    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("MemberAdd");
        grpc(ClusterService::member_add(self, request.into_inner()).await)
    }

    async fn member_remove(&self, request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("MemberRemove");
        grpc(ClusterService::member_remove(self, request.into_inner()).await)
    }

    async fn member_update(&self, request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("MemberUpdate");
        grpc(ClusterService::member_update(self, request.into_inner()).await)
    }

    async fn member_promote(&self, request: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        self.shared.require_admin(&super::auth::caller(&request)).await?;
        self.shared.metrics.count("MemberPromote");
        grpc(ClusterService::member_promote(self, request.into_inner()).await)
    }
}
