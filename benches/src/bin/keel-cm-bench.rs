//! keel-cm-bench: the whole control plane at scale, measured (never asserted): `--deployments`
//! Deployments × `--replicas` pods applied with one `kubectl apply`, until every pod is Running.
//!
//! Starts one keel-store member and keel-apiserver (keel-testkit), one keel-kubelet hosting
//! `--nodes` simulated nodes, keel-scheduler and keel-controller-manager (default flags, leader
//! election on, no HTTPS ports), all as processes from the folder this binary is in (build
//! them in release first). Once every node is Ready it writes the Deployments to a file and
//! runs `kubectl apply -f` on it; the benchmark's own watch of pods records when each pod was
//! first seen, bound and Running.
//!
//! Reports (one JSON line on stdout, a per-second timeline on stderr): apply → all Running,
//! the `kubectl apply` itself, the first/last pod created, bound and Running; CPU seconds
//! (utime+stime from `/proc/<pid>/stat`) of every process over the measured phase and their
//! peak RSS (`VmHWM`); the apiserver's requests per second by verb (its
//! `apiserver_request_total` on `/metrics`, read before and after) and the store revisions
//! written per second (every write through the apiserver is one revision).
#![allow(clippy::disallowed_methods)]

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use keel_benches::controlplane::{ControlPlane, Shape};
use keel_benches::procstat::{cpu_seconds, loadavg, status_mib};
use keel_testkit::Backend;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Deployments to apply.
    #[arg(long, default_value_t = 1000)]
    deployments: usize,
    /// Replicas of each.
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// Simulated nodes (one keel-kubelet process).
    #[arg(long, default_value_t = 200)]
    nodes: usize,
    /// Give up after this many seconds of the measured phase.
    #[arg(long, default_value_t = 900)]
    limit_seconds: u64,
    /// kubectl processes applying at once, each its share of the Deployments (kubectl's client
    /// allows 5 requests/s with bursts of 10, and `apply` makes two per new object).
    #[arg(long, default_value_t = 1)]
    apply_procs: usize,
    /// Extra keel-controller-manager flags (space-separated).
    #[arg(long, default_value = "")]
    manager_flags: String,
}

fn manifests(which: std::ops::Range<usize>, replicas: usize) -> String {
    let mut out = String::new();
    for i in which {
        out.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i:04}, namespace: default}}\nspec:\n  replicas: {replicas}\n  \
             selector: {{matchLabels: {{app: app-{i:04}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i:04}}}}}\n    spec:\n      \
             containers: [{{name: c, image: \"registry.example/app:1\", resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]\n"
        ));
    }
    out
}

/// When each pod was first seen, bound, Running.
#[derive(Default)]
struct Seen {
    created: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn span(m: &HashMap<String, Instant>, t0: Instant) -> serde_json::Value {
    let first = m.values().min().map(|t| t.duration_since(t0).as_secs_f64());
    let last = m.values().max().map(|t| t.duration_since(t0).as_secs_f64());
    json!({"count": m.len(), "first_s": first, "last_s": last})
}

async fn revision(client: &kube::Client) -> i64 {
    let list = Api::<Node>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await;
    list.ok().and_then(|l| l.metadata.resource_version).and_then(|rv| rv.parse().ok()).unwrap_or(0)
}

/// The apiserver's `apiserver_request_total`, summed per verb.
async fn requests_by_verb(client: &kube::Client) -> std::collections::BTreeMap<String, f64> {
    let mut by_verb = std::collections::BTreeMap::new();
    let Ok(req) = http::Request::get("/metrics").body(Vec::new()) else { return by_verb };
    let text = client.request_text(req).await.unwrap_or_default();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let verb = line.split("verb=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *by_verb.entry(verb.to_string()).or_insert(0.0) += value;
    }
    by_verb
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let total = args.deployments * args.replicas;
    let load_start = loadavg();
    let cp = ControlPlane::start(&Shape {
        backend: Backend::Keel,
        nodes: args.nodes,
        max_pods: 110,
        manager_flags: args.manager_flags.split_whitespace().map(String::from).collect(),
    });
    let client = cp.cluster.client().await;
    let t = Instant::now();
    cp.wait_nodes_ready(&client, args.nodes, Duration::from_secs(600)).await?;
    eprintln!("{} nodes Ready in {:.1?}", args.nodes, t.elapsed());
    // Let the manager take its lease and sync its caches before the clock starts.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    {
        let seen = seen.clone();
        let pods = Api::<Pod>::namespaced(client.clone(), "default");
        tokio::spawn(async move {
            let mut s = std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff().applied_objects());
            while let Some(Ok(p)) = s.next().await {
                let (Some(name), Ok(mut m)) = (p.metadata.name.clone(), seen.lock()) else { continue };
                let now = Instant::now();
                m.created.entry(name.clone()).or_insert(now);
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    m.bound.entry(name.clone()).or_insert(now);
                }
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    m.running.entry(name).or_insert(now);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let procs = args.apply_procs.max(1);
    let mut files = Vec::new();
    for k in 0..procs {
        let file = cp.cluster.path(&format!("deployments-{k}.yaml"));
        let share = (k * args.deployments / procs)..((k + 1) * args.deployments / procs);
        std::fs::write(&file, manifests(share, args.replicas)).context("writing the manifests")?;
        files.push(file);
    }
    let mut pids = cp.pids();
    pids.push(("bench (watch)".into(), std::process::id()));
    let cpu_before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let rev_before = revision(&client).await;
    let requests_before = requests_by_verb(&client).await;

    let t0 = Instant::now();
    let kubeconfig = cp.cluster.kubeconfig.clone();
    let cache = cp.cluster.path("kube-cache");
    let apply = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let children: Vec<_> = files
            .iter()
            .map(|file| {
                std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .arg("--cache-dir")
                    .arg(&cache)
                    .args(["apply", "-f"])
                    .arg(file)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            })
            .collect();
        let mut outs = Vec::new();
        for c in children {
            outs.push(c.and_then(|c| c.wait_with_output()));
        }
        (started.elapsed(), outs)
    });
    let mut apply = Some(apply);
    let mut apply_secs = None;
    let mut throttled = 0;
    let deadline = t0 + Duration::from_secs(args.limit_seconds);
    let mut last_print = Instant::now();
    let cm_pid = cp.pids().iter().find(|p| p.0 == "controller-manager").map_or(0, |p| p.1);
    loop {
        if let Some(h) = apply.as_ref()
            && h.is_finished()
            && let Some(h) = apply.take()
        {
            let (took, outs) = h.await.context("kubectl apply task")?;
            for out in outs {
                let out = out.context("running kubectl")?;
                let err = String::from_utf8_lossy(&out.stderr);
                anyhow::ensure!(out.status.success(), "kubectl apply failed: {err}");
                throttled += err.lines().filter(|l| l.contains("client-side throttling")).count();
            }
            apply_secs = Some(took.as_secs_f64());
            eprintln!("kubectl apply done in {took:.1?} ({throttled} client-side throttling messages)");
        }
        let (created, bound, running) = seen.lock().map(|m| (m.created.len(), m.bound.len(), m.running.len())).unwrap_or_default();
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "t={:5.1}s created={created} bound={bound} running={running} manager_cpu={:.1}s manager_rss={} MiB load={}",
                t0.elapsed().as_secs_f64(),
                cpu_seconds(cm_pid),
                status_mib(cm_pid, "VmRSS:"),
                loadavg()
            );
        }
        if running >= total && apply.is_none() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {running} of {total} pods Running after {} s\n{}",
            args.limit_seconds,
            cp.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let phase = t0.elapsed().as_secs_f64();
    let rev_after = revision(&client).await;
    let requests_after = requests_by_verb(&client).await;
    let requests: serde_json::Map<String, serde_json::Value> = requests_after
        .iter()
        .map(|(verb, n)| (verb.clone(), json!(n - requests_before.get(verb).copied().unwrap_or(0.0))))
        .filter(|(_, n)| n.as_f64().unwrap_or(0.0) > 0.0)
        .collect();
    let all_requests: f64 = requests.values().filter_map(|n| n.as_f64()).sum();
    let cpu: serde_json::Map<String, serde_json::Value> =
        pids.iter().zip(&cpu_before).map(|((n, p), b)| (n.clone(), json!(((cpu_seconds(*p) - b) * 100.0).round() / 100.0))).collect();
    let peak: serde_json::Map<String, serde_json::Value> = pids.iter().map(|(n, p)| (n.clone(), json!(status_mib(*p, "VmHWM:")))).collect();
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let summary = json!({
        "deployments": args.deployments, "replicas": args.replicas, "pods": total, "nodes": args.nodes,
        "apply_to_all_running_s": (phase * 10.0).round() / 10.0,
        "kubectl_apply_s": apply_secs, "kubectl_processes": procs, "kubectl_throttling_messages": throttled,
        "created": span(&seen.created, t0), "bound": span(&seen.bound, t0), "running": span(&seen.running, t0),
        "cpu_seconds": cpu,
        "controller_manager_cpu_cores_avg": ((cpu["controller-manager"].as_f64().unwrap_or(0.0) / phase) * 100.0).round() / 100.0,
        "peak_rss_mib": peak,
        "apiserver_requests": requests,
        "apiserver_requests_per_second": ((all_requests / phase) * 10.0).round() / 10.0,
        "store_revisions": rev_after - rev_before,
        "writes_per_second": (((rev_after - rev_before) as f64 / phase) * 10.0).round() / 10.0,
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_start": load_start, "loadavg_end": loadavg(),
    });
    println!("{summary}");
    Ok(())
}
