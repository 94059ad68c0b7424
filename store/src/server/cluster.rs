//! The Cluster service for one member: MemberList answers with this member; membership changes
//! come with replication.

use super::state::Shared;
use super::unimplemented;
use keel_proto::etcdserverpb::cluster_server::Cluster;
use keel_proto::etcdserverpb::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// etcd's Cluster service.
#[derive(Clone)]
pub struct ClusterService {
    shared: Arc<Shared>,
}

impl ClusterService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Cluster.MemberList.
    pub fn member_list(&self) -> MemberListResponse {
        let id = &self.shared.identity;
        MemberListResponse {
            // etcd's Cluster service leaves the revision out of its headers.
            header: self.shared.header(0),
            members: vec![Member {
                id: id.member_id.0,
                name: id.name.clone(),
                peer_ur_ls: id.peer_urls.clone(),
                client_ur_ls: id.client_urls.clone(),
                is_learner: false,
            }],
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, _request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.shared.metrics.count("MemberList");
        Ok(Response::new(ClusterService::member_list(self)))
    }

    async fn member_add(&self, _request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(unimplemented("Cluster.MemberAdd"))
    }

    async fn member_remove(&self, _request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(unimplemented("Cluster.MemberRemove"))
    }

    async fn member_update(&self, _request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(unimplemented("Cluster.MemberUpdate"))
    }

    async fn member_promote(&self, _request: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(unimplemented("Cluster.MemberPromote"))
    }
}
