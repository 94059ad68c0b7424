//! The KV service: Range is served from the state machine at the visible revision (after a
//! read barrier unless serializable); Put, DeleteRange, Txn and Compact are validated here and
//! proposed through Raft.

use super::context::Context;
use super::rpc::Rpc;
use super::{caller, grpc, propose_at};
use crate::apply::{Command, FromOutput, txn, validate};
use crate::auth::{Authz, Caller};
use crate::error::{Error, Result};
use keel_proto::etcdserverpb::kv_server::Kv;
use keel_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    TxnRequest, TxnResponse,
};
use prost::Message;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Bytes etcd adds around a request when it wraps it for Raft; the size limit applies to the
/// wrapped request, so a value just under `--max-request-bytes` is already too large.
const RAFT_WRAPPER_BYTES: usize = 16;

/// Reads whose rights changed while they ran are redone this many times (etcd's doSerialize).
const AUTH_RETRIES: usize = 3;

/// etcd's KV service.
#[derive(Clone)]
pub struct KvService {
    ctx: Arc<Context>,
}

impl KvService {
    /// The KV service of the member `ctx` serves.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// KV.Range. Rights are checked after the read barrier, so against every auth change
    /// acknowledged before the read.
    pub async fn range(&self, req: &RangeRequest, caller: &Caller) -> Result<RangeResponse> {
        self.ctx.gate(Rpc::Range, req.serializable)?;
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if !req.serializable {
            self.ctx.read_barrier().await?;
        }
        self.read_checked(
            Rpc::Range,
            caller,
            |a| a.check_range(req),
            || {
                let (plan, at) = {
                    let sm = self.ctx.applied.read_state();
                    let at = self.ctx.applied.visible();
                    (sm.mvcc.plan_range(req, at)?, at)
                };
                // Values are read without the state lock: a large range does not hold up writers.
                let r = plan.load(req)?;
                Ok(RangeResponse { header: self.ctx.header(at), kvs: r.kvs, more: r.more, count: r.count })
            },
        )
        .await
    }

    /// Check `caller` with `check`, then `read`; redo both when the caller's rights changed
    /// meanwhile (etcd's doSerialize), so a read never returns data it was not checked for.
    async fn read_checked<T>(
        &self,
        rpc: Rpc,
        caller: &Caller,
        check: impl Fn(&Authz) -> Result<()>,
        read: impl Fn() -> Result<T>,
    ) -> Result<T> {
        for _ in 0..AUTH_RETRIES {
            let authz = self.ctx.admit(rpc, caller).await?;
            check(&authz)?;
            let r = read()?;
            if self.ctx.applied.auth_unchanged_since(&authz) {
                return Ok(r);
            }
        }
        Err(Error::AuthOldRevision)
    }

    /// Validate, check the caller's rights, propose and wait for a mutation.
    async fn mutate<T: FromOutput>(&self, rpc: Rpc, cmd: Command, encoded_len: usize, caller: &Caller) -> Result<T> {
        self.ctx.gate(rpc, false)?;
        validate(&cmd, self.ctx.limits.max_txn_ops)?;
        if encoded_len + RAFT_WRAPPER_BYTES > self.ctx.limits.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let authz = self.ctx.admit(rpc, caller).await?;
        // The keys of a lease a put joins are checked when it is applied (they may change).
        match &cmd {
            Command::Put(r) => authz.check_put(r)?,
            Command::DeleteRange(r) => authz.check_delete(r)?,
            Command::Txn(t) => authz.check_txn(t)?,
            _ => {}
        }
        propose_at(&self.ctx, cmd, authz.guard()).await
    }

    /// etcd's learner refusal for `rpc`, for the services built on KV (lock, election).
    pub fn gate(&self, rpc: Rpc) -> Result<()> {
        self.ctx.gate(rpc, false)
    }

    /// Check that `caller` may read (and with `write`, also write) every key of the range;
    /// for services built on KV (lock, election) that then act as the member.
    pub async fn check(&self, caller: &Caller, key: &[u8], range_end: &[u8], write: bool) -> Result<()> {
        let authz = self.ctx.authorize(caller).await?;
        authz.check_read(key, range_end)?;
        if write { authz.check_write(key, range_end) } else { Ok(()) }
    }

    /// KV.Put.
    pub async fn put(&self, req: PutRequest, caller: &Caller) -> Result<PutResponse> {
        let len = req.encoded_len();
        self.mutate(Rpc::Put, Command::Put(req), len, caller).await
    }

    /// KV.DeleteRange.
    pub async fn delete_range(&self, req: DeleteRangeRequest, caller: &Caller) -> Result<DeleteRangeResponse> {
        let len = req.encoded_len();
        self.mutate(Rpc::DeleteRange, Command::DeleteRange(req), len, caller).await
    }

    /// KV.Txn. A txn that writes nothing is served as a read, without a log entry.
    pub async fn txn(&self, req: TxnRequest, caller: &Caller) -> Result<TxnResponse> {
        if !txn::has_writes(&req) {
            self.ctx.gate(Rpc::Txn, false)?;
            txn::validate(&req, self.ctx.limits.max_txn_ops)?;
            if !txn::all_serializable(&req) {
                self.ctx.read_barrier().await?;
            }
            return self
                .read_checked(
                    Rpc::Txn,
                    caller,
                    |a| a.check_txn(&req),
                    || {
                        let sm = self.ctx.applied.read_state();
                        let at = self.ctx.applied.visible();
                        let mut r = txn::read_only(&sm, &req, at)?;
                        r.header = self.ctx.header(at);
                        Ok(r)
                    },
                )
                .await;
        }
        let len = req.encoded_len();
        self.mutate(Rpc::Txn, Command::Txn(req), len, caller).await
    }

    /// KV.Compact (the root role only, while auth is on).
    pub async fn compact(&self, req: CompactionRequest, caller: &Caller) -> Result<CompactionResponse> {
        let len = req.encoded_len();
        self.mutate(Rpc::Compact, Command::Compact(req), len, caller).await
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        grpc(KvService::range(self, request.get_ref(), &caller(&request)).await)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let c = caller(&request);
        grpc(KvService::put(self, request.into_inner(), &c).await)
    }

    async fn delete_range(&self, request: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let c = caller(&request);
        grpc(KvService::delete_range(self, request.into_inner(), &c).await)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let c = caller(&request);
        grpc(KvService::txn(self, request.into_inner(), &c).await)
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let c = caller(&request);
        grpc(KvService::compact(self, request.into_inner(), &c).await)
    }
}
