//! keel-overload: what keel's control plane does when pods are created at `--factor` times a
//! steady rate for `--burst` seconds (issue 24's overload test), measured, never asserted.
//! Starts the control plane (keel-store or etcd, keel-apiserver, one keel-kubelet with
//! `--nodes` simulated nodes, keel-scheduler, keel-controller-manager) from this binary's
//! folder, waits for the nodes, then creates bare pods open-loop at `--rate` for `--before`
//! seconds, `--rate × --factor` for `--burst`, `--rate` for `--after` (see
//! `keel_benches::overload`), and writes `--out` (JSON) with the answers per phase, lost
//! writes, live processes and the mutating p99's recovery; the verdicts go to stdout. A
//! missing write is read back from the store itself (`etcdctl get` and the key's history) while
//! the store still runs; `--keep-logs` keeps every process's log, `--hold-on-loss` the cluster.

use anyhow::Context;
use clap::Parser;
use keel_benches::controlplane::{ControlPlane, Shape};
use keel_benches::overload::Schedule;
use keel_benches::overload::run::{Shell, run};
use keel_benches::procstat;
use keel_testkit::Backend;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
struct Args {
    /// Simulated nodes (one keel-kubelet process).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// `--max-pods` of each simulated node.
    #[arg(long, default_value_t = 110)]
    max_pods: usize,
    /// Steady pods per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// The burst's multiple of the steady rate.
    #[arg(long, default_value_t = 5.0)]
    factor: f64,
    /// Seconds at the steady rate before the burst.
    #[arg(long, default_value_t = 60.0)]
    before: f64,
    /// Seconds of the burst.
    #[arg(long, default_value_t = 60.0)]
    burst: f64,
    /// Seconds at the steady rate after it.
    #[arg(long, default_value_t = 90.0)]
    after: f64,
    /// Creates in flight at most (the client side's connection pool).
    #[arg(long, default_value_t = 2000)]
    in_flight: usize,
    /// Seconds a create may take before it counts as a transport error.
    #[arg(long, default_value_t = 60.0)]
    answer_limit: f64,
    /// Seconds per window of the apiserver's histogram.
    #[arg(long, default_value_t = 5.0)]
    window: f64,
    /// `keel` (keel-store) or `etcd` under the apiserver.
    #[arg(long, default_value = "keel")]
    backend: String,
    /// Where the JSON report goes.
    #[arg(long, default_value = "overload.json")]
    out: PathBuf,
    /// A folder to copy every process's log into at the end (before the cluster is stopped).
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// Seconds to keep the cluster up after the report when a write is missing, so its store
    /// can be read by hand (the endpoint is printed on stderr).
    #[arg(long, default_value_t = 0.0)]
    hold_on_loss: f64,
}

/// What the store itself holds for each missing name: its current value (`etcdctl get`) and
/// its history (`etcdctl watch --rev 1`, every event of the key still in the store's history),
/// so a missing pod can be told apart: never written, written then deleted (and by whom, from
/// the deleting revision), or in the store but not served by the apiserver.
fn store_evidence(store: std::net::SocketAddr, namespace: &str, names: &[String]) -> serde_json::Value {
    let endpoint = format!("http://{store}");
    let run = |args: &[&str]| {
        std::process::Command::new("timeout")
            .arg("5")
            .arg("etcdctl")
            .arg("--endpoints")
            .arg(&endpoint)
            .args(args)
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_else(|e| format!("etcdctl: {e}"))
    };
    names
        .iter()
        .take(20)
        .map(|n| {
            let key = format!("/registry/pods/{namespace}/{n}");
            let get = run(&["get", &key, "-w", "json"]);
            // A watch never ends by itself: `timeout` stops it after its replay of the history.
            let history: String = run(&["watch", "--rev", "1", "--prev-kv", &key]).chars().take(20_000).collect();
            (n.clone(), json!({"key": key, "get": get, "history": history}))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let backend: Backend = a.backend.parse().map_err(anyhow::Error::msg)?;
    let load_before = procstat::loadavg();
    let cp = ControlPlane::start(&Shape { backend, nodes: a.nodes, max_pods: a.max_pods, manager_flags: Vec::new() });
    let client = cp.cluster.client().await;
    // kube-client retries a 429, 503 or 504 up to 15 times with backoff (`default_retry`, on by
    // default): the creates must see each answer as the apiserver gave it, or every 429 is
    // hidden as latency (a 500/s run counted 0 429s while the apiserver dropped 89,526).
    let mut config = cp.cluster.client_config().await;
    config.default_retry = false;
    let creates = kube::Client::try_from(config)?;
    cp.wait_nodes_ready(&client, a.nodes, Duration::from_secs(600)).await?;
    // Let the controller-manager and scheduler take their leases and sync before the clock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let schedule = Schedule { rate: a.rate, factor: a.factor, seconds: [a.before, a.burst, a.after] };
    let shell = Shell {
        in_flight: a.in_flight,
        window: Duration::from_secs_f64(a.window.max(0.5)),
        answer_limit: Duration::from_secs_f64(a.answer_limit.max(1.0)),
        namespace: "default".into(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut report = tokio::select! {
        r = run(&cp, client, creates, &schedule, &shell) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: the cluster is stopped, no report written"),
        _ = term.recv() => anyhow::bail!("terminated: the cluster is stopped, no report written"),
    };
    let missing: Vec<String> = report["writes"]["lost_names"]
        .as_array()
        .map(|v| v.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if !missing.is_empty() {
        report["writes"]["lost_in_store"] = store_evidence(cp.cluster.store_addr, "default", &missing);
    }
    if let Some(dir) = &a.keep_logs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let from = cp.cluster.path("");
        for e in std::fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                std::fs::copy(e.path(), dir.join(e.file_name())).with_context(|| format!("copying {}", e.path().display()))?;
            }
        }
    }
    let leadership = cp.leadership();
    report["leadership"] = json!({
        "lost": leadership.iter().filter(|(_, l)| l.contains("stopped leading")).count(),
        "log": leadership.iter().map(|(role, line)| json!([role, line])).collect::<Vec<_>>(),
    });
    report["machine"] = json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_before": load_before, "loadavg_after": procstat::loadavg(), "backend": a.backend, "nodes": a.nodes,
        "store": cp.cluster.store_addr.to_string(),
    });
    std::fs::write(&a.out, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", a.out.display()))?;
    if !missing.is_empty() && a.hold_on_loss > 0.0 {
        eprintln!(
            "{} write(s) missing ({}); the cluster stays up {} s: store http://{}, folder {}",
            missing.len(),
            missing.join(", "),
            a.hold_on_loss,
            cp.cluster.store_addr,
            cp.cluster.path("").display()
        );
        tokio::time::sleep(Duration::from_secs_f64(a.hold_on_loss)).await;
    }
    println!(
        "{}",
        json!({"report": a.out.display().to_string(), "verdicts": report["verdicts"], "answers": report["answers"],
            "writes": report["writes"], "mutating_p99": report["mutating_p99"], "leadership_lost": report["leadership"]["lost"],
            "machine": report["machine"]})
    );
    Ok(())
}
