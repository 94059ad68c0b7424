//! The composition root: flags → kube client, clock, randomness, leader election, informers,
//! the scheduling loop and the HTTPS endpoints.

use anyhow::Context;
use clap::Parser;
use keel_component::{client, health::Health, metrics, serve, shutdown};
use keel_leader::{Clock, Elector, SystemClock};
use keel_scheduler::driver::{Parts, Scheduler};
use keel_scheduler::flags::Flags;
use keel_scheduler::metrics::Metrics;
use keel_scheduler::{Error, events, informer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keel-scheduler".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = flags.config()?;
    let kube_config = client::config(&flags.kubeconfig).await.map_err(Error::from)?;
    let url = kube_config.cluster_url.to_string();
    let client = kube::Client::try_from(kube_config).map_err(|e| Error::from(keel_component::Error::Client(e)))?;
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(v)) => tracing::info!(apiserver = %url, version = %v.git_version, "connected"),
        Ok(Err(e)) => tracing::error!(apiserver = %url, error = %e, "cannot reach the apiserver; will keep retrying"),
        Err(_) => tracing::error!(apiserver = %url, "the apiserver did not answer within 5 s; will keep retrying"),
    }
    // Randomness and identity come from the OS here, and only here.
    let mut os = StdRng::from_os_rng();
    let seed = flags.seed.unwrap_or_else(|| rand::Rng::random(&mut os));
    let identity = format!("{}_{:016x}", hostname(), rand::Rng::random::<u64>(&mut os));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let registry = metrics::shared();
    let metrics = Metrics::register(&mut registry.lock().unwrap_or_else(|p| p.into_inner()));
    let health = Health::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    if flags.secure_port != 0 {
        let addr = std::net::SocketAddr::new(flags.bind_address, flags.secure_port);
        let tls = match (&flags.tls_cert_file, &flags.tls_private_key_file) {
            (Some(cert), Some(key)) => serve::from_files(cert, key).map_err(Error::from)?,
            _ => serve::self_signed(&["localhost".to_string(), flags.bind_address.to_string()]).map_err(Error::from)?,
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Serve { addr: addr.to_string(), source })?;
        let router = serve::router(health.clone(), registry.clone());
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = serve::serve(listener, Some(tls), router, stop).await {
                tracing::error!(error = %e, "serving /healthz and /metrics failed");
            }
        });
        tracing::info!(%addr, "serving https /healthz /readyz /metrics");
    }

    let mut elector_task = None;
    let leadership = if flags.leader_elect {
        let (elector, leadership) = Elector::new(client.clone(), flags.leader(&identity), clock.clone())?;
        elector_task = Some(tokio::spawn(elector.run(stopped(stop_rx.clone()))));
        tracing::info!(%identity, lease = %format!("{}/{}", flags.leader_elect_resource_namespace, flags.leader_elect_resource_name), "leader election on");
        Some(leadership)
    } else {
        None
    };

    let (tx, rx) = mpsc::channel(4096);
    let _stores = informer::start(client.clone(), tx);
    let recorder = events::start(
        client.clone(),
        config.scheduler_name.clone(),
        identity.clone(),
        clock.clone(),
        metrics.clone(),
        config.request_timeout,
    );
    let binder = keel_scheduler::binder::Binder::new(client, config.request_timeout);
    tracing::info!(seed, scheduler = %config.scheduler_name, "scheduler starting");
    let parts = Parts {
        config,
        updates: rx,
        binder,
        recorder,
        metrics,
        clock,
        rng: StdRng::seed_from_u64(seed),
        leadership,
        identity,
        health,
        lease_name: flags.leader_elect_resource_name.clone(),
        bug_bind_without_assume: false,
    };
    Scheduler::new(parts).run(shutdown::signal()).await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    if let Some(t) = elector_task {
        tokio::time::timeout(Duration::from_secs(10), t).await.context("releasing the lease took too long")?.context("the elector task")?;
    }
    Ok(())
}
