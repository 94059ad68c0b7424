//! The composition of one member: open state from a backend and a Raft directory, start Raft
//! and the background tasks, and serve gRPC and HTTP on the listeners it is given (clients) and
//! the peer service (peers). Callers (the binary, tests, the simulation) choose the listeners,
//! the backend, the directory and the randomness.
//!
//! - [`identity`]: this member's and the cluster's IDs, and how this start relates to the
//!   cluster.
//!
//! The order of construction is the dependency order: the state machine, then the [`Applied`]
//! core over it, the Raft log, openraft with the state machine store, the [`Replica`], the
//! services' [`Context`], the services, the background tasks. Nothing built later is reached
//! from something built earlier.

pub mod identity;
pub mod sha1;

use crate::applied::Applied;
use crate::apply::StateMachine;
use crate::config::{AutoCompaction, Config};
use crate::error::{Error, Internal, Result};
use crate::http::{self, HttpState};
use crate::raft::log_store::{LogDisk, LogStore, Syncer};
use crate::raft::network::{Network, Peers};
use crate::raft::state_machine::SmStore;
use crate::raft::{self, Replica};
use crate::seams::Seams;
use crate::server::Services;
use crate::server::context::{Context, Identity, Limits};
use crate::server::grpc_limit;
use crate::server::lease as lease_svc;
use crate::server::maintenance as maintenance_svc;
use crate::server::metrics::RpcMetricsLayer;
use crate::server::peer::PeerService;
use crate::storage::Backend;
use crate::types::Term;
use crate::watch::syncer;
use futures::Stream;
use identity::{Start, identify};
use keel_proto::etcdserverpb::auth_server::AuthServer;
use keel_proto::etcdserverpb::cluster_server::ClusterServer;
use keel_proto::etcdserverpb::kv_server::KvServer;
use keel_proto::etcdserverpb::lease_server::LeaseServer;
use keel_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use keel_proto::etcdserverpb::watch_server::WatchServer;
use keel_proto::etcdserverpb::{CompactionRequest, Member as EtcdMember, RangeRequest};
use keel_proto::keelpeerpb::peer_server::PeerServer;
use keel_proto::v3electionpb::election_server::ElectionServer;
use keel_proto::v3lockpb::lock_server::LockServer;
use openraft::async_runtime::WatchReceiver;
use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::server::Connected;

/// gRPC messages may exceed `--max-request-bytes` by this much on the wire, as in etcd, so the
/// store (not the transport) answers "request is too large".
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How long a stopping member lets requests in flight finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the backend is flushed, so a restart re-applies little of the log.
const BACKEND_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// A running member, before it serves. Dropping it stops its tasks and its log syncer.
pub struct Member {
    /// What it has applied.
    pub applied: Arc<Applied>,
    /// What its services work with.
    pub ctx: Arc<Context>,
    /// Service objects.
    pub services: Services,
    /// Replication.
    pub replica: Arc<Replica>,
    peer: PeerService,
    published: tokio::sync::watch::Receiver<bool>,
    tasks: JoinSet<()>,
    /// Owns the Raft log's syncer; declared after `tasks` so the tasks stop first.
    _syncer: Syncer,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Member {
    /// Open the member's state on `backend` and its Raft log and snapshots in `raft_dir`, start
    /// Raft and the background tasks.
    /// The state machine lives on `backend`, the Raft log on `raft_log`, snapshots in
    /// `raft_dir`; `seams` bring randomness, the peer dialer and wall-clock time.
    pub async fn start(
        cfg: &Config,
        backend: Arc<dyn Backend>,
        raft_log: Arc<dyn LogDisk>,
        raft_dir: &Path,
        seams: Seams,
    ) -> Result<Member> {
        let Seams { mut rng, dialer, clock, bugs, lease_clock } = seams;
        let peers = Peers::new(dialer);
        let (member_id, cluster_id, start) = identify(cfg, &*backend, &peers).await?;
        let mut sm = StateMachine::open(backend.clone(), cfg.min_lease_ttl(), lease_clock.now())?;
        let jwt = match crate::auth::tokens::TokenKind::parse(&cfg.auth_token).map_err(Error::InvalidArgument)? {
            crate::auth::tokens::TokenKind::Jwt(jwt) => Some(Arc::new(jwt.with_clock(clock.clone()))),
            crate::auth::tokens::TokenKind::Simple => None,
        };
        sm.auth.configure_tokens(cfg.auth_token_ttl, jwt);
        // Built first: the state machine writes it, the replica waits on it, the services read it.
        let applied = Arc::new(Applied::new(sm, backend, lease_clock, bugs));
        let storage = |e: std::io::Error| Error::Internal(Internal::Storage(format!("opening the Raft log: {e}")));
        let log = LogStore::open_with_bugs(raft_log, bugs).map_err(storage)?;
        let snap_dir = raft_dir.join("snap");
        let sm_store = SmStore::new(applied.clone(), member_id, snap_dir.clone()).map_err(storage)?;
        let config =
            Arc::new(raft::config(cfg.heartbeat_interval, cfg.election_timeout, cfg.snapshot_count, bugs.replicate_over_reverted_logs)?);
        let network = Network { me: member_id, peers: peers.clone() };
        let syncer = log.start_syncer().map_err(storage)?;
        let raft_seed = rng.next_u64();
        let raft = raft::types::Runtime::scope(raft_seed, raft::Raft::new(member_id, config, network, log, sm_store))
            .await
            .map_err(|e| Error::raft_stopped(format!("starting Raft: {e}")))?;
        let replica = Arc::new(Replica::new(raft.clone(), member_id, peers, applied.clone()));
        if let Start::New(members) = start {
            let initialized = raft.is_initialized().await.map_err(Error::raft_stopped)?;
            if !initialized {
                // Every member of a new cluster initializes with the same membership; whichever
                // runs first starts the election, the others' attempts are refused harmlessly.
                if let Err(e) = raft.initialize(members).await {
                    tracing::debug!(error = %e, "raft initialize");
                }
            }
        }
        let identity = Identity {
            added_member_id: identity::etcd_added_member_id,
            name: cfg.name.clone(),
            member_id,
            cluster_id,
            peer_urls: cfg.initial_advertise_peer_urls.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
        };
        let limits =
            Limits { max_request_bytes: cfg.max_request_bytes, max_txn_ops: cfg.max_txn_ops, quota_backend_bytes: cfg.quota_bytes() };
        let ctx = Arc::new(Context::new(applied.clone(), replica.clone(), identity, limits, (rng, clock), bugs));
        let services = Services::new(&ctx, cfg.bcrypt_cost);
        let mut tasks = JoinSet::new();
        tasks.spawn(run_flusher(applied.clone(), BACKEND_FLUSH_INTERVAL));
        tasks.spawn(syncer::run(applied.clone(), cfg.watch_progress_notify_interval));
        tasks.spawn(lease_svc::run_expiry(ctx.clone()));
        tasks.spawn(maintenance_svc::run_quota_alarm(ctx.clone()));
        tasks.spawn(watch_raft(applied.clone(), replica.clone()));
        let (published_tx, published) = tokio::sync::watch::channel(false);
        tasks.spawn(publish(replica.clone(), cfg.name.clone(), cfg.advertise_client_urls.clone(), published_tx));
        if cfg.auto_compaction != AutoCompaction::Off {
            tasks.spawn(run_compactor(services.kv.clone(), ctx.clone(), cfg.auto_compaction));
        }
        let peer = PeerService::new(ctx.clone(), snap_dir);
        Ok(Member { applied, ctx, services, replica, peer, published, tasks, _syncer: syncer })
    }

    /// Wait until this member's name and client URLs are in the cluster's membership (which
    /// takes a leader, so a quorum). Like etcd, the binary serves clients only after that.
    pub async fn wait_published(&self) {
        let mut rx = self.published.clone();
        let _ = rx.wait_for(|p| *p).await;
    }

    /// Serve the peer service on `incoming` until the member stops.
    pub fn serve_peers<I, IO, IE>(&self, incoming: I) -> impl Future<Output = Result<()>> + Send + 'static
    where
        I: Stream<Item = std::result::Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let svc = PeerServer::new(self.peer.clone()).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX);
        let router = crate::server::date::with_date(tonic::service::Routes::new(svc).into_axum_router(), self.ctx.clock.clone());
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(1)))
            .http2_keepalive_timeout(Some(Duration::from_secs(3)))
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(incoming);
        async move { server.await.map_err(|e| Error::Internal(Internal::Serve(format!("peers: {e}")))) }
    }

    /// Serve `/metrics` and `/health` (only) on `incoming` (`--listen-metrics-urls`).
    pub fn serve_metrics<I, IO, IE>(&self, incoming: I) -> impl Future<Output = Result<()>> + Send + 'static
    where
        I: Stream<Item = std::result::Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let router = http::metrics_router(HttpState { ctx: self.ctx.clone(), services: self.services.clone() });
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(incoming);
        async move { server.await.map_err(|e| Error::Internal(Internal::Serve(format!("metrics: {e}")))) }
    }

    /// The gRPC services and HTTP routes of the client port, every RPC timed and counted by
    /// one layer. Services check their callers themselves (`server::rpc`).
    pub fn routes(&self) -> tonic::service::Routes {
        let max = self.ctx.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let s = &self.services;
        let http = http::router(HttpState { ctx: self.ctx.clone(), services: s.clone() });
        let routes = tonic::service::Routes::from(http)
            .add_service(KvServer::new(s.kv.clone()).max_decoding_message_size(max).max_encoding_message_size(usize::MAX))
            .add_service(WatchServer::new(s.watch.clone()).max_decoding_message_size(max).max_encoding_message_size(usize::MAX))
            .add_service(LeaseServer::new(s.lease.clone()).max_decoding_message_size(max))
            .add_service(ClusterServer::new(s.cluster.clone()).max_decoding_message_size(max))
            .add_service(MaintenanceServer::new(s.maintenance.clone()).max_decoding_message_size(max))
            .add_service(AuthServer::new(s.auth.clone()).max_decoding_message_size(max))
            .add_service(LockServer::new(s.lock.clone()).max_decoding_message_size(max))
            .add_service(ElectionServer::new(s.election.clone()).max_decoding_message_size(max));
        let router = crate::server::date::with_date(routes.into_axum_router(), self.ctx.clock.clone())
            .layer(RpcMetricsLayer::new(self.ctx.metrics.clone()))
            .layer(tower::util::MapRequestLayer::new(move |req: ::http::Request<axum::body::Body>| grpc_limit::limit_request(req, max)));
        tonic::service::Routes::from(router)
    }

    /// Serve gRPC and HTTP on `incoming` until `shutdown` resolves, then make everything durable.
    pub async fn serve<I, IO, IE, F>(self, incoming: I, shutdown: F) -> Result<()>
    where
        I: Stream<Item = std::result::Result<IO, IE>>,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: Future<Output = ()>,
    {
        let routes = self.routes();
        let stop = tokio::sync::Notify::new();
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(5)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop.notified());
        tokio::pin!(server);
        tokio::pin!(shutdown);
        let result = tokio::select! {
            r = &mut server => r,
            _ = &mut shutdown => {
                // Stop accepting, let requests in flight finish for a moment, then go: open
                // watch streams would otherwise hold the member up forever.
                stop.notify_one();
                tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.unwrap_or(Ok(()))
            }
        };
        // Everything acknowledged is already in the Raft log; writing the held-back records and
        // flushing the backend just spares the next start a replay.
        if let Err(e) = self.replica.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping Raft");
        }
        let written = self.applied.write_state().write_group();
        let synced = self.applied.backend.sync().await;
        result.map_err(|e| Error::Internal(Internal::Serve(format!("clients: {e}"))))?;
        written?;
        synced?;
        Ok(())
    }
}

/// Flush the backend every `interval`, so a restart re-applies only the log after it.
async fn run_flusher(applied: Arc<Applied>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = applied.write_state().write_group() {
            tracing::error!(error = %e, "writing to the backend failed");
            continue;
        }
        if let Err(e) = applied.backend.sync().await {
            tracing::error!(error = %e, "flushing the backend failed");
        }
    }
}

/// Follow Raft's metrics: the term for response headers, and leader changes for the log.
async fn watch_raft(applied: Arc<Applied>, replica: Arc<Replica>) {
    let mut rx = replica.raft.metrics();
    let mut leader = None;
    loop {
        let (term, now) = {
            let m = rx.borrow_watched();
            (m.current_term, m.current_leader)
        };
        applied.set_term(Term(term));
        if now != leader {
            match now {
                Some(id) => tracing::info!(leader = %id, term, "raft: leader elected"),
                None => tracing::warn!(term, "raft: no leader"),
            }
            leader = now;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Publish this member's name and client URLs to the cluster (through the leader) once, as
/// etcd does after it starts.
async fn publish(replica: Arc<Replica>, name: String, client_urls: Vec<String>, done: tokio::sync::watch::Sender<bool>) {
    let me =
        EtcdMember { id: replica.id.0, name: name.clone(), peer_ur_ls: Vec::new(), client_ur_ls: client_urls.clone(), is_learner: false };
    loop {
        let current = replica.members().into_iter().find(|m| m.id == replica.id.0);
        if current.as_ref().is_some_and(|m| m.name == name && m.client_ur_ls == client_urls) {
            let _ = done.send(true);
            return;
        }
        let sent = if current.is_none() {
            false
        } else if replica.is_leader() {
            replica.publish_member(replica.id, name.clone(), client_urls.clone()).await.is_ok()
        } else if let Some((_, leader)) = replica.leader()
            && let Ok(mut c) = replica.peers.member(&leader)
        {
            tokio::time::timeout(Duration::from_secs(5), c.publish(me.clone())).await.is_ok_and(|r| r.is_ok())
        } else {
            false
        };
        // After a proposal, give it time to be applied here before proposing again.
        let pause = if sent { 20 } else { 1 };
        for _ in 0..pause {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if replica.members().iter().any(|m| m.id == replica.id.0 && m.name == name && m.client_ur_ls == client_urls) {
                break;
            }
        }
    }
}

/// Automatic compaction, as etcd's `--auto-compaction-*`: periodic mode compacts to the revision
/// that was current one retention period ago (sampled every tenth of it); revision mode keeps the
/// newest N revisions, checked every five minutes.
async fn run_compactor(kv: crate::server::kv::KvService, ctx: Arc<Context>, mode: AutoCompaction) {
    let (every, keep_revs, retention) = match mode {
        AutoCompaction::Off => return,
        AutoCompaction::Periodic(d) => ((d / 10).max(Duration::from_secs(1)), 0, d),
        AutoCompaction::Revision(n) => (Duration::from_secs(300), n, Duration::ZERO),
    };
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let current = ctx.applied.visible().0;
        let target = if keep_revs > 0 {
            current - keep_revs
        } else {
            samples.push_back((now, current));
            let mut target = 0;
            while let Some((t, rev)) = samples.front().copied() {
                if now.duration_since(t) < retention {
                    break;
                }
                target = rev;
                samples.pop_front();
            }
            target
        };
        let compacted = ctx.applied.read_state().mvcc.compacted().0;
        // Like etcd, only the leader compacts; the others keep sampling for when they lead.
        if target > compacted && ctx.replica.is_leader() {
            match kv.compact(CompactionRequest { revision: target, physical: false }, &crate::auth::Caller::member()).await {
                Ok(_) => tracing::info!(revision = target, "auto compaction finished"),
                Err(e) => tracing::warn!(revision = target, error = %e, "auto compaction failed"),
            }
        }
        // Keep a read on the books so a broken store shows up in the log early.
        let _ = kv
            .range(
                &RangeRequest { serializable: true, key: bytes::Bytes::from_static(b"\0"), count_only: true, ..Default::default() },
                &crate::auth::Caller::member(),
            )
            .await;
    }
}
