//! The composition root: flags, the kube client, the clock, metrics and health serving, and
//! the controllers run while this instance leads.

use anyhow::Context as _;
use clap::Parser;
use keel_component::{health::Health, metrics, serve, shutdown};
use keel_controllers::clock::SystemClock;
use keel_controllers::flags::parse_duration;
use keel_controllers::nodelifecycle::{self, zones::Rates};
use keel_controllers::{daemonset, deployment, manager, metrics::Metrics, replicaset};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// keel-controller-manager: ReplicaSet, Deployment, node lifecycle, … controllers for Keel.
#[derive(Parser, Debug)]
#[command(name = "keel-controller-manager", version)]
struct Flags {
    /// Kubeconfig of the apiserver to manage (its current context).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Address to serve /healthz, /readyz and /metrics on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: String,
    /// HTTPS port for /healthz and /metrics (0: do not serve).
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    /// Run only while holding the Lease `--leader-elect-resource-namespace`/`-name` (kube's
    /// default). Until keel-leader is built in, only `--leader-elect=false` (one instance) runs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    /// Controllers to run: `*` (all), `name` to enable, `-name` to disable.
    #[arg(long, default_value = "*")]
    controllers: String,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_replicaset_syncs: usize,
    /// Deployments synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_deployment_syncs: usize,
    /// DaemonSets synced at once.
    #[arg(long, default_value_t = 2)]
    concurrent_daemonset_syncs: usize,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
    /// How long a node may go unheard before it is marked Unknown.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How long a new node may take to post its first status.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    node_startup_grace_period: Duration,
    /// Nodes per second tainted for eviction in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Nodes per second tainted in a partially disrupted large zone.
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Fraction of not-ready nodes (at least 3) that makes a zone partially disrupted.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// Zones with at most this many nodes stop evicting when partially disrupted.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    match kubeconfig {
        Some(path) => Ok(keel_component::client::from_kubeconfig(path).await?),
        None => Ok(kube::Client::try_from(kube::Config::infer().await.context("no --kubeconfig and no in-cluster config")?)?),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let flags = Flags::parse();
    if flags.leader_elect {
        // Several unelected instances would each act (create pods for the same slots): refuse
        // rather than run unfenced. keel-leader plugs in here once it is on main.
        anyhow::bail!(
            "leader election (Lease {}/{}) is not built into this keel-controller-manager yet; run a single instance with --leader-elect=false",
            flags.leader_elect_resource_namespace,
            flags.leader_elect_resource_name
        );
    }
    let enabled = manager::parse_controllers(&flags.controllers).map_err(anyhow::Error::msg)?;
    let cfg = manager::Config {
        enabled,
        replicaset: replicaset::Config { workers: flags.concurrent_replicaset_syncs, ..Default::default() },
        deployment: deployment::Config { workers: flags.concurrent_deployment_syncs },
        daemonset: daemonset::Config { workers: flags.concurrent_daemonset_syncs, ..Default::default() },
        nodelifecycle: nodelifecycle::Config {
            monitor_period: flags.node_monitor_period,
            grace_period: flags.node_monitor_grace_period,
            startup_grace_period: flags.node_startup_grace_period,
            rates: Rates {
                eviction_qps: flags.node_eviction_rate,
                secondary_qps: flags.secondary_node_eviction_rate,
                unhealthy_threshold: flags.unhealthy_zone_threshold,
                large_cluster: flags.large_cluster_size_threshold,
            },
        },
    };
    let client = client(flags.kubeconfig.as_ref()).await?;
    let registry = metrics::shared();
    let ours = Metrics::new();
    ours.register(&mut registry.lock().unwrap_or_else(|p| p.into_inner()));
    let health = Health::new();
    health.set_healthy("apiserver-client", true);
    health.set_ready(true);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = if flags.secure_port != 0 {
        let addr: SocketAddr = format!("{}:{}", flags.bind_address, flags.secure_port).parse().context("--bind-address/--secure-port")?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        let tls = serve::self_signed(&[flags.bind_address.clone(), "localhost".into()])?;
        let router = serve::router(health.clone(), registry.clone());
        Some(tokio::spawn(serve::serve(listener, Some(tls), router, stopped(stop_rx.clone()))))
    } else {
        None
    };
    tokio::spawn(async move {
        shutdown::signal().await;
        let _ = stop_tx.send(true);
    });
    manager::run(client, cfg, Arc::new(SystemClock), ours, stopped(stop_rx)).await?;
    if let Some(s) = server {
        let _ = s.await;
    }
    Ok(())
}
