//! keel-sched-bench: the scheduler's throughput and latency, measured (never asserted).
//!
//! Starts keel-store member(s) and keel-apiserver as processes (keel-testkit, binaries next to
//! this one: build them in release first), creates `--nodes` plain Node objects and `--pods`
//! pods through the API, runs keel-scheduler, and watches every pod until it is bound.
//!
//! - `--mode pending` (default): all pods are created first, then the scheduler starts;
//!   pods/s is first bind → last bind (the scheduler's own rate over a full queue).
//! - `--mode live`: the scheduler runs first and pods are created as fast as
//!   `--create-concurrency` allows; create → bound p50/p99 is the latency a user sees.
//!
//! CPU seconds of every process during the measured phase come from `/proc/<pid>/stat`;
//! `--perf <file>` also records a `perf record -g` profile of them for that phase.
#![allow(clippy::disallowed_methods)]

use anyhow::Context;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use keel_testkit::Cluster;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Nodes to create.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Store members.
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// `pending` (create all, then schedule) or `live` (schedule while creating).
    #[arg(long, default_value = "pending")]
    mode: String,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 64)]
    create_concurrency: usize,
    /// Record a perf profile of the measured phase into this file.
    #[arg(long)]
    perf: Option<String>,
    /// Extra keel-scheduler flags (space-separated).
    #[arg(long, default_value = "")]
    scheduler_flags: String,
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn node(i: usize) -> Node {
    let alloc = json!({"cpu": "4", "memory": "16Gi", "pods": "110"});
    serde_json::from_value(json!({"metadata": {"name": format!("node-{i:04}"), "labels": {"zone": format!("z{}", i % 3)}}, "status": {"capacity": alloc, "allocatable": alloc}}))
        .expect("node")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i:05}"), "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))
    .expect("pod")
}

type Times = Arc<Mutex<HashMap<String, Instant>>>;

async fn create_pods(client: &kube::Client, n: usize, concurrency: usize, created: Times) -> anyhow::Result<()> {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, created) = (api.clone(), created.clone());
            async move {
                let p = pod(i);
                let started = Instant::now();
                api.create(&PostParams::default(), &p).await.with_context(|| format!("create pod {i}"))?;
                if let Ok(mut m) = created.lock() {
                    m.insert(format!("pod-{i:05}"), started);
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load_start = loadavg();
    let mut cluster = Cluster::builder().members(args.members).start();
    let client = cluster.client().await;

    let t = Instant::now();
    let nodes = Api::<Node>::all(client.clone());
    futures::stream::iter(0..args.nodes)
        .map(|i| {
            let nodes = nodes.clone();
            async move { nodes.create(&PostParams::default(), &node(i)).await.map(|_| ()) }
        })
        .buffer_unordered(args.create_concurrency)
        .try_collect::<Vec<()>>()
        .await
        .context("create nodes")?;
    eprintln!("{} nodes created in {:.1?}", args.nodes, t.elapsed());

    // Every pod's first bound time, seen through a watch of our own.
    let bound: Times = Arc::new(Mutex::new(HashMap::new()));
    {
        let bound = bound.clone();
        let pods = Api::<Pod>::namespaced(client.clone(), "default");
        tokio::spawn(async move {
            let mut s = std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff().applied_objects());
            while let Some(Ok(p)) = s.next().await {
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                    && let (Some(name), Ok(mut m)) = (p.metadata.name.clone(), bound.lock())
                {
                    m.entry(name).or_insert_with(Instant::now);
                }
            }
        });
    }
    let created: Times = Arc::new(Mutex::new(HashMap::new()));
    let mut sched_flags: Vec<String> = vec!["--secure-port".into(), "0".into()];
    sched_flags.extend(args.scheduler_flags.split_whitespace().map(String::from));
    let sched_flags: Vec<&str> = sched_flags.iter().map(String::as_str).collect();
    let live = args.mode == "live";
    if !live {
        let t = Instant::now();
        create_pods(&client, args.pods, args.create_concurrency, created.clone()).await?;
        eprintln!("{} pending pods created in {:.1?} ({:.0}/s)", args.pods, t.elapsed(), args.pods as f64 / t.elapsed().as_secs_f64());
    }
    let idx = cluster.spawn("keel-scheduler", true, &sched_flags);
    let mut pids: Vec<(String, u32)> = cluster.stores.iter().map(|p| (p.name.clone(), p.pid())).collect();
    pids.push(("apiserver".into(), cluster.apiservers[0].pid()));
    pids.push(("scheduler".into(), cluster.components[idx].pid()));
    pids.push(("bench (client + watch)".into(), std::process::id()));
    let cpu_before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let mut perf = args.perf.as_ref().map(|out| {
        let list = pids.iter().take(pids.len() - 1).map(|(_, p)| p.to_string()).collect::<Vec<_>>().join(",");
        std::process::Command::new("perf")
            .args(["record", "-F", "499", "-g", "-o", out, "-p", &list])
            .stderr(std::process::Stdio::null())
            .spawn()
    });
    let phase = Instant::now();
    if live {
        // Give the scheduler a moment to take its lease and sync, then stream the pods in.
        tokio::time::sleep(Duration::from_secs(2)).await;
        create_pods(&client, args.pods, args.create_concurrency, created.clone()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = bound.lock().map(|m| m.len()).unwrap_or(0);
        if n >= args.pods {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {} pods bound after 600 s\n{}", args.pods, cluster.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let phase_secs = phase.elapsed().as_secs_f64();
    if let Some(Ok(child)) = perf.as_mut() {
        let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    let cpu: Vec<(String, f64)> = pids.iter().zip(&cpu_before).map(|((n, p), b)| (n.clone(), cpu_seconds(*p) - b)).collect();

    // How many `Scheduled` events the scheduler's best-effort writer got in (the rest it drops,
    // as client-go's broadcaster does when behind).
    let events = Api::<Event>::namespaced(client.clone(), "default").list(&Default::default()).await.map(|l| l.items.len()).unwrap_or(0);
    let bound = bound.lock().map(|m| m.clone()).unwrap_or_default();
    let created = created.lock().map(|m| m.clone()).unwrap_or_default();
    let first = bound.values().min().copied().unwrap_or(phase);
    let last = bound.values().max().copied().unwrap_or(phase);
    let span = last.duration_since(first).as_secs_f64();
    let rate = if span > 0.0 { (bound.len().saturating_sub(1)) as f64 / span } else { 0.0 };
    let mut lat: Vec<f64> =
        created.iter().filter_map(|(name, c)| bound.get(name).map(|b| b.saturating_duration_since(*c).as_secs_f64() * 1000.0)).collect();
    lat.sort_by(f64::total_cmp);
    let summary = json!({
        "mode": args.mode, "nodes": args.nodes, "pods": args.pods, "members": args.members,
        "pods_per_second_first_to_last_bind": rate.round(),
        "first_to_last_bind_seconds": span,
        "create_to_bound_ms": {"p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99), "max": lat.last().copied().unwrap_or(0.0)},
        "phase_seconds": phase_secs,
        "cpu_seconds": cpu.iter().map(|(n, s)| (n.clone(), json!((s * 100.0).round() / 100.0))).collect::<serde_json::Map<_, _>>(),
        "loadavg_start": load_start, "loadavg_end": loadavg(),
        "events_written": events,
    });
    println!("{summary}");
    Ok(())
}
