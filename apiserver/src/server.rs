//! The apiserver as a library: [`Server::start`] builds the server over a store client and the
//! seams, and starts its background tasks (the built-in namespaces and the watch caches, retried
//! while the store comes up; the compactor) in a task set the server owns, so dropping the
//! server stops them. [`Server::serve`] speaks HTTP on any stream of connections until a
//! shutdown future resolves: `main.rs` passes TCP listeners, tests and the simulation pass
//! what they like.

use crate::error::ApiError;
use crate::http::{self, serve};
use crate::rest::{Api, object};
use crate::seams::{Clock, Ids};
use crate::storage::cache::Caches;
use crate::storage::encryption::Codec;
use crate::storage::leases::EventLeases;
use crate::storage::{Store, compactor};
use crate::tasks::Tasks;
use futures::Stream;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Settings (kube-apiserver's flags, the subset Keel serves).
#[derive(Clone)]
pub struct Config {
    /// The address clients reach this server at (legacy `/api` reports it).
    pub advertise: String,
    /// How long a watch without `timeoutSeconds` stays open.
    pub watch_timeout: Duration,
    /// How long events are kept (`--event-ttl`).
    pub event_ttl: Duration,
    /// How often to compact the store's history (`--etcd-compaction-interval`; zero: never).
    pub compaction_interval: Duration,
    /// Seals and opens stored values (secrets are encrypted at rest).
    pub codec: Arc<Codec>,
    /// Attempts at the bootstrap (built-in namespaces, watch caches) while the store starts.
    pub bootstrap_attempts: usize,
    /// Pause between bootstrap attempts.
    pub bootstrap_pause: Duration,
    /// How often a watch with `allowWatchBookmarks` hears how far the cache is (a minute, as
    /// kube-apiserver's bookmarks).
    pub bookmark_interval: Duration,
    /// `--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`.
    pub default_toleration_seconds: (i64, i64),
    /// The admission plugins that run (kube's names; see [`crate::rest::admission::plugins`]).
    pub admission_plugins: std::collections::BTreeSet<String>,
    /// How kubelets are reached (`--kubelet-*`).
    pub kubelet: crate::kubelet::Config,
    /// `--service-cluster-ip-range` (10.96.0.0/12, kubeadm's) and `--service-node-port-range`.
    pub service_ranges: crate::registry::service_alloc::Ranges,
    /// Authentication and authorization (keel-access, from the security flags); None: every
    /// request is served (see [`crate::http::access`]).
    pub access: Option<Arc<keel_access::Access>>,
    /// The audit log (`--audit-log-path`); None: no audit.
    pub audit: Option<Arc<http::audit::Sink>>,
    /// `--max-requests-inflight` (400; 0: no limit): non-mutating requests served at once.
    pub max_requests_inflight: usize,
    /// `--max-mutating-requests-inflight` (200; 0: no limit): mutating requests served at once.
    pub max_mutating_requests_inflight: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            advertise: "127.0.0.1:6443".into(),
            watch_timeout: Duration::from_secs(3600),
            event_ttl: Duration::from_secs(3600),
            compaction_interval: Duration::from_secs(300),
            codec: Arc::new(Codec::plain()),
            bootstrap_attempts: 60,
            bootstrap_pause: Duration::from_millis(500),
            bookmark_interval: Duration::from_secs(60),
            default_toleration_seconds: (300, 300),
            admission_plugins: crate::rest::admission::DEFAULT_PLUGINS.iter().map(|s| s.to_string()).collect(),
            kubelet: crate::kubelet::Config::default(),
            service_ranges: crate::registry::service_alloc::Ranges::default(),
            access: None,
            audit: None,
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
        }
    }
}

/// What the server takes from outside so tests and the simulation decide it.
pub struct Seams {
    /// Wall time (creationTimestamp, ages in tables, event leases).
    pub clock: Arc<dyn Clock>,
    /// uids and generateName suffixes.
    pub ids: Ids,
}

/// Where the bootstrap is.
#[derive(Clone, Debug)]
enum Bootstrap {
    /// Still trying.
    Running,
    /// Namespaces exist and every watch cache follows the store.
    Done,
    /// Gave up after the configured attempts, with the last error.
    Failed(String),
}

/// A running apiserver: its shared state, its router and its tasks.
pub struct Server {
    api: Arc<Api>,
    router: axum::Router,
    bootstrap: watch::Receiver<Bootstrap>,
    // Declared last: dropped after the rest, aborting every task.
    tasks: Tasks,
}

async fn bootstrap(api: Arc<Api>, config: Config, tx: watch::Sender<Bootstrap>) {
    let mut tries = 0;
    loop {
        // Both steps are idempotent: existing namespaces stay, started caches are kept.
        let attempt = async {
            object::bootstrap(&api).await?;
            if config.access.is_some() {
                crate::rest::rbac::bootstrap_policy(&api).await?;
            }
            api.caches.start_all().await
        };
        match attempt.await {
            Ok(()) => {
                api.spawner.spawn(crate::rest::services::run_endpoints(api.clone()));
                if let Some(access) = &config.access {
                    // Ready only once the authorizers' state is loaded (kube waits for its RBAC
                    // informers): a feeder's first list is the cache's, so this is quick.
                    let mut synced = crate::rest::rbac::feed(&api, &access.policy);
                    synced.extend(crate::rest::node_graph::feed(&api, &access.graph));
                    for s in synced {
                        let _ = s.await;
                    }
                }
                let _ = tx.send(Bootstrap::Done);
                return;
            }
            Err(e) => {
                tries += 1;
                tracing::debug!("bootstrap attempt {tries}: {e}");
                if tries >= config.bootstrap_attempts {
                    let _ = tx.send(Bootstrap::Failed(e.to_string()));
                    return;
                }
            }
        }
        tokio::time::sleep(config.bootstrap_pause).await;
    }
}

impl Server {
    /// Builds the server over `store` and starts its background tasks (see the module doc).
    /// Must be called inside a tokio runtime.
    pub fn start(config: Config, store: keel_etcd::Client, seams: Seams) -> Server {
        let tasks = Tasks::new();
        let spawner = tasks.spawner();
        let audit_ids = seams.ids.fork();
        let audit =
            Arc::new(http::audit::Audit { clock: seams.clock.clone(), ids: Box::new(move || audit_ids.uid()), sink: config.audit.clone() });
        let store = Store::new(store, config.codec.clone());
        let api = Arc::new(Api {
            caches: Caches::new(store.clone(), spawner.clone(), config.bookmark_interval),
            store: store.clone(),
            clock: seams.clock,
            ids: seams.ids,
            advertise: config.advertise.clone(),
            watch_timeout: config.watch_timeout,
            event_leases: EventLeases::new(config.event_ttl),
            spawner: spawner.clone(),
            default_toleration_seconds: config.default_toleration_seconds,
            admission_plugins: config.admission_plugins.clone(),
            kubelets: crate::kubelet::KubeletClient::new(config.kubelet.clone(), spawner.clone()),
            service_ranges: config.service_ranges,
            access: config.access.clone(),
        });
        let front = config.access.clone().map(|access| {
            let objects: Arc<dyn http::access::Objects> = Arc::new(crate::rest::token::StoredObjects(api.clone()));
            Arc::new(http::access::Front { access, clock: api.clock.clone(), objects: Some(objects) })
        });
        let (tx, rx) = watch::channel(Bootstrap::Running);
        spawner.spawn(bootstrap(api.clone(), config.clone(), tx));
        spawner.spawn(compactor::run(store, config.compaction_interval));
        let inflight =
            http::inflight::Inflight::new(config.max_requests_inflight, config.max_mutating_requests_inflight, config.access.is_some());
        let requests = http::requests::Requests::with(|r| {
            inflight.register(r);
            if let Some(sink) = &config.audit {
                sink.register(r);
            }
        });
        let router = http::router(api.clone(), front, inflight, audit, requests);
        Server { api, router, bootstrap: rx, tasks }
    }

    /// Waits until the built-in namespaces exist and the watch caches follow the store (and,
    /// with authorization on, keel-access's RBAC policy and node graph hold the stored objects);
    /// the last error if the bootstrap gave up.
    pub async fn ready(&self) -> Result<(), ApiError> {
        let mut rx = self.bootstrap.clone();
        let state = rx.wait_for(|b| !matches!(b, Bootstrap::Running)).await.map_err(|_| ApiError::Store("the server stopped".into()))?;
        match &*state {
            Bootstrap::Failed(e) => Err(ApiError::Store(e.clone())),
            _ => Ok(()),
        }
    }

    /// The HTTP surface (every route), for hosting it some other way.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The state the handlers share.
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// Background tasks running now (bootstrap, caches, compactor, watch streams, …).
    pub fn tasks_running(&self) -> usize {
        self.tasks.len()
    }

    /// Serves plain HTTP on every connection of `incoming` until `shutdown`.
    pub async fn serve<S, C>(&self, incoming: S, shutdown: impl Future<Output = ()>)
    where
        S: Stream<Item = std::io::Result<C>>,
        C: serve::Conn,
    {
        serve::serve(incoming, None, self.router(), shutdown).await
    }

    /// Serves HTTPS (`tls`) on every connection of `incoming` until `shutdown`.
    pub async fn serve_tls<S, C>(&self, incoming: S, tls: Arc<rustls::ServerConfig>, shutdown: impl Future<Output = ()>)
    where
        S: Stream<Item = std::io::Result<C>>,
        C: serve::Conn,
    {
        serve::serve(incoming, Some(tls), self.router(), shutdown).await
    }
}
