//! The Cluster service: membership from the Raft configuration. Changes are made by the leader;
//! another member passes them on over the peer protocol and answers with the leader's result.

use super::context::Context;
use super::rpc::Rpc;
use super::{caller, grpc};
use crate::auth::Caller;
use crate::config::urls::member_urls;
use crate::error::{Error, Result};
use crate::types::{MemberId, Revision};
use keel_proto::etcdserverpb::cluster_server::Cluster;
use keel_proto::etcdserverpb::*;
use keel_proto::keelpeerpb::peer_client::PeerClient;
use std::sync::Arc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// etcd's Cluster service leaves the revision out of its headers.
const NO_REVISION: Revision = Revision(0);

/// etcd's Cluster service.
#[derive(Clone)]
pub struct ClusterService {
    ctx: Arc<Context>,
}

/// MemberAdd on the leader: etcd's ID for the peer URLs at this second, the member added, the
/// new list.
pub async fn add_here(ctx: &Context, req: MemberAddRequest) -> Result<MemberAddResponse> {
    // etcd stores (and answers with) the peer URLs as `types.NewURLs` leaves them: sorted.
    let urls = member_urls(&req.peer_ur_ls).ok_or(Error::MemberBadUrls)?;
    let id = (ctx.identity.added_member_id)(&urls, ctx.clock.unix_secs());
    let member = ctx.replica.add_member(id, urls, req.is_learner).await?;
    Ok(MemberAddResponse { header: ctx.header(NO_REVISION), member: Some(member), members: ctx.replica.members() })
}

/// The members as the applied membership lists them, or this member alone while Raft has not
/// loaded its first membership yet.
pub(crate) fn known_members(ctx: &Context) -> Vec<Member> {
    let mut members = ctx.replica.members();
    if members.is_empty() {
        let id = &ctx.identity;
        members.push(Member {
            id: id.member_id.0,
            name: id.name.clone(),
            peer_ur_ls: id.peer_urls.clone(),
            client_ur_ls: id.client_urls.clone(),
            is_learner: false,
        });
    }
    members
}

impl ClusterService {
    /// The Cluster service of the member `ctx` serves.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// Cluster.MemberList. With `linearizable` (etcd 3.5), the list reflects every change
    /// committed before the call (found by the simulation: a member that had not applied a
    /// removal still listed it).
    pub async fn member_list(&self, req: &MemberListRequest) -> Result<MemberListResponse> {
        self.ctx.gate(Rpc::MemberList, false)?;
        if req.linearizable {
            self.ctx.read_barrier().await?;
        }
        Ok(MemberListResponse { header: self.ctx.header(NO_REVISION), members: known_members(&self.ctx) })
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(&self, req: MemberAddRequest, caller: &Caller) -> Result<MemberAddResponse> {
        // etcd checks the URLs first, in the gRPC handler.
        member_urls(&req.peer_ur_ls).ok_or(Error::MemberBadUrls)?;
        self.ctx.enter(Rpc::MemberAdd, caller).await?;
        let ctx = &self.ctx;
        let mut r = super::on_leader!(self.ctx, |_r| add_here(ctx, req.clone()), |mut c: PeerClient<Channel>| {
            let req = req.clone();
            async move { c.member_add(req).await }
        })?;
        r.header = self.ctx.header(NO_REVISION);
        Ok(r)
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, req: MemberRemoveRequest, caller: &Caller) -> Result<MemberRemoveResponse> {
        self.ctx.enter(Rpc::MemberRemove, caller).await?;
        super::on_leader!(self.ctx, |r| r.remove_member(MemberId(req.id)), |mut c: PeerClient<Channel>| async move {
            c.member_remove(req).await.map(|r| r.map(|_| ()))
        })?;
        Ok(MemberRemoveResponse { header: self.ctx.header(NO_REVISION), members: self.ctx.replica.members() })
    }

    /// Cluster.MemberUpdate. Malformed peer URLs are refused as MemberAdd refuses them (etcd
    /// takes them, and panics applying them); well-formed ones are stored as written, as etcd does.
    pub async fn member_update(&self, req: MemberUpdateRequest, caller: &Caller) -> Result<MemberUpdateResponse> {
        member_urls(&req.peer_ur_ls).ok_or(Error::MemberBadUrls)?;
        self.ctx.enter(Rpc::MemberUpdate, caller).await?;
        super::on_leader!(self.ctx, |r| r.update_member(MemberId(req.id), req.peer_ur_ls.clone()), |mut c: PeerClient<Channel>| {
            let req = req.clone();
            async move { c.member_update(req).await.map(|r| r.map(|_| ())) }
        })?;
        Ok(MemberUpdateResponse { header: self.ctx.header(NO_REVISION), members: self.ctx.replica.members() })
    }

    /// Cluster.MemberPromote.
    pub async fn member_promote(&self, req: MemberPromoteRequest, caller: &Caller) -> Result<MemberPromoteResponse> {
        self.ctx.enter(Rpc::MemberPromote, caller).await?;
        super::on_leader!(self.ctx, |r| r.promote_member(MemberId(req.id)), |mut c: PeerClient<Channel>| async move {
            c.member_promote(req).await.map(|r| r.map(|_| ()))
        })?;
        Ok(MemberPromoteResponse { header: self.ctx.header(NO_REVISION), members: self.ctx.replica.members() })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        grpc(ClusterService::member_list(self, request.get_ref()).await)
    }

    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let c = caller(&request);
        grpc(ClusterService::member_add(self, request.into_inner(), &c).await)
    }

    async fn member_remove(&self, request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let c = caller(&request);
        grpc(ClusterService::member_remove(self, request.into_inner(), &c).await)
    }

    async fn member_update(&self, request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let c = caller(&request);
        grpc(ClusterService::member_update(self, request.into_inner(), &c).await)
    }

    async fn member_promote(&self, request: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        let c = caller(&request);
        grpc(ClusterService::member_promote(self, request.into_inner(), &c).await)
    }
}
