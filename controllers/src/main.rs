//! The composition root: flags, the kube client, the clock, metrics and health serving, and
//! the controllers run while this instance leads.

use anyhow::Context as _;
use clap::Parser;
use keel_component::{health::Health, metrics, serve, shutdown};
use keel_controllers::clock::SystemClock;
use keel_controllers::fence::{self, FenceMetrics, Unelected};
use keel_controllers::flags::parse_duration;
use keel_controllers::nodelifecycle::{self, zones::Rates};
use keel_controllers::{daemonset, deployment, election, manager, metrics::Metrics, replicaset};
use keel_leader::Elector;
use rand::SeedableRng;
use rand::rngs::StdRng;
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
    /// Run the controllers only while holding the Lease `--leader-elect-resource-namespace`/
    /// `-name` (kube's default; run several replicas for HA).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a standby waits for a silent leader's lease before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps acting without renewing; must be below the lease duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew the lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// The lock object; only `leases` (kube removed the others).
    #[arg(long, default_value = "leases")]
    leader_elect_resource_lock: String,
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
    /// CA bundle (PEM) published as `kube-root-ca.crt` in every namespace (default: the CA the
    /// kubeconfig trusts).
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// How often every ResourceQuota is recounted.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    resource_quota_sync_period: Duration,
}

impl Flags {
    /// The election settings (identity filled in later), checked as client-go checks them, or
    /// `None` with `--leader-elect=false`.
    fn leader_config(&self) -> anyhow::Result<Option<keel_leader::Config>> {
        if !self.leader_elect {
            return Ok(None);
        }
        if self.leader_elect_resource_lock != "leases" {
            anyhow::bail!(
                "--leader-elect-resource-lock={}: only \"leases\" is supported (endpoints and configmaps locks were removed from Kubernetes)",
                self.leader_elect_resource_lock
            );
        }
        let config = keel_leader::Config {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
            ..keel_leader::Config::new(&self.leader_elect_resource_namespace, &self.leader_elect_resource_name, "checked-at-start")
        };
        config.validate()?;
        Ok(Some(config))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keel-controller-manager".into())
}

/// kube's choice of the published CA: `--root-ca-file`, else the CA the manager's own client
/// trusts (the kubeconfig's current cluster, or the in-cluster service account's `ca.crt`).
fn root_ca(flags: &Flags) -> anyhow::Result<Option<String>> {
    use base64::Engine as _;
    if let Some(path) = &flags.root_ca_file {
        let pem = std::fs::read_to_string(path).with_context(|| format!("--root-ca-file {}", path.display()))?;
        anyhow::ensure!(pem.contains("-----BEGIN CERTIFICATE-----"), "--root-ca-file {}: no PEM certificate in it", path.display());
        return Ok(Some(pem));
    }
    let Some(path) = &flags.kubeconfig else {
        return Ok(std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt").ok());
    };
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("--kubeconfig {}", path.display()))?;
    let context = kc.current_context.as_deref().and_then(|c| kc.contexts.iter().find(|n| n.name == c)).and_then(|n| n.context.as_ref());
    let cluster = context.and_then(|c| kc.clusters.iter().find(|n| n.name == c.cluster)).and_then(|n| n.cluster.as_ref());
    let Some(cluster) = cluster else { return Ok(None) };
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD.decode(data.trim()).context("the kubeconfig's certificate-authority-data")?;
        return Ok(Some(String::from_utf8(pem).context("the kubeconfig's certificate-authority-data")?));
    }
    match &cluster.certificate_authority {
        Some(file) => Ok(Some(std::fs::read_to_string(file).with_context(|| format!("the kubeconfig's certificate-authority {file}"))?)),
        None => Ok(None),
    }
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let flags = Flags::parse();
    let leader = flags.leader_config()?;
    let enabled = manager::parse_controllers(&flags.controllers).map_err(anyhow::Error::msg)?;
    let cfg = manager::Config {
        enabled,
        replicaset: replicaset::Config { workers: flags.concurrent_replicaset_syncs, ..Default::default() },
        deployment: deployment::Config { workers: flags.concurrent_deployment_syncs, ..Default::default() },
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
        root_ca: root_ca(&flags)?,
        resource_quota_sync_period: flags.resource_quota_sync_period,
        bug_ignore_expectations: false,
    };
    let client = client(flags.kubeconfig.as_ref()).await?;
    let registry = metrics::shared();
    let ours = Metrics::new();
    let fence_metrics = FenceMetrics::default();
    {
        let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
        ours.register(&mut r);
        fence_metrics.register(&mut r);
    }
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
    // Identity comes from the OS here, and only here: unique per process start, as kube's
    // `hostname_<uuid>`, so a restarted manager waits like any other candidate.
    let identity = format!("{}_{:016x}", hostname(), rand::Rng::random::<u64>(&mut StdRng::from_os_rng()));
    let clock = Arc::new(SystemClock);
    let lease = format!("{}/{}", flags.leader_elect_resource_namespace, flags.leader_elect_resource_name);
    match leader {
        Some(leader) => {
            let config = keel_leader::Config { identity: identity.clone(), ..leader };
            let (elector, leadership) = Elector::new(client.clone(), config, Arc::new(keel_leader::SystemClock))?;
            tracing::info!(%identity, %lease, "leader election on");
            let elector = tokio::spawn(elector.run(stopped(stop_rx.clone())));
            let controllers = fence::client(client, Arc::new(leadership.clone()), fence_metrics.clone());
            let name = flags.leader_elect_resource_name.clone();
            election::run_while_leading(leadership, stop_rx.clone(), |stop| {
                let (controllers, cfg, clock, ours, fm, name) =
                    (controllers.clone(), cfg.clone(), clock.clone(), ours.clone(), fence_metrics.clone(), name.clone());
                async move {
                    fm.set_leading(&name, true);
                    let done = manager::run(controllers, cfg, clock, ours, stop).await;
                    fm.set_leading(&name, false);
                    done
                }
            })
            .await?;
            // The elector stops leading (so the fence refuses every write) before it gives the
            // lease up, so a standby may start at once.
            tokio::time::timeout(Duration::from_secs(15), elector)
                .await
                .context("releasing the lease took too long")?
                .context("the elector task")?;
        }
        None => {
            tracing::warn!(%identity, "leader election off: this instance acts unfenced; run only one");
            let controllers = fence::client(client, Arc::new(Unelected(identity)), fence_metrics.clone());
            fence_metrics.set_leading(&flags.leader_elect_resource_name, true);
            manager::run(controllers, cfg, clock, ours, stopped(stop_rx)).await?;
        }
    }
    if let Some(s) = server {
        let _ = s.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_election_flags_default_to_kube_controller_managers() {
        let f = Flags::try_parse_from(["keel-controller-manager"]).expect("parses");
        let c = f.leader_config().ok().flatten().expect("electing by default");
        assert_eq!((c.namespace.as_str(), c.name.as_str()), ("kube-system", "kube-controller-manager"));
        let s = Duration::from_secs;
        assert_eq!((c.lease_duration, c.renew_deadline, c.retry_period), (s(15), s(10), s(2)));
        let off = Flags::try_parse_from(["keel-controller-manager", "--leader-elect=false"]).expect("parses");
        assert!(off.leader_config().ok().flatten().is_none());
        let lock = Flags::try_parse_from(["keel-controller-manager", "--leader-elect-resource-lock=endpoints"]).expect("parses");
        assert!(lock.leader_config().is_err());
        let bad = Flags::try_parse_from(["keel-controller-manager", "--leader-elect-renew-deadline=20s"]).expect("parses");
        let e = bad.leader_config().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("leaseDuration must be greater than renewDeadline"), "{e}");
    }
}
