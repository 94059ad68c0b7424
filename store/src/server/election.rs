//! etcd's v3election service (`v3electionpb.Election`): leader election through leases, served
//! on the member with the queueing recipe. The leader is the campaigner whose key under
//! `<name>/` was created first; its key's create revision (`LeaderKey.rev`) is a fencing token.

use super::kv::KvService;
use super::recipe::{self, KeyGuard};
use super::rpc::Rpc;
use super::watch::WatchService;
use super::{caller, grpc};
use crate::auth::Caller;
use crate::error::{Error, Result};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest};
use keel_proto::mvccpb::event::EventType;
use keel_proto::v3electionpb::election_server::Election;
use keel_proto::v3electionpb::*;
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The Election service.
#[derive(Clone)]
pub struct ElectionService {
    kv: KvService,
    watch: WatchService,
}

/// The Observe stream type.
pub type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

fn still_leader(leader: &LeaderKey) -> Compare {
    Compare {
        key: leader.key.clone(),
        target: CompareTarget::Create as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::CreateRevision(leader.rev)),
        range_end: Bytes::new(),
    }
}

impl ElectionService {
    /// A service over the member's KV and Watch.
    pub fn new(kv: KvService, watch: WatchService) -> Self {
        Self { kv, watch }
    }

    /// Election.Campaign: wait until the caller leads.
    pub async fn campaign(&self, req: CampaignRequest, caller: &Caller) -> Result<CampaignResponse> {
        self.kv.gate(Rpc::Campaign)?;
        if req.name.is_empty() {
            return Err(Error::EmptyKey);
        }
        let prefix = recipe::queue_prefix(&req.name);
        self.kv.check(caller, &prefix, &recipe::prefix_end(&prefix), true).await?;
        let key = recipe::contender_key(&req.name, req.lease);
        let (mine, _) = recipe::create_or_get(&self.kv, key.clone(), req.value.clone(), req.lease, caller).await?;
        let guard = KeyGuard::new(self.kv.clone(), key.clone());
        let leader = LeaderKey { name: req.name.clone(), key: key.clone(), rev: mine.create_revision, lease: req.lease };
        if mine.value != req.value {
            // Campaigning again with the same lease announces the new value.
            self.proclaim(ProclaimRequest { leader: Some(leader.clone()), value: req.value }, caller).await?;
        }
        let header = recipe::wait_turn(&self.kv, &self.watch, &req.name, key, mine.create_revision, guard).await?;
        Ok(CampaignResponse { header, leader: Some(leader) })
    }

    /// Election.Proclaim: change the leader's value, only while still leading.
    pub async fn proclaim(&self, req: ProclaimRequest, caller: &Caller) -> Result<ProclaimResponse> {
        self.kv.gate(Rpc::Proclaim)?;
        let leader = req.leader.ok_or(Error::MissingLeaderKey)?;
        self.kv.check(caller, &leader.key, &[], true).await?;
        let put = PutRequest { key: leader.key.clone(), value: req.value, ignore_lease: true, ..Default::default() };
        let txn = TxnRequest {
            compare: vec![still_leader(&leader)],
            success: vec![RequestOp { request: Some(Op::RequestPut(put)) }],
            failure: vec![],
        };
        let r = self.kv.txn(txn, caller).await?;
        if !r.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(ProclaimResponse { header: r.header })
    }

    /// Election.Leader: the current leader's key-value.
    pub async fn leader(&self, req: &LeaderRequest, caller: &Caller) -> Result<LeaderResponse> {
        self.kv.gate(Rpc::Leader)?;
        let prefix = recipe::queue_prefix(&req.name);
        self.kv.check(caller, &prefix, &recipe::prefix_end(&prefix), false).await?;
        let kv = recipe::first_created(&self.kv, &prefix).await?.ok_or(Error::ElectionNoLeader)?;
        let header = self
            .kv
            .range(
                &keel_proto::etcdserverpb::RangeRequest { key: kv.key.clone(), count_only: true, ..Default::default() },
                &Caller::member(),
            )
            .await?
            .header;
        Ok(LeaderResponse { header, kv: Some(kv) })
    }

    /// Election.Resign: give up leadership (a no-op for a caller that no longer leads).
    pub async fn resign(&self, req: ResignRequest, caller: &Caller) -> Result<ResignResponse> {
        self.kv.gate(Rpc::Resign)?;
        let leader = req.leader.ok_or(Error::MissingLeaderKey)?;
        self.kv.check(caller, &leader.key, &[], true).await?;
        let del = DeleteRangeRequest { key: leader.key.clone(), ..Default::default() };
        let txn = TxnRequest {
            compare: vec![still_leader(&leader)],
            success: vec![RequestOp { request: Some(Op::RequestDeleteRange(del)) }],
            failure: vec![],
        };
        Ok(ResignResponse { header: self.kv.txn(txn, caller).await?.header })
    }

    /// Election.Observe: the leader now, then every change of leader or of its value.
    pub fn observe(&self, req: LeaderRequest, caller: Caller) -> Result<ObserveStream> {
        self.kv.gate(Rpc::Observe)?;
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        tokio::spawn(async move {
            let prefix = recipe::queue_prefix(&req.name);
            loop {
                let current = match svc.leader(&req, &caller).await {
                    Ok(r) => r,
                    Err(Error::ElectionNoLeader) => {
                        svc.wait_prefix_put(&prefix).await;
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                let Some(kv) = current.kv.clone() else { return };
                if tx.send(Ok(current)).await.is_err() {
                    return;
                }
                if !svc.follow(&kv.key, kv.mod_revision + 1, &tx).await {
                    return;
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    fn watch_from(&self, create: WatchCreateRequest) -> std::result::Result<super::watch::ResponseStream, Status> {
        let first = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        self.watch.open(Box::pin(futures::stream::iter([Ok(first)]).chain(futures::stream::pending())), Caller::member())
    }

    async fn wait_prefix_put(&self, prefix: &Bytes) {
        let create = WatchCreateRequest { key: prefix.clone(), range_end: recipe::prefix_end(prefix), ..Default::default() };
        let Ok(mut w) = self.watch_from(create) else { return };
        while let Some(Ok(r)) = w.next().await {
            if r.canceled || r.events.iter().any(|e| e.r#type == EventType::Put as i32) {
                return;
            }
        }
    }

    /// Send the leader key's new values until it is deleted (true) or the observer left (false).
    async fn follow(&self, key: &Bytes, from: i64, tx: &mpsc::Sender<std::result::Result<LeaderResponse, Status>>) -> bool {
        let Ok(mut w) = self.watch_from(WatchCreateRequest { key: key.clone(), start_revision: from, ..Default::default() }) else {
            return false;
        };
        while let Some(Ok(r)) = w.next().await {
            if r.canceled {
                return true;
            }
            for e in r.events {
                if e.r#type == EventType::Delete as i32 {
                    return true;
                }
                if tx.send(Ok(LeaderResponse { header: r.header, kv: e.kv })).await.is_err() {
                    return false;
                }
            }
        }
        false
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = ObserveStream;

    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let c = caller(&request);
        grpc(ElectionService::campaign(self, request.into_inner(), &c).await)
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let c = caller(&request);
        grpc(ElectionService::proclaim(self, request.into_inner(), &c).await)
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        grpc(ElectionService::leader(self, request.get_ref(), &caller(&request)).await)
    }

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let c = caller(&request);
        grpc(ElectionService::observe(self, request.into_inner(), c))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let c = caller(&request);
        grpc(ElectionService::resign(self, request.into_inner(), &c).await)
    }
}
