//! The composition of one member: open state from a backend, start the writer and the
//! background tasks, and serve gRPC and HTTP on the listeners it is given. Callers (the binary,
//! tests, the simulation) choose the listeners, the backend and the randomness.

use crate::apply::writer::{self, Proposer, SharedLog};
use crate::apply::{Command, StateMachine};
use crate::config::{AutoCompaction, Config};
use crate::error::{Error, Result};
use crate::http::{self, HttpState};
use crate::mvcc::codec;
use crate::seams::Rng;
use crate::server::auth::AuthService;
use crate::server::cluster::ClusterService;
use crate::server::election::ElectionService;
use crate::server::kv::KvService;
use crate::server::lease::{self as lease_svc, LeaseService};
use crate::server::lock::LockService;
use crate::server::maintenance::MaintenanceService;
use crate::server::state::{Identity, Limits, META_TERM, Shared};
use crate::server::watch::WatchService;
use crate::storage::{Backend, WriteBatch};
use crate::types::{ClusterId, MemberId};
use crate::wal::CommandLog;
use crate::watch::syncer;
use futures::Stream;
use keel_proto::etcdserverpb::auth_server::AuthServer;
use keel_proto::etcdserverpb::cluster_server::ClusterServer;
use keel_proto::etcdserverpb::kv_server::KvServer;
use keel_proto::etcdserverpb::lease_server::LeaseServer;
use keel_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use keel_proto::etcdserverpb::watch_server::WatchServer;
use keel_proto::etcdserverpb::{CompactionRequest, RangeRequest};
use keel_proto::v3electionpb::election_server::ElectionServer;
use keel_proto::v3lockpb::lock_server::LockServer;
use std::collections::VecDeque;
use std::future::Future;
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

/// How often the backend is flushed so the log can be shortened.
const BACKEND_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Opens the command log given the first index wanted back.
pub type OpenLog = Box<dyn FnOnce(u64) -> std::io::Result<(Box<dyn CommandLog>, Vec<(u64, bytes::Bytes)>)> + Send>;

const META_MEMBER_ID: &[u8] = b"m/member_id";
const META_CLUSTER_ID: &[u8] = b"m/cluster_id";

/// The service objects, shared by gRPC and the HTTP gateway.
#[derive(Clone)]
pub struct Services {
    /// KV.
    pub kv: KvService,
    /// Watch.
    pub watch: WatchService,
    /// Lease.
    pub lease: LeaseService,
    /// Cluster.
    pub cluster: ClusterService,
    /// Maintenance.
    pub maintenance: MaintenanceService,
    /// v3lock.
    pub lock: LockService,
    /// v3election.
    pub election: ElectionService,
}

/// A running member's state, before it serves.
pub struct Member {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Service objects.
    pub services: Services,
    tasks: JoinSet<()>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// FNV-1a, for IDs derived from configuration (stable across restarts and builds).
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn meta(backend: &dyn Backend, key: &[u8]) -> Result<Option<i64>> {
    Ok(backend.get(key)?.and_then(|v| codec::decode_i64(&v)))
}

impl Member {
    /// Open the member's state on `backend`, replay the log over it, and start its writer and
    /// background tasks. `open_log(from)` opens the log and returns its records with index
    /// `>= from`.
    pub async fn start(cfg: &Config, backend: Arc<dyn Backend>, open_log: OpenLog, rng: Box<dyn Rng>) -> Result<Member> {
        if cfg.initial_cluster.len() > 1 {
            return Err(Error::InvalidArgument(format!(
                "--initial-cluster names {} members; this Keel build serves single-member clusters only (replication is not built yet)",
                cfg.initial_cluster.len()
            )));
        }
        // IDs are fixed at first start and read back afterwards, like etcd's.
        let mut first = WriteBatch::default();
        let member_id = match meta(&*backend, META_MEMBER_ID)? {
            Some(id) => id as u64,
            None => {
                let mut peers = cfg.initial_advertise_peer_urls.clone();
                peers.sort();
                let id = fnv64(&[&peers.join(","), &cfg.initial_cluster_token]);
                first.put(META_MEMBER_ID.to_vec(), codec::encode_i64(id as i64));
                id
            }
        };
        let cluster_id = match meta(&*backend, META_CLUSTER_ID)? {
            Some(id) => id as u64,
            None => {
                let members: Vec<String> = cfg.initial_cluster.iter().map(|(n, u)| format!("{n}={u}")).collect();
                let id = fnv64(&[&members.join(","), &cfg.initial_cluster_token, "cluster"]);
                first.put(META_CLUSTER_ID.to_vec(), codec::encode_i64(id as i64));
                id
            }
        };
        // Each start is a new term, as a restarted etcd member elects itself again.
        let term = meta(&*backend, META_TERM)?.unwrap_or(1) as u64 + 1;
        first.put(META_TERM.to_vec(), codec::encode_i64(term as i64));
        backend.write(first)?;
        backend.sync().await?;
        let mut sm = StateMachine::open(backend.clone(), cfg.min_lease_ttl(), Instant::now())?;
        let (mut log, records) = open_log(sm.applied + 1).map_err(|e| Error::Storage(format!("opening the log: {e}")))?;
        let replayed = records.len();
        for (index, raw) in records {
            if index != sm.applied + 1 {
                return Err(Error::Storage(format!("the log jumps from {} to {index}", sm.applied)));
            }
            let cmd = Command::from_log_bytes(&raw)?;
            if let Err(e) = sm.apply(index, cmd, Instant::now()) {
                // Only commands that succeeded are logged, and applying is deterministic.
                return Err(Error::Storage(format!("replaying log record {index} failed: {e}")));
            }
            if index % 1024 == 0 {
                sm.write_group()?;
            }
        }
        sm.write_group()?;
        if log.next_index() <= sm.applied {
            log.skip_to(sm.applied + 1).map_err(|e| Error::Storage(format!("advancing the log: {e}")))?;
        }
        if replayed > 0 {
            tracing::info!(records = replayed, revision = sm.mvcc.current(), "replayed the log");
        }
        let log: SharedLog = Arc::new(std::sync::Mutex::new(log));
        let (proposer, rx) = Proposer::new(4096);
        let identity = Identity {
            name: cfg.name.clone(),
            member_id: MemberId(member_id),
            cluster_id: ClusterId(cluster_id),
            peer_urls: cfg.initial_advertise_peer_urls.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
        };
        let limits =
            Limits { max_request_bytes: cfg.max_request_bytes, max_txn_ops: cfg.max_txn_ops, quota_backend_bytes: cfg.quota_bytes() };
        let shared = Arc::new(Shared::new(sm, backend, proposer, identity, limits, rng, term));
        let mut tasks = JoinSet::new();
        tasks.spawn(writer::run(shared.clone(), log.clone(), rx));
        tasks.spawn(writer::run_flusher(shared.clone(), log, BACKEND_FLUSH_INTERVAL));
        tasks.spawn(syncer::run(shared.clone(), cfg.watch_progress_notify_interval));
        tasks.spawn(lease_svc::run_expiry(shared.clone()));
        if cfg.auto_compaction != AutoCompaction::Off {
            tasks.spawn(run_compactor(shared.clone(), cfg.auto_compaction));
        }
        let services = Services {
            kv: KvService::new(shared.clone()),
            watch: WatchService::new(shared.clone()),
            lease: LeaseService::new(shared.clone()),
            cluster: ClusterService::new(shared.clone()),
            maintenance: MaintenanceService::new(shared.clone()),
            lock: LockService::new(KvService::new(shared.clone()), WatchService::new(shared.clone())),
            election: ElectionService::new(KvService::new(shared.clone()), WatchService::new(shared.clone())),
        };
        Ok(Member { shared, services, tasks })
    }

    /// The gRPC services and HTTP routes of the client port.
    pub fn routes(&self) -> tonic::service::Routes {
        let max = self.shared.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let s = &self.services;
        let http = http::router(HttpState { shared: self.shared.clone(), services: s.clone() });
        tonic::service::Routes::from(http)
            .add_service(KvServer::new(s.kv.clone()).max_decoding_message_size(max).max_encoding_message_size(usize::MAX))
            .add_service(WatchServer::new(s.watch.clone()).max_decoding_message_size(max).max_encoding_message_size(usize::MAX))
            .add_service(LeaseServer::new(s.lease.clone()).max_decoding_message_size(max))
            .add_service(ClusterServer::new(s.cluster.clone()).max_decoding_message_size(max))
            .add_service(MaintenanceServer::new(s.maintenance.clone()).max_decoding_message_size(max))
            .add_service(AuthServer::new(AuthService).max_decoding_message_size(max))
            .add_service(LockServer::new(s.lock.clone()).max_decoding_message_size(max))
            .add_service(ElectionServer::new(s.election.clone()).max_decoding_message_size(max))
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
        // Everything acknowledged is already in the log; writing the held-back records and
        // flushing the backend just spares the next start a replay.
        let written = self.shared.write_state().write_group();
        let synced = self.shared.backend.sync().await;
        result.map_err(|e| Error::Storage(format!("serving failed: {e}")))?;
        written?;
        synced?;
        Ok(())
    }
}

/// Automatic compaction, as etcd's `--auto-compaction-*`: periodic mode compacts to the revision
/// that was current one retention period ago (sampled every tenth of it); revision mode keeps the
/// newest N revisions, checked every five minutes.
async fn run_compactor(shared: Arc<Shared>, mode: AutoCompaction) {
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
        let current = shared.visible();
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
        let compacted = shared.read_state().mvcc.compacted();
        if target > compacted {
            let kv = KvService::new(shared.clone());
            match kv.compact(CompactionRequest { revision: target, physical: false }).await {
                Ok(_) => tracing::info!(revision = target, "auto compaction finished"),
                Err(e) => tracing::warn!(revision = target, error = %e, "auto compaction failed"),
            }
        }
        // Keep a read on the books so a broken store shows up in the log early.
        let _ = KvService::new(shared.clone()).range(&RangeRequest {
            key: bytes::Bytes::from_static(b"\0"),
            count_only: true,
            ..Default::default()
        });
    }
}
