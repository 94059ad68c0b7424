//! The control plane's software on turmoil hosts, each built the way its `main.rs` builds it
//! but with the simulation's seams: the network ([`super::net`]), the wall clock
//! ([`SimWall`]: turmoil's clock from the fixed epoch), seeded randomness, and identities named
//! after the host and its incarnation. A crashed host's software is dropped whole; a bounced
//! host runs the function again as a new incarnation (a new identity, as a restarted process is).
//!
//! Invariants:
//! - Every leader-elected component registers its `Leadership` in [`Actors`] under its actor
//!   name before it sends a request, so the apiservers can record the term of every act.
//! - No host reads the real clock, the OS's randomness or real files beyond a scratch folder.

use super::acts::{self, Actors, Acts};
use super::net::{API_PORT, ApiConnector, StoreDial, kube_client};
use clap::Parser;
use keel_controllers::fence::{self, FenceMetrics};
use keel_controllers::{election, manager};
use keel_kubelet::runtime::simulated::SimulatedRuntime;
use keel_leader::Elector;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The simulation's wall clock for every component (creationTimestamp, Lease renewTime, …).
#[derive(Clone, Copy, Debug, Default)]
pub struct SimWall;

impl SimWall {
    fn timestamp() -> jiff::Timestamp {
        let d = turmoil::since_epoch().unwrap_or_default();
        jiff::Timestamp::from_nanosecond(d.as_nanos() as i128).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

impl keel_apiserver::seams::Clock for SimWall {
    fn now(&self) -> jiff::Timestamp {
        SimWall::timestamp()
    }
}

impl keel_leader::Clock for SimWall {
    fn now(&self) -> jiff::Timestamp {
        SimWall::timestamp()
    }
}

impl keel_controllers::clock::Clock for SimWall {
    fn now(&self) -> jiff::Timestamp {
        SimWall::timestamp()
    }
}

impl keel_kubelet::clock::Clock for SimWall {
    fn now(&self) -> jiff::Timestamp {
        SimWall::timestamp()
    }
}

/// Leader election timings of the simulated scheduler and controller-manager (kube's 15/10/2 s
/// scaled down, so a failover fits a short run): lease, renew deadline, retry period.
pub const ELECTION: (&str, &str, &str) = ("6s", "4s", "1s");

pub use crate::run::CpBugs;

/// One apiserver: keel-apiserver over the store members, serving plain HTTP on [`API_PORT`],
/// recording every write it receives in `acts`.
/// `tolerations`: the default `not-ready` / `unreachable` toleration seconds.
pub async fn apiserver(
    index: usize,
    members: Vec<SocketAddr>,
    seed: u64,
    acts: Acts,
    actors: Actors,
    tolerations: (i64, i64),
) -> turmoil::Result {
    // Each apiserver starts at a member of its own (apiserver i at member i), as kube's
    // apiservers each talk to the etcd member on their host: a member cut off from the others
    // leaves one apiserver's watch cache behind while the other serves fresh events.
    let mut endpoints: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    endpoints.rotate_left(index % members.len().max(1));
    let store = store_client(&endpoints, &store_config(Duration::from_secs(5)))?;
    let config = keel_apiserver::Config {
        advertise: format!("apiserver{index}:{API_PORT}"),
        // The history stays whole, so the checkers can read every version of every pod.
        compaction_interval: Duration::ZERO,
        bootstrap_attempts: 10_000,
        bootstrap_pause: Duration::from_millis(500),
        bookmark_interval: Duration::from_secs(2),
        default_toleration_seconds: tolerations,
        ..keel_apiserver::Config::default()
    };
    let seams = keel_apiserver::Seams { clock: Arc::new(SimWall), ids: keel_apiserver::seams::Ids::seeded(seed) };
    let server = keel_apiserver::Server::start(config, store, seams);
    let router = acts::layer(server.router(), index, acts, actors);
    let incoming = crate::net::incoming(API_PORT).await?;
    keel_apiserver::http::serve::serve(incoming, None, router, futures::future::pending()).await;
    Ok(())
}

/// The store clients' settings in the simulation (the apiservers' and the history's): dial a
/// member for at most 1 s, keepalives every 1 s answered within 2 s, so a stream on a member
/// that crashed or was cut off breaks (and resumes elsewhere) within seconds, not after
/// kube-etcd's default 10 s + 10 s; calls bounded by `request_timeout`.
pub fn store_config(request_timeout: Duration) -> keel_etcd::Config {
    keel_etcd::Config {
        connect_timeout: Duration::from_secs(1),
        request_timeout,
        keepalive_interval: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(2),
        ..keel_etcd::Config::default()
    }
}

/// keel-etcd's client as `Client::connect` builds it (endpoints dialed in turn, the same
/// deadlines and keepalives), except that h2 forgets a locally reset stream at once: h2 keeps
/// one for a *real* second (`std::time::Instant`, h2's `DEFAULT_RESET_STREAM_SECS`), so a late
/// frame on a cancelled watch or call was ignored or answered with RST_STREAM depending on how
/// fast the machine ran the simulation, and two replays of a seed diverged. Forgotten at once,
/// such a frame is always answered with RST_STREAM(STREAM_CLOSED).
pub fn store_client(endpoints: &[String], config: &keel_etcd::Config) -> Result<keel_etcd::Client, String> {
    let authorities = endpoints.iter().map(|e| keel_etcd::dial::authority(e)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let first = authorities.first().cloned().ok_or("no store endpoint")?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{first}"))
        .map_err(|e| e.to_string())?
        .timeout(config.request_timeout)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true)
        .http2_max_concurrent_reset_streams(0)
        .connect_with_connector_lazy(keel_etcd::dial::Failover::new(authorities, Arc::new(StoreDial), config.connect_timeout));
    Ok(keel_etcd::Client::from_channel(channel, config))
}

/// One scheduler replica (`replica`, incarnation `incarnation`), leader-elected.
pub async fn scheduler(
    replica: usize,
    incarnation: u64,
    apiservers: Vec<SocketAddr>,
    seed: u64,
    actors: Actors,
    bugs: CpBugs,
) -> turmoil::Result {
    let actor = format!("scheduler-{replica}#{incarnation}");
    let client = kube_client(&actor, ApiConnector::new(apiservers, replica))?;
    let (lease, renew, retry) = ELECTION;
    let flags = keel_scheduler::flags::Flags::try_parse_from([
        "keel-scheduler",
        "--kubeconfig",
        "/nonexistent",
        "--secure-port",
        "0",
        "--leader-elect-lease-duration",
        lease,
        "--leader-elect-renew-deadline",
        renew,
        "--leader-elect-retry-period",
        retry,
    ])
    .map_err(|e| e.to_string())?;
    let config = flags.config().map_err(|e| e.to_string())?;
    let clock: Arc<dyn keel_leader::Clock> = Arc::new(SimWall);
    let (elector, leadership) = Elector::new(client.clone(), flags.leader(&actor), clock.clone()).map_err(|e| e.to_string())?;
    acts::register(&actors, &actor, leadership.clone());
    tokio::spawn(elector.run(futures::future::pending::<()>()));
    let registry = keel_component::metrics::shared();
    let metrics = keel_scheduler::metrics::Metrics::register(&mut registry.lock().unwrap_or_else(|p| p.into_inner()));
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let _stores = keel_scheduler::informer::start(client.clone(), tx);
    let recorder = keel_scheduler::events::start(
        client.clone(),
        config.scheduler_name.clone(),
        actor.clone(),
        clock.clone(),
        metrics.clone(),
        config.request_timeout,
    );
    let binder = keel_scheduler::binder::Binder::new(client, config.request_timeout);
    let parts = keel_scheduler::driver::Parts {
        config,
        updates: rx,
        binder,
        recorder,
        metrics,
        clock,
        rng: StdRng::seed_from_u64(seed),
        leadership: if bugs.scheduler_ignores_lease { None } else { Some(leadership) },
        bug_bind_without_assume: bugs.scheduler_ignores_assume_cache,
        identity: actor,
        health: keel_component::health::Health::new(),
        lease_name: flags.leader_elect_resource_name.clone(),
    };
    keel_scheduler::driver::Scheduler::new(parts).run(futures::future::pending::<()>()).await;
    Ok(())
}

/// One controller-manager replica, leader-elected; the controllers run while it leads, behind
/// the fencing client, as `keel-controller-manager` runs them; with `lifecycle`, the node
/// lifecycle and taint eviction controllers too.
pub async fn controller_manager(
    replica: usize,
    incarnation: u64,
    apiservers: Vec<SocketAddr>,
    actors: Actors,
    bugs: CpBugs,
    lifecycle: Option<keel_controllers::nodelifecycle::Config>,
) -> turmoil::Result {
    let actor = format!("controller-manager-{replica}#{incarnation}");
    let client = kube_client(&actor, ApiConnector::new(apiservers, replica))?;
    let (lease, renew, retry) = ELECTION;
    let parse = |s: &str| keel_controllers::flags::parse_duration(s).map_err(|e| e.to_string());
    let config = keel_leader::Config {
        lease_duration: parse(lease)?,
        renew_deadline: parse(renew)?,
        retry_period: parse(retry)?,
        ..keel_leader::Config::new("kube-system", "kube-controller-manager", &actor)
    };
    let (elector, leadership) = Elector::new(client.clone(), config, Arc::new(SimWall)).map_err(|e| e.to_string())?;
    acts::register(&actors, &actor, leadership.clone());
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(elector.run(futures::future::pending::<()>()));
    let fence_metrics = FenceMetrics::default();
    if bugs.controller_manager_ignores_lease {
        let unfenced = fence::client(client, Arc::new(fence::Unelected(actor)), fence_metrics);
        let cfg = manager_config(bugs, lifecycle.clone())?;
        manager::run(unfenced, cfg, Arc::new(SimWall), keel_controllers::metrics::Metrics::new(), futures::future::pending())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let controllers = fence::client(client, Arc::new(leadership.clone()), fence_metrics.clone());
    let cfg = manager_config(bugs, lifecycle.clone())?;
    let clock: keel_controllers::clock::SharedClock = Arc::new(SimWall);
    let metrics = keel_controllers::metrics::Metrics::new();
    election::run_while_leading(leadership, stop_rx, |stop| {
        let (controllers, cfg, clock, metrics) = (controllers.clone(), cfg.clone(), clock.clone(), metrics.clone());
        async move { manager::run(controllers, cfg, clock, metrics, stop).await }
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The controllers a Deployment needs, and the ones that keep the cluster tidy around them,
/// with the planted bugs `bugs` asks for.
fn manager_config(bugs: CpBugs, lifecycle: Option<keel_controllers::nodelifecycle::Config>) -> Result<manager::Config, String> {
    let base = "replicaset,deployment,garbagecollector,serviceaccount,namespace";
    let enabled = manager::parse_controllers(&if lifecycle.is_some() {
        format!("{base},nodelifecycle,taint-eviction-controller")
    } else {
        base.into()
    })?;
    Ok(manager::Config {
        enabled,
        bug_ignore_expectations: bugs.replicaset_ignores_expectations,
        deployment: keel_controllers::deployment::Config { bug_ignore_max_surge: bugs.deployment_ignores_max_surge, ..Default::default() },
        nodelifecycle: lifecycle.unwrap_or_default(),
        ..manager::Config::default()
    })
}

/// Simulated nodes `node-<host>-<i>` on one kubelet host ([`super::node_names`]): the
/// simulated runtime, as `keel-kubelet --simulated-nodes` runs them, with node Leases of
/// `lease`; with `burst`, those of [`super::BURST_NODES`] labelled and tainted `NoSchedule`
/// with [`super::BURST_KEY`].
pub async fn kubelet(host: usize, apiservers: Vec<SocketAddr>, scratch: PathBuf, lease: Duration, burst: bool) -> turmoil::Result {
    use keel_kubelet::node::agent::{self, NodeSettings};
    use keel_kubelet::node::pods::{self, PodsSettings};
    use keel_kubelet::runtime::ipam::{Cidr, Ipam};
    let actor = format!("kubelet-{host}");
    let client = kube_client(&actor, ApiConnector::new(apiservers, host))?;
    let clock: Arc<dyn keel_kubelet::clock::Clock> = Arc::new(SimWall);
    let feed = keel_kubelet::pod::manager::Feed::default();
    let names = super::node_names(host);
    // One watch for every node of this host, as the kubelet's simulated mode does.
    tokio::spawn(feed.clone().run(client.clone(), "spec.nodeName!=".to_string()));
    let registry = keel_component::metrics::shared();
    let metrics = keel_kubelet::metrics::Metrics::register(&mut registry.lock().unwrap_or_else(|p| p.into_inner()));
    let mut loops = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let cidr = Cidr { network: std::net::Ipv4Addr::new(10, 244, (host * 16 + i) as u8, 0), prefix: 24 };
        let runtime = Arc::new(SimulatedRuntime::new(clock.clone(), Ipam::new(cidr, None).map_err(|e| e.to_string())?));
        let capacity = keel_kubelet::node::host::Capacity {
            cpu_millis: super::NODE_CPU.into(),
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
            pods: 110,
        };
        let address = format!("10.0.{host}.{}", i + 1);
        let kept = burst && super::BURST_NODES.contains(&name.as_str());
        let settings = NodeSettings {
            name: name.clone(),
            labels: if kept { [(super::BURST_KEY.to_string(), "true".to_string())].into() } else { Default::default() },
            taints: if kept {
                vec![k8s_openapi::api::core::v1::Taint { key: super::BURST_KEY.into(), effect: "NoSchedule".into(), ..Default::default() }]
            } else {
                Vec::new()
            },
            pod_cidr: Some(cidr.to_string()),
            address: address.clone(),
            hostname: name.clone(),
            capacity,
            eviction_memory: 100 << 20,
            kubelet_port: 0,
            lease_duration: lease,
            status_update: Duration::from_secs(10),
            status_report: Duration::from_secs(60),
            runtime_version: "simulated://0.1.0".into(),
            seed: (host * 100 + i) as u64,
        };
        let root = scratch.join(&name);
        let node = Arc::new(keel_kubelet::pod::Node {
            name: name.clone(),
            client: client.clone(),
            runtime,
            clock: clock.clone(),
            events: keel_kubelet::events::Events::new(Some(client.clone()), &name, clock.clone()),
            config: keel_kubelet::pod::PodConfig {
                resync: Duration::from_secs(1),
                backoff: keel_kubelet::pod::backoff::BackoffConfig { initial: Duration::from_secs(10), max: Duration::from_secs(300) },
            },
            host_ip: address,
            pods_dir: root.join("pods"),
            allocatable: (capacity.cpu_millis, capacity.memory - (100 << 20)),
            index: Default::default(),
            metrics: metrics.clone(),
        });
        let observed: agent::Observations = Default::default();
        let ps = PodsSettings {
            manifest_dir: None,
            file_check: Duration::from_secs(20),
            eviction_interval: Duration::from_secs(10),
            eviction_memory: 100 << 20,
            memory_capacity: capacity.memory,
            host_memory: false,
            root_dir: root,
            stop_pods_on_shutdown: false,
        };
        let (c, ck, feed) = (client.clone(), clock.clone(), feed.clone());
        loops.push(tokio::spawn(async move {
            let uid = loop {
                match agent::register(&c, &settings).await {
                    Ok(uid) => break uid,
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            };
            tokio::spawn(agent::lease_loop(c.clone(), settings.clone(), uid, ck.clone()));
            tokio::spawn(agent::status_loop(c.clone(), settings.clone(), observed.clone(), ck));
            pods::run(node, feed, ps, observed, futures::future::pending::<()>()).await;
        }));
    }
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}
