//! The composition root: flags, the kube client, the clock, metrics, and the controllers run.

use anyhow::Context as _;
use clap::Parser;
use keel_controllers::clock::SystemClock;
use keel_controllers::{deployment, manager, metrics::Metrics, replicaset};
use std::path::PathBuf;
use std::sync::Arc;

/// keel-controller-manager: ReplicaSet, Deployment, node lifecycle, … controllers for Keel.
#[derive(Parser, Debug)]
#[command(name = "keel-controller-manager", version)]
struct Flags {
    /// Kubeconfig of the apiserver to manage (its current context).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Controllers to run: `*` (all), `name` to enable, `-name` to disable.
    #[arg(long, default_value = "*")]
    controllers: String,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_replicaset_syncs: usize,
    /// Deployments synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_deployment_syncs: usize,
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let flags = Flags::parse();
    let enabled = manager::parse_controllers(&flags.controllers).map_err(anyhow::Error::msg)?;
    let cfg = manager::Config {
        enabled,
        replicaset: replicaset::Config { workers: flags.concurrent_replicaset_syncs, ..Default::default() },
        deployment: deployment::Config { workers: flags.concurrent_deployment_syncs },
    };
    let client = client(flags.kubeconfig.as_ref()).await?;
    let metrics = Metrics::new();
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    manager::run(client, cfg, Arc::new(SystemClock), metrics, stop).await?;
    Ok(())
}
