//! etcd's v3lock service (`v3lockpb.Lock`): a distributed lock held through a lease, served on
//! the member with the queueing recipe. Lock blocks until the caller is first in line; the lock
//! is released by Unlock or when the lease ends.

use super::kv::KvService;
use super::recipe::{self, KeyGuard};
use super::rpc::Rpc;
use super::watch::WatchService;
use super::{caller, grpc};
use crate::auth::Caller;
use crate::error::{Error, Result};
use keel_proto::etcdserverpb::DeleteRangeRequest;
use keel_proto::v3lockpb::lock_server::Lock;
use keel_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

/// The Lock service.
#[derive(Clone)]
pub struct LockService {
    kv: KvService,
    watch: WatchService,
}

impl LockService {
    /// A service over the member's KV and Watch.
    pub fn new(kv: KvService, watch: WatchService) -> Self {
        Self { kv, watch }
    }

    /// Lock.Lock: wait until the lock is ours; returns the key that stands for it.
    pub async fn lock(&self, req: LockRequest, caller: &Caller) -> Result<LockResponse> {
        self.kv.gate(Rpc::Lock)?;
        if req.name.is_empty() {
            return Err(Error::EmptyKey);
        }
        let prefix = recipe::queue_prefix(&req.name);
        self.kv.check(caller, &prefix, &recipe::prefix_end(&prefix), true).await?;
        let key = recipe::contender_key(&req.name, req.lease);
        let (mine, _) = recipe::create_or_get(&self.kv, key.clone(), Default::default(), req.lease, caller).await?;
        let guard = KeyGuard::new(self.kv.clone(), key.clone());
        let header = recipe::wait_turn(&self.kv, &self.watch, &req.name, key.clone(), mine.create_revision, guard).await?;
        Ok(LockResponse { header, key })
    }

    /// Lock.Unlock.
    pub async fn unlock(&self, req: UnlockRequest, caller: &Caller) -> Result<UnlockResponse> {
        self.kv.gate(Rpc::Unlock)?;
        self.kv.check(caller, &req.key, &[], true).await?;
        let r = self.kv.delete_range(DeleteRangeRequest { key: req.key, ..Default::default() }, caller).await?;
        Ok(UnlockResponse { header: r.header })
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let c = caller(&request);
        grpc(LockService::lock(self, request.into_inner(), &c).await)
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let c = caller(&request);
        grpc(LockService::unlock(self, request.into_inner(), &c).await)
    }
}
