//! The Lease service, and the expiry task that revokes leases whose deadline passed.
//!
//! Deadlines are kept by every member but only the leader acts on them: it serves keep-alives
//! and TimeToLive (other members pass them to it) and proposes the revoke of an expired lease.
//! A member that becomes leader first extends every deadline to a full TTL from then, so a
//! leader change never shortens a lease (etcd's behaviour without lease checkpoints).

use super::context::Context;
use super::rpc::Rpc;
use super::{caller, grpc, propose_as, propose_at};
use crate::apply::Command;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::types::LeaseId;
use futures::Stream;
use keel_proto::etcdserverpb::lease_server::Lease;
use keel_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use keel_proto::keelpeerpb::peer_client::PeerClient;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// How often the expiry task looks for expired leases.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// etcd's Lease service.
#[derive(Clone)]
pub struct LeaseService {
    ctx: Arc<Context>,
}

/// A stream of keep-alive responses.
pub type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

impl LeaseService {
    /// The Lease service of the member `ctx` serves.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// Lease.LeaseGrant.
    pub async fn grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        self.ctx.gate(Rpc::LeaseGrant, false)?;
        let id = if req.id == 0 { self.ctx.next_id() } else { req.id };
        propose_as(&self.ctx, Command::LeaseGrant(LeaseGrantRequest { id, ttl: req.ttl })).await
    }

    /// Lease.LeaseRevoke: revoking deletes the lease's keys, so it needs write rights on each,
    /// checked when it is applied (the state machine's `check_lease_rights`).
    pub async fn revoke(&self, req: LeaseRevokeRequest, caller: &Caller) -> Result<LeaseRevokeResponse> {
        let authz = self.ctx.enter(Rpc::LeaseRevoke, caller).await?;
        propose_at(&self.ctx, Command::LeaseRevoke(req), authz.guard()).await
    }

    /// One keep-alive, served by the leader: the TTL, or 0 when the lease is gone (not an
    /// error, as in etcd).
    pub async fn keep_alive_once(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse> {
        self.ctx.gate(Rpc::LeaseKeepAlive, false)?;
        let mut r = super::on_leader!(self.ctx, |_r| self.keep_alive_here(id), |mut c: PeerClient<Channel>| async move {
            c.lease_keep_alive(LeaseKeepAliveRequest { id: id.0 }).await
        })?;
        r.header = self.ctx.header_now();
        Ok(r)
    }

    /// A keep-alive on this member, once a quorum confirmed it still leads: a deposed leader
    /// that has not noticed yet would renew a lease only in its own memory while the real
    /// leader lets it expire (found by the simulation; etcd also makes sure it leads first).
    /// It also waits until everything committed before it is applied here, as etcd's leader
    /// applies its pending committed entries before a lease renewal or look-up (etcd-io/etcd
    /// #6978): a leader just elected (after every member restarted, say) may not have applied
    /// the grant of the very lease yet, and would call a live lease gone (found by the
    /// simulation, crash seed 185).
    pub async fn keep_alive_here(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse> {
        let replica = &self.ctx.replica;
        let deadline = tokio::time::Instant::now() + super::REQUEST_TIMEOUT;
        let read = replica.leader_read_index(deadline).await?;
        self.ctx.applied.wait_applied(read, deadline).await?;
        let term = replica.leader_term().ok_or(Error::NotLeader)?;
        let applied = &self.ctx.applied;
        let durable = applied.applied_index();
        let now = applied.lease_now();
        let ttl = {
            let mut sm = applied.write_state();
            sm.leases.lead(term, now);
            sm.leases.renew(id, now, durable).unwrap_or(0)
        };
        Ok(LeaseKeepAliveResponse { header: self.ctx.header_now(), id: id.0, ttl })
    }

    /// Lease.LeaseTimeToLive, answered with the leader's deadline. An unknown lease answers
    /// TTL -1, as etcd does.
    /// With `keys`, the caller must be allowed to read every attached key (etcd 3.4 shows them
    /// to anyone; Keel does not).
    pub async fn time_to_live(&self, req: &LeaseTimeToLiveRequest, caller: &Caller) -> Result<LeaseTimeToLiveResponse> {
        let req = *req;
        let authz = self.ctx.enter(Rpc::LeaseTimeToLive, caller).await?;
        let r = super::on_leader!(
            self.ctx,
            |_r| async {
                // Everything committed applied first, as for a keep-alive.
                self.ctx.read_barrier().await?;
                Ok(self.time_to_live_here(&req))
            },
            |mut c: PeerClient<Channel>| async move { c.lease_time_to_live(req).await }
        )?;
        r.keys.iter().try_for_each(|k| authz.check_read(k, &[]))?;
        Ok(r)
    }

    /// LeaseTimeToLive on this member (the leader).
    pub fn time_to_live_here(&self, req: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let applied = &self.ctx.applied;
        let sm = applied.read_state();
        let header = self.ctx.header_now();
        match sm.leases.visible(LeaseId(req.id), applied.applied_index()) {
            Some(l) => LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: l.expiry.saturating_duration_since(applied.lease_now()).as_secs() as i64,
                granted_ttl: l.ttl,
                keys: if req.keys { l.keys.iter().cloned().collect() } else { Vec::new() },
            },
            None => LeaseTimeToLiveResponse { header, id: req.id, ttl: -1, granted_ttl: 0, keys: Vec::new() },
        }
    }

    /// Lease.LeaseLeases.
    pub fn leases(&self) -> Result<LeaseLeasesResponse> {
        self.ctx.gate(Rpc::LeaseLeases, false)?;
        let applied = &self.ctx.applied;
        let sm = applied.read_state();
        Ok(LeaseLeasesResponse {
            header: self.ctx.header_now(),
            leases: sm.leases.visible_ids(applied.applied_index()).into_iter().map(|id| LeaseStatus { id: id.0 }).collect(),
        })
    }

    /// Serve a keep-alive stream.
    pub fn keep_alive_stream<S>(&self, mut requests: S) -> KeepAliveStream
    where
        S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = requests.next().await {
                let resp = svc.keep_alive_once(LeaseId(req.id)).await.map_err(Status::from);
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    break;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

/// On the leader, revoke leases whose deadline passed, one proposal each, until the member
/// stops.
pub async fn run_expiry(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        // Keyed by term, not by "leads now or not": a leader cut off long enough to lose the
        // lead without noticing, then elected again, must extend again (found by the
        // simulation).
        let Some(term) = ctx.replica.leader_term() else { continue };
        let applied = &ctx.applied;
        if applied.write_state().leases.lead(term, applied.lease_now()) {
            tracing::info!(term = term.0, "leading: every lease deadline extended to a full TTL from now");
        }
        let expired = applied.read_state().leases.expired(applied.lease_now());
        // Revoked concurrently, so a thousand leases expiring together share groups and fsyncs.
        let revokes = expired.into_iter().map(|id| {
            let ctx = ctx.clone();
            async move {
                // Proposed here or not at all: what this member decided from its own clock must
                // not be carried out by another leader, which may have renewed the lease since
                // (found by the simulation). A deposed leader's proposal cannot commit.
                let cmd = Command::LeaseRevoke(LeaseRevokeRequest { id: id.0 });
                let proposed = ctx.replica.propose_if_leader(&cmd, tokio::time::Instant::now() + super::REQUEST_TIMEOUT).await;
                match proposed {
                    Ok(_) | Err(Error::LeaseNotFound) => tracing::debug!(lease = %id, "lease expired"),
                    Err(Error::NotLeader) => tracing::debug!(lease = %id, "no longer leading: expiry left to the leader"),
                    Err(e) => tracing::warn!(lease = %id, error = %e, "revoking an expired lease failed"),
                }
            }
        });
        futures::future::join_all(revokes).await;
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        grpc(self.grant(request.into_inner()).await)
    }

    async fn lease_revoke(&self, request: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let c = caller(&request);
        grpc(self.revoke(request.into_inner(), &c).await)
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.ctx.gate(Rpc::LeaseKeepAlive, false)?;
        Ok(Response::new(self.keep_alive_stream(request.into_inner())))
    }

    async fn lease_time_to_live(&self, request: Request<LeaseTimeToLiveRequest>) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        grpc(self.time_to_live(request.get_ref(), &caller(&request)).await)
    }

    async fn lease_leases(&self, _request: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        grpc(self.leases())
    }
}
