//! The composition root: flags → kube client, clock, randomness, leader election, informers,
//! the scheduling loop and the HTTP endpoints.

use anyhow::Context;
use clap::Parser;
use keel_leader::{Clock, Elector, SystemClock};
use keel_scheduler::driver::{Parts, Scheduler};
use keel_scheduler::flags::Flags;
use keel_scheduler::metrics::Metrics;
use keel_scheduler::{Error, events, http, informer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

async fn client(path: &std::path::Path) -> Result<(kube::Client, String), Error> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let bad = |m: String| Error::Kubeconfig { path: path.display().to_string(), message: m };
    let kc = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| bad(e.to_string()))?;
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?;
    Ok((client, url))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keel-scheduler".into())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = flags.config()?;
    let (client, url) = client(&flags.kubeconfig).await?;
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
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    if flags.secure_port != 0 {
        let addr = std::net::SocketAddr::new(flags.bind_address, flags.secure_port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Serve { addr: addr.to_string(), source })?;
        let router = http::router(metrics.clone(), ready.clone());
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                tracing::error!(error = %e, "serving /healthz and /metrics failed");
            }
        });
        tracing::info!(%addr, "serving /healthz /readyz /metrics");
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
        ready,
        lease_name: flags.leader_elect_resource_name.clone(),
    };
    Scheduler::new(parts).run(shutdown_signal()).await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    if let Some(t) = elector_task {
        tokio::time::timeout(Duration::from_secs(10), t).await.context("releasing the lease took too long")?.context("the elector task")?;
    }
    Ok(())
}
