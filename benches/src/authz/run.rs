//! The async shell of the authorization benchmark: seeds the store once through the secured
//! cluster's first apiserver, stops it, then for every run starts one keel-apiserver over the
//! same store in the run's `--authorization-mode` (same client CA, certificates and data dir),
//! checks the mode with a request the plan says RBAC refuses, drives `workers` closed-loop
//! clients (each its own client certificate and connection) for a warm-up and a measured
//! phase, and stops it again.
//!
//! Invariants: only the measured phase is recorded (requests answered after the warm-up ends
//! and started before the phase ends); a non-2xx answer or a transport error is counted by its
//! code, never recorded as a latency; the apiserver's CPU is read from `/proc` at the measured
//! phase's two ends, so CPU per request is the server's alone (the generator shares the
//! machine); every apiserver this starts is stopped by PID before the next starts.

use super::{Kind, Plan, list_resource_version};
use crate::error::Error;
use crate::procstat;
use crate::promtext::{self, Class};
use futures::StreamExt;
use hdrhistogram::Histogram;
use keel_testkit::Cluster;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// Creates running concurrently while seeding.
const SEED_CONCURRENCY: usize = 16;

fn hist() -> Histogram<u64> {
    // 1 µs to 60 s with 3 significant digits: constant bounds, valid.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A kube client for `kubeconfig`, sent to `https` instead of the kubeconfig's server (the
/// benchmark's apiservers listen on new ports with the first one's certificates).
pub async fn client_for(kubeconfig: &Path, https: SocketAddr) -> Result<kube::Client, Error> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Setup(format!("{}: {e}", kubeconfig.display())))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| Error::Setup(e.to_string()))?;
    config.cluster_url = format!("https://{https}").parse().map_err(|e| Error::Setup(format!("{https}: {e}")))?;
    kube::Client::try_from(config).map_err(Error::Kube)
}

/// One request: its status code and body (`None` code for a transport error, with its text).
async fn send(client: &kube::Client, method: http::Method, path: &str, body: Vec<u8>) -> (Option<u16>, Result<bytes::Bytes, String>) {
    let req = match http::Request::builder().method(method).uri(path).header("content-type", "application/json").body(Body::from(body)) {
        Ok(r) => r,
        Err(e) => return (None, Err(e.to_string())),
    };
    match client.send(req).await {
        Ok(res) => {
            let code = res.status().as_u16();
            (Some(code), res.into_body().collect_bytes().await.map_err(|e| e.to_string()))
        }
        Err(e) => (None, Err(e.to_string())),
    }
}

/// Creates every object of the plan through `admin` (namespaces first); an object that exists
/// already (409) counts as created, so a re-run over the same store is fine. Returns how many
/// were created.
pub async fn seed(admin: &kube::Client, plan: &Plan) -> Result<usize, Error> {
    let all = plan.seed();
    let (namespaces, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|(path, _)| path == "/api/v1/namespaces");
    let mut created = 0;
    for batch in [namespaces, rest] {
        let mut results = futures::stream::iter(batch)
            .map(|(path, obj)| async move {
                let (code, body) = send(admin, http::Method::POST, &path, obj.to_string().into_bytes()).await;
                (path, code, body)
            })
            .buffer_unordered(SEED_CONCURRENCY);
        while let Some((path, code, body)) = results.next().await {
            match code {
                Some(201 | 200 | 409) => created += 1,
                _ => {
                    let text = body.map(|b| String::from_utf8_lossy(&b).chars().take(300).collect::<String>()).unwrap_or_else(|e| e);
                    return Err(Error::Setup(format!("seeding POST {path}: {code:?} {text}")));
                }
            }
        }
    }
    Ok(created)
}

/// An apiserver the benchmark started: its index in [`Cluster::components`] and address.
pub struct Server {
    index: usize,
    /// HTTPS address.
    pub https: SocketAddr,
    /// Its PID.
    pub pid: u32,
}

/// Starts keel-apiserver over the cluster's store in `mode`, with the client CA, serving
/// certificates and data dir of the cluster's first apiserver, and waits until it listens
/// (it listens once its caches and RBAC feeders are loaded).
pub fn start_apiserver(cluster: &mut Cluster, mode: &str) -> Server {
    let addrs = keel_testkit::net::free_addrs(2);
    let (https, http) = (addrs[0], addrs[1]);
    let certs = cluster.path("apiserver-1").join("certificates");
    let data = cluster.path("apiserver-1");
    let ca = cluster.path("client-ca.crt");
    let servers = cluster.etcd_servers();
    let args: Vec<String> = vec![
        "--etcd-servers".into(),
        servers,
        "--bind-address".into(),
        https.ip().to_string(),
        "--secure-port".into(),
        https.port().to_string(),
        "--insecure-port".into(),
        http.port().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--cert-dir".into(),
        certs.display().to_string(),
        "--client-ca-file".into(),
        ca.display().to_string(),
        "--authorization-mode".into(),
        mode.into(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let index = cluster.spawn("keel-apiserver", false, &argv);
    let p = &cluster.components[index];
    keel_testkit::net::wait_port(https, "keel-apiserver", p.log_path());
    Server { index, https, pid: p.pid() }
}

/// Stops a server [`start_apiserver`] started (SIGTERM, SIGKILL after 10 s).
pub fn stop(cluster: &mut Cluster, server: &Server) {
    cluster.components[server.index].terminate(Duration::from_secs(10));
}

/// What one worker measured.
struct WorkerOut {
    all: Histogram<u64>,
    by_kind: BTreeMap<Kind, Histogram<u64>>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// The phases of one run, as instants.
#[derive(Clone, Copy)]
struct Phases {
    measure_from: Instant,
    until: Instant,
}

async fn worker(plan: Plan, w: usize, client: kube::Client, watch_client: kube::Client, phases: Phases) -> WorkerOut {
    let mut out = WorkerOut { all: hist(), by_kind: BTreeMap::new(), ok: 0, errors: BTreeMap::new() };
    let mut rv = String::from("0");
    // The last watch stays open until the next one starts, as a client's informer holds it.
    let mut open_watch: Option<http::Response<Body>> = None;
    for i in 0usize.. {
        let start = Instant::now();
        if start >= phases.until {
            break;
        }
        let (kind, mut path) = plan.request(w, i);
        let code = if kind == Kind::WatchPods {
            path.push_str(&rv);
            open_watch = None;
            match http::Request::get(path.as_str()).body(Body::from(Vec::new())) {
                Ok(req) => match watch_client.send(req).await {
                    Ok(res) => {
                        let code = res.status().as_u16();
                        open_watch = Some(res);
                        Some(code)
                    }
                    Err(_) => None,
                },
                Err(_) => None,
            }
        } else {
            let (code, body) = send(&client, http::Method::GET, &path, Vec::new()).await;
            let next_is_watch = kind == Kind::ListPods && plan.request(w, i + 1).0 == Kind::WatchPods;
            if let Some(v) = body.as_ref().ok().filter(|_| next_is_watch).and_then(|b| list_resource_version(&String::from_utf8_lossy(b))) {
                rv = v;
            }
            code.filter(|_| body.is_ok())
        };
        let done = Instant::now();
        if start < phases.measure_from {
            continue;
        }
        match code {
            Some(c) if (200..300).contains(&c) => {
                let us = done.duration_since(start).as_micros().max(1) as u64;
                let _ = out.all.record(us);
                let _ = out.by_kind.entry(kind).or_insert_with(hist).record(us);
                out.ok += 1;
            }
            Some(c) => *out.errors.entry(format!("{} {c}", kind.name())).or_default() += 1,
            None => *out.errors.entry(format!("{} transport", kind.name())).or_default() += 1,
        }
    }
    drop(open_watch);
    out
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// How one run goes.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The `--authorization-mode`.
    pub mode: String,
    /// Round number.
    pub round: usize,
    /// Warm-up before the measured phase.
    pub warmup: Duration,
    /// Measured phase.
    pub seconds: Duration,
}

/// One run: start the apiserver in `spec.mode`, probe, drive the workers, stop it. The JSON
/// of the run and the figures the summary needs.
pub async fn run(
    cluster: &mut Cluster,
    plan: &Plan,
    kubeconfigs: &[PathBuf],
    spec: &RunSpec,
) -> Result<(Value, super::summary::Measured), Error> {
    let server = start_apiserver(cluster, &spec.mode);
    let result = measure(cluster, plan, kubeconfigs, spec, &server).await;
    let log_tail = match &result {
        Ok(_) => String::new(),
        Err(_) => cluster.components[server.index].log().lines().rev().take(30).collect::<Vec<_>>().join("\n"),
    };
    stop(cluster, &server);
    result.map_err(|e| Error::Setup(format!("{e}\napiserver log (last lines, newest first):\n{log_tail}")))
}

async fn measure(
    cluster: &Cluster,
    plan: &Plan,
    kubeconfigs: &[PathBuf],
    spec: &RunSpec,
    server: &Server,
) -> Result<(Value, super::summary::Measured), Error> {
    let admin = client_for(&cluster.kubeconfig, server.https).await?;
    let mut clients = Vec::new();
    for kc in kubeconfigs.iter().take(plan.workers) {
        clients.push((client_for(kc, server.https).await?, client_for(kc, server.https).await?));
    }
    // The mode check: each probe is refused under RBAC and answered under AlwaysAllow.
    let mut probes = Vec::new();
    for w in [0, 3].into_iter().filter(|w| *w < clients.len()) {
        let path = plan.forbidden_probe(w);
        let (code, _) = send(&clients[w].0, http::Method::GET, &path, Vec::new()).await;
        probes.push(json!({"worker": plan.worker(w).user, "path": path, "code": code}));
    }
    let t0 = Instant::now();
    let phases = Phases { measure_from: t0 + spec.warmup, until: t0 + spec.warmup + spec.seconds };
    let tasks: Vec<_> = clients.into_iter().enumerate().map(|(w, (c, wc))| tokio::spawn(worker(plan.clone(), w, c, wc, phases))).collect();
    tokio::time::sleep_until(phases.measure_from).await;
    let (cpu0, load0) = (procstat::cpu_seconds(server.pid), procstat::loadavg());
    let scrape0 = crate::density::run::scrape(&admin).await?;
    let measured_start = Instant::now();
    let mut all = hist();
    let mut by_kind: BTreeMap<Kind, Histogram<u64>> = BTreeMap::new();
    let (mut ok, mut errors) = (0u64, BTreeMap::<String, u64>::new());
    for t in tasks {
        let o = t.await.map_err(|e| Error::Setup(format!("a worker panicked: {e}")))?;
        let _ = all.add(&o.all);
        for (k, h) in o.by_kind {
            let _ = by_kind.entry(k).or_insert_with(hist).add(&h);
        }
        ok += o.ok;
        for (k, n) in o.errors {
            *errors.entry(k).or_default() += n;
        }
    }
    let elapsed = measured_start.elapsed().as_secs_f64().max(1e-9);
    let (cpu1, load1) = (procstat::cpu_seconds(server.pid), procstat::loadavg());
    let scrape1 = crate::density::run::scrape(&admin).await?;
    let server_side = promtext::interval(&scrape1, &scrape0);
    let lists = promtext::by_class(&server_side, Class::List);
    let rps = ok as f64 / elapsed;
    let cpu_us = if ok > 0 { (cpu1 - cpu0) * 1e6 / ok as f64 } else { 0.0 };
    let kinds: serde_json::Map<String, Value> = by_kind
        .iter()
        .map(|(k, h)| (k.name().to_string(), json!({"count": h.len(), "p50_ms": ms(h, 0.5), "p90_ms": ms(h, 0.9), "p99_ms": ms(h, 0.99)})))
        .collect();
    let measured = super::summary::Measured {
        mode: spec.mode.clone(),
        round: spec.round,
        rps,
        p50_ms: ms(&all, 0.5),
        p99_ms: ms(&all, 0.99),
        cpu_us_per_request: cpu_us,
    };
    let out = json!({
        "mode": spec.mode, "round": spec.round, "workers": plan.workers,
        "seconds": elapsed, "requests": ok, "rps": rps,
        "p50_ms": ms(&all, 0.5), "p90_ms": ms(&all, 0.9), "p99_ms": ms(&all, 0.99), "max_ms": all.max() as f64 / 1000.0,
        "by_kind": kinds, "errors": errors, "probes": probes,
        "apiserver_cpu_s": cpu1 - cpu0, "apiserver_cpu_us_per_request": cpu_us,
        "apiserver_cores": (cpu1 - cpu0) / elapsed,
        "apiserver_rss_mib": procstat::status_mib(server.pid, "VmRSS:"),
        "server_lists": {"count": lists.count, "mean_ms": if lists.count > 0.0 { lists.sum / lists.count * 1000.0 } else { 0.0 }, "p99_ms": lists.quantile(0.99).map(|s| s * 1000.0)},
        "loadavg_before": load0, "loadavg_after": load1,
    });
    Ok((out, measured))
}
