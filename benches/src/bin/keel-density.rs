//! keel-density: the control plane under clusterloader2-style density/load (issue 24),
//! measured, never asserted. Starts the store (keel-store, or the real etcd with
//! `--backend etcd`), keel-apiserver, one keel-kubelet with `--nodes` simulated nodes,
//! keel-scheduler and keel-controller-manager as processes from this binary's folder, waits for
//! every node to be Ready, then ramps Deployments to `--pods` pods at `--pods-per-second`,
//! rolls 10 % of them, scales all to half and deletes them (see `keel_benches::density`).
//!
//! Writes `--out`/density.json (API call latency by verb and resource per phase and overall,
//! pod startup, scheduler throughput, each process's CPU and RSS and their timeline) and
//! `--out`/density.png; prints the JSON's headline on stdout and a per-sample line on stderr.
#![allow(clippy::disallowed_methods)] // the composition root: the system clock lives here

use anyhow::Context;
use clap::Parser;
use keel_benches::controlplane::{ControlPlane, Shape};
use keel_benches::density::Config;
use keel_benches::density::run::{Clock, run};
use keel_benches::{plot, procstat};
use keel_testkit::Backend;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
struct Args {
    /// Simulated nodes (one keel-kubelet process).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods at the end of the ramp.
    #[arg(long, default_value_t = 30000)]
    pods: usize,
    /// Replicas per Deployment.
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// Steady pod creation rate of the ramp (and of the other phases' requests).
    #[arg(long, default_value_t = 100.0)]
    pods_per_second: f64,
    /// Share of the Deployments rolled.
    #[arg(long, default_value_t = 0.1)]
    update_fraction: f64,
    /// Longest a phase may take to converge, seconds.
    #[arg(long, default_value_t = 900)]
    phase_limit: u64,
    /// Seconds between timeline samples.
    #[arg(long, default_value_t = 5.0)]
    sample_every: f64,
    /// `keel` (keel-store) or `etcd` (the real etcd on the PATH) under the apiserver.
    #[arg(long, default_value = "keel")]
    backend: String,
    /// Seconds between the run's own LISTs of pods (cluster-wide and namespace, alternating).
    #[arg(long, default_value_t = 30.0)]
    list_every: f64,
    /// `--max-pods` of each simulated node.
    #[arg(long, default_value_t = 110)]
    max_pods: usize,
    /// Where density.json and density.png go.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> f64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }
}

fn uptime() -> String {
    std::process::Command::new("uptime").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let backend: Backend = a.backend.parse().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let (uptime_before, load_before) = (uptime(), procstat::loadavg());
    let cfg = Config {
        nodes: a.nodes,
        pods: a.pods,
        replicas: a.replicas.max(1),
        pods_per_second: a.pods_per_second,
        update_fraction: a.update_fraction,
        phase_limit: Duration::from_secs(a.phase_limit),
        namespace: "default".into(),
        list_every: Duration::from_secs_f64(a.list_every.max(0.5)),
    };
    let cp = ControlPlane::start(&Shape { backend, nodes: a.nodes, max_pods: a.max_pods, manager_flags: Vec::new() });
    let client = cp.cluster.client().await;
    let setup = tokio::time::Instant::now();
    cp.wait_nodes_ready(&client, a.nodes, Duration::from_secs(900)).await?;
    let registration = setup.elapsed().as_secs_f64();
    eprintln!("{} nodes Ready in {registration:.1} s", a.nodes);
    // Let the controller-manager take its lease and sync its caches before the clock starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SIGINT or SIGTERM ends the run early, but through the return below, so the cluster's
    // processes are stopped by PID when `cp` drops instead of outliving this one.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let run = run(&cp, client, &cfg, Arc::new(SystemClock), Duration::from_secs_f64(a.sample_every.max(0.5)));
    let mut out = tokio::select! {
        r = run => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: the cluster is stopped, no report written"),
        _ = term.recv() => anyhow::bail!("terminated: the cluster is stopped, no report written"),
    };
    let machine = json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "uptime_before": uptime_before, "uptime_after": uptime(),
        "loadavg_before": load_before, "loadavg_after": procstat::loadavg(),
        "backend": a.backend, "node_registration_s": (registration * 10.0).round() / 10.0,
    });
    out.report["machine"] = machine;
    let leadership = cp.leadership();
    let lost = leadership.iter().filter(|(_, l)| l.contains("stopped leading")).count();
    out.report["leadership"] = json!({
        "lost": lost,
        "log": leadership.iter().map(|(role, line)| json!([role, line])).collect::<Vec<_>>(),
    });
    let png = a.out.join("density.png");
    let title = format!("keel-density: {} nodes, {} pods at {}/s, backend {}", a.nodes, cfg.total_pods(), a.pods_per_second, a.backend);
    out.report["plot"] = match plot::draw(&png, &out, &title) {
        Ok(()) => json!(png.display().to_string()),
        Err(e) => json!({"error": e.to_string()}),
    };
    let path = a.out.join("density.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out.report)?).with_context(|| format!("writing {}", path.display()))?;
    let r = &out.report;
    let headline = json!({
        "report": path.display().to_string(), "plot": r["plot"], "elapsed_s": r["elapsed_s"],
        "phases": r["phases"].as_array().map(|p| p.iter().map(|p| json!([p["phase"], p["duration_s"], p["converged"]])).collect::<Vec<_>>()),
        "api_verdicts": r["api"]["verdicts"], "lists": {"slowest_cluster_s": r["api"]["lists"]["slowest_cluster_s"], "slowest_namespace_s": r["api"]["lists"]["slowest_namespace_s"]}, "pod_startup_ramp": r["pod_startup"]["ramp"], "scheduler_ramp": r["scheduler"]["ramp"],
        "control_plane_rss_mib": r["control_plane_rss_mib"], "leadership_lost": r["leadership"]["lost"], "machine": r["machine"],
    });
    println!("{headline}");
    Ok(())
}
