//! The async shell of the density run: paces the phases' requests, keeps two watches (pods
//! into a [`Tracker`], Deployments into their status) and a sampler (every `sample_every`:
//! pod counts, each process's CPU and RSS from `/proc`, and an interval of the apiserver's
//! request histogram from `/metrics`), then assembles the report from the pure parts.
//!
//! Invariants: a phase's requests are issued at the plan's steady rate whether or not earlier
//! ones have been answered (at most [`IN_FLIGHT`] at once, like a client's connection pool); a
//! phase ends when the watches show its target state or after `phase_limit`, and a phase that
//! did not converge is reported as such (`converged: false`), never dropped; the wall clock
//! comes from the [`Clock`] seam, elapsed time from tokio's.

use super::{Config, GROUP_LABEL, PHASES, deployment, lister, name, report, scale_patch, update_patch};
use crate::controlplane::ControlPlane;
use crate::error::Error;
use crate::procstat;
use crate::promtext::{self, Class, Scrape};
use crate::startup::{PodView, Tracker};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Requests of a paced phase in flight at once.
pub const IN_FLIGHT: usize = 128;

/// Wall-clock seconds since the Unix epoch (the seam; the binary reads the system clock).
pub trait Clock: Send + Sync {
    /// Now.
    fn wall(&self) -> f64;
}

/// What the run needs of a Deployment's status.
#[derive(Clone, Copy, Debug, Default)]
struct DeployState {
    spec: i32,
    generation: i64,
    observed: i64,
    replicas: i32,
    updated: i32,
    available: i32,
}

impl DeployState {
    fn of(d: &Deployment) -> DeployState {
        let st = d.status.clone().unwrap_or_default();
        DeployState {
            spec: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            generation: d.metadata.generation.unwrap_or(0),
            observed: st.observed_generation.unwrap_or(0),
            replicas: st.replicas.unwrap_or(0),
            updated: st.updated_replicas.unwrap_or(0),
            available: st.available_replicas.unwrap_or(0),
        }
    }

    /// The controller has seen the latest spec and every replica is updated and available.
    fn complete(&self) -> bool {
        self.observed >= self.generation && self.replicas == self.spec && self.updated == self.spec && self.available == self.spec
    }
}

#[derive(Default)]
struct Shared {
    tracker: Tracker,
    phase: String,
    deployments: HashMap<String, DeployState>,
    /// The Deployment list in progress.
    listing: Option<HashMap<String, DeployState>>,
    /// Deployment lists started, the first included.
    deployment_lists: usize,
}

type State = Arc<Mutex<Shared>>;

fn lock(s: &State) -> MutexGuard<'_, Shared> {
    // A panicked watch task cannot leave the maps half-updated in a way that matters here.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// One sample of the timeline.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the ramp started.
    pub t: f64,
    /// The phase then.
    pub phase: String,
    /// Live pods, bound, Running.
    pub live: usize,
    /// Live pods bound.
    pub bound: usize,
    /// Live pods Running.
    pub running: usize,
    /// Each process's CPU cores over the last interval, in [`Outcome::procs`] order.
    pub cores: Vec<f64>,
    /// Each process's RSS, MiB.
    pub rss_mib: Vec<f64>,
    /// p99 of mutating, read and list calls over the last interval, ms.
    pub p99_ms: [Option<f64>; 3],
    /// Apiserver requests per second over the last interval (histogram counts).
    pub requests_per_s: f64,
}

/// What the shell hands back: the JSON report and the timeline for the plot.
pub struct Outcome {
    /// The report.
    pub report: Value,
    /// Samples.
    pub timeline: Vec<Sample>,
    /// Process roles, in the samples' order.
    pub procs: Vec<String>,
    /// (phase, start s, end s).
    pub phases: Vec<(String, f64, f64)>,
    /// Binds per second since the ramp started.
    pub binds: Vec<(f64, f64)>,
}

fn view(p: &Pod) -> PodView {
    let status = p.status.as_ref();
    let ready = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    PodView {
        uid: p.metadata.uid.clone().unwrap_or_default(),
        created: p.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        bound: p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some(),
        running: ready || status.and_then(|s| s.phase.as_deref()) == Some("Running"),
    }
}

fn watch_pods(api: Api<Pod>, state: State, clock: Arc<dyn Clock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cfg = watcher::Config::default().labels(&format!("{GROUP_LABEL}=true"));
        let mut s = std::pin::pin!(watcher(api, cfg).default_backoff());
        while let Some(ev) = s.next().await {
            let now = clock.wall();
            let mut st = lock(&state);
            let phase = st.phase.clone();
            match ev {
                Ok(watcher::Event::Init) => st.tracker.begin_list(),
                Ok(watcher::Event::InitApply(p)) => st.tracker.listed(&view(&p), now, &phase),
                Ok(watcher::Event::InitDone) => st.tracker.end_list(),
                Ok(watcher::Event::Apply(p)) => st.tracker.apply(&view(&p), now, &phase),
                Ok(watcher::Event::Delete(p)) => st.tracker.delete(p.metadata.uid.as_deref().unwrap_or_default()),
                Err(_) => {}
            }
        }
    })
}

fn watch_deployments(api: Api<Deployment>, state: State) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cfg = watcher::Config::default().labels(&format!("{GROUP_LABEL}=true"));
        let mut s = std::pin::pin!(watcher(api, cfg).default_backoff());
        while let Some(ev) = s.next().await {
            let mut st = lock(&state);
            match ev {
                // A (re-)list replaces the map once complete: Deployments deleted in a gap go.
                Ok(watcher::Event::Init) => {
                    st.listing = Some(HashMap::new());
                    st.deployment_lists += 1;
                }
                Ok(watcher::Event::InitApply(d)) => {
                    let name = d.metadata.name.clone().unwrap_or_default();
                    st.listing.get_or_insert_with(HashMap::new).insert(name, DeployState::of(&d));
                }
                Ok(watcher::Event::InitDone) => {
                    st.deployments = st.listing.take().unwrap_or_default();
                }
                Ok(watcher::Event::Apply(d)) => {
                    st.deployments.insert(d.metadata.name.clone().unwrap_or_default(), DeployState::of(&d));
                }
                Ok(watcher::Event::Delete(d)) => {
                    st.deployments.remove(d.metadata.name.as_deref().unwrap_or_default());
                }
                _ => {}
            }
        }
    })
}

/// The apiserver's `/metrics` text now.
async fn metrics_text(client: &kube::Client) -> Result<String, Error> {
    let req = http::Request::get("/metrics").body(Vec::new()).map_err(|e| Error::Timeout(format!("building GET /metrics: {e}")))?;
    Ok(client.request_text(req).await?)
}

/// The apiserver's request histogram now.
pub async fn scrape(client: &kube::Client) -> Result<Scrape, Error> {
    Ok(promtext::parse(&metrics_text(client).await?))
}

/// The histogram and the 429 count ([`promtext::dropped`]) of one `/metrics` read.
async fn scrape_with_dropped(client: &kube::Client) -> Result<(Scrape, f64), Error> {
    let text = metrics_text(client).await?;
    Ok((promtext::parse(&text), promtext::dropped(&text)))
}

struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

fn sample_loop(client: kube::Client, state: State, pids: Vec<u32>, every: Duration, t0: Instant) -> Sampler {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let out = samples.clone();
    let task = tokio::spawn(async move {
        let mut prev_cpu: Vec<f64> = pids.iter().map(|p| procstat::cpu_seconds(*p)).collect();
        let mut prev_scrape = scrape(&client).await.unwrap_or_default();
        let mut prev_t = t0.elapsed().as_secs_f64();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let t = t0.elapsed().as_secs_f64();
            let dt = (t - prev_t).max(1e-3);
            let cpu: Vec<f64> = pids.iter().map(|p| procstat::cpu_seconds(*p)).collect();
            let cores = cpu.iter().zip(&prev_cpu).map(|(a, b)| ((a - b) / dt * 100.0).round() / 100.0).collect();
            let rss_mib = pids.iter().map(|p| procstat::status_mib(*p, "VmRSS:")).collect();
            let now = scrape(&client).await.unwrap_or_default();
            let window = promtext::interval(&now, &prev_scrape);
            let p99 = |c| promtext::by_class(&window, c).quantile(0.99).map(|s| (s * 1e4).round() / 10.0);
            let requests: f64 = window.values().map(|h| h.count).sum();
            let (phase, c) = {
                let st = lock(&state);
                (st.phase.clone(), st.tracker.counts())
            };
            let s = Sample {
                t: (t * 10.0).round() / 10.0,
                phase,
                live: c.live,
                bound: c.bound,
                running: c.running,
                cores,
                rss_mib,
                p99_ms: [p99(Class::Mutating), p99(Class::Read), p99(Class::List)],
                requests_per_s: (requests / dt * 10.0).round() / 10.0,
            };
            eprintln!(
                "t={:6.1}s {:<10} live={} bound={} running={} p99 mut/read/list={:?} req/s={} load={}",
                s.t,
                s.phase,
                s.live,
                s.bound,
                s.running,
                s.p99_ms,
                s.requests_per_s,
                procstat::loadavg()
            );
            if let Ok(mut v) = out.lock() {
                v.push(s);
            }
            (prev_cpu, prev_scrape, prev_t) = (cpu, now, t);
        }
    });
    Sampler { samples, task }
}

/// What a paced phase's requests gave: errors, the first error's text, and the generation each
/// answered Deployment had after the request (0 where the answer carries none).
#[derive(Default)]
struct Issued {
    errors: usize,
    first_error: Option<String>,
    generations: HashMap<String, i64>,
}

/// Issues `items` at the plan's pace (`pods_per_item` pods each), at most [`IN_FLIGHT`] at
/// once.
async fn paced<F, Fut>(cfg: &Config, items: &[usize], pods_per_item: usize, f: F) -> Issued
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<i64, kube::Error>> + Send + 'static,
{
    let start = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut set = tokio::task::JoinSet::new();
    for (k, &i) in items.iter().enumerate() {
        tokio::time::sleep_until(start + cfg.due(k, pods_per_item.max(1))).await;
        let Ok(permit) = gate.clone().acquire_owned().await else { break };
        let fut = f(i);
        set.spawn(async move {
            let r = fut.await;
            drop(permit);
            (i, r)
        });
    }
    let mut out = Issued::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Ok(generation))) => {
                out.generations.insert(name(i), generation);
            }
            Ok((_, Err(e))) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out
}

/// The generation a write's answer carries.
fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or(0)
}

/// Polls `done` every 200 ms until it holds or `limit` passes; whether it held.
async fn converge(state: &State, limit: Duration, done: impl Fn(&Shared) -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done(&lock(state)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the four phases against `cp` and returns the report.
pub async fn run(
    cp: &ControlPlane,
    client: kube::Client,
    cfg: &Config,
    clock: Arc<dyn Clock>,
    sample_every: Duration,
) -> Result<Outcome, Error> {
    let state: State = Arc::new(Mutex::new(Shared { phase: "setup".into(), ..Shared::default() }));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &cfg.namespace);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &cfg.namespace);
    let watches = [watch_pods(pods, state.clone(), clock.clone()), watch_deployments(deps.clone(), state.clone())];
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut procs = cp.pids();
    procs.push(("bench".into(), std::process::id()));
    let pids: Vec<u32> = procs.iter().map(|p| p.1).collect();
    let cpu_before: Vec<f64> = pids.iter().map(|p| procstat::cpu_seconds(*p)).collect();
    let (t0, wall0) = (Instant::now(), clock.wall());
    let sampler = sample_loop(client.clone(), state.clone(), pids.clone(), sample_every, t0);
    let (first_scrape, first_dropped) = scrape_with_dropped(&client).await?;
    let lists = lister::start(client.clone(), cfg.namespace.clone(), cfg.list_every, t0);

    let total = cfg.total_pods();
    let all: Vec<usize> = (0..cfg.deployments()).collect();
    let updated = cfg.updated();
    let mut phases = Vec::new();
    let mut phase_json = Vec::new();
    for phase in PHASES {
        lock(&state).phase = phase.to_string();
        let (before, dropped_before) = scrape_with_dropped(&client).await?;
        let start = t0.elapsed().as_secs_f64();
        let pp = PatchParams::default();
        // A patched Deployment is done once the watch shows the controller has observed the
        // generation the patch produced and every replica is updated and available.
        let caught_up = |s: &Shared, issued: &Issued, n: &str| {
            let want = issued.generations.get(n).copied().unwrap_or(i64::MAX);
            s.deployments.get(n).is_some_and(|d| d.generation >= want && d.complete())
        };
        let (converged, issued) = match phase {
            "ramp" => {
                let issued = paced(cfg, &all, cfg.replicas, |i| {
                    let (api, d) = (deps.clone(), deployment(cfg, i));
                    async move {
                        let d = d.map_err(kube::Error::SerdeError)?;
                        api.create(&PostParams::default(), &d).await.map(|d| generation(&d))
                    }
                })
                .await;
                let done = converge(&state, cfg.phase_limit, |s| s.tracker.counts().live == total && s.tracker.counts().running == total);
                (done.await, issued)
            }
            "update" => {
                let issued = paced(cfg, &updated, cfg.replicas, |i| {
                    let (api, pp) = (deps.clone(), pp.clone());
                    async move { api.patch(&name(i), &pp, &Patch::Merge(update_patch())).await.map(|d| generation(&d)) }
                })
                .await;
                let names: Vec<String> = updated.iter().map(|i| name(*i)).collect();
                let done = converge(&state, cfg.phase_limit, |s| {
                    let c = s.tracker.counts();
                    c.live == total && c.running == total && names.iter().all(|n| caught_up(s, &issued, n))
                });
                (done.await, issued)
            }
            "scale-down" => {
                let (to, gone) = (cfg.scaled_replicas(), cfg.replicas - cfg.scaled_replicas());
                let issued = paced(cfg, &all, gone, |i| {
                    let (api, pp) = (deps.clone(), pp.clone());
                    async move { api.patch(&name(i), &pp, &Patch::Merge(scale_patch(to))).await.map(|d| generation(&d)) }
                })
                .await;
                let target = cfg.scaled_pods();
                let names: Vec<String> = all.iter().map(|i| name(*i)).collect();
                let done = converge(&state, cfg.phase_limit, |s| {
                    s.tracker.counts().live == target && names.iter().all(|n| caught_up(s, &issued, n))
                });
                (done.await, issued)
            }
            _ => {
                let issued = paced(cfg, &all, cfg.scaled_replicas(), |i| {
                    let api = deps.clone();
                    async move { api.delete(&name(i), &DeleteParams::background()).await.map(|_| 0) }
                })
                .await;
                (converge(&state, cfg.phase_limit, |s| s.tracker.counts().live == 0 && s.deployments.is_empty()).await, issued)
            }
        };
        let (errors, first_error) = (issued.errors, issued.first_error);
        let end = t0.elapsed().as_secs_f64();
        let (after, dropped_after) = scrape_with_dropped(&client).await?;
        let window = promtext::interval(&after, &before);
        let dropped = (dropped_after - dropped_before).max(0.0);
        let counts = lock(&state).tracker.counts();
        eprintln!("phase {phase}: {:.1} s, converged {converged}, {errors} errors {first_error:?}, {dropped} answered 429", end - start);
        phase_json.push(json!({
            "phase": phase, "start_s": round1(start), "end_s": round1(end), "duration_s": round1(end - start),
            "converged": converged, "request_errors": errors, "first_error": first_error,
            "pods_at_end": {"live": counts.live, "bound": counts.bound, "running": counts.running},
            "api": {"verdicts": report::verdicts(&window), "calls": report::rows(&window), "dropped_429": dropped},
        }));
        phases.push((phase.to_string(), start, end));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (last_scrape, last_dropped) = scrape_with_dropped(&client).await?;
    let whole = promtext::interval(&last_scrape, &first_scrape);
    sampler.task.abort();
    lists.task.abort();
    let listed = lists.calls.lock().map(|v| v.clone()).unwrap_or_default();
    for w in watches {
        w.abort();
    }
    let timeline = sampler.samples.lock().map(|v| v.clone()).unwrap_or_default();
    let st = lock(&state);
    let processes: serde_json::Map<String, Value> = procs
        .iter()
        .zip(&cpu_before)
        .map(|((role, pid), before)| {
            let cpu = procstat::cpu_seconds(*pid) - before;
            let row = json!({
                "cpu_seconds": round1(cpu), "avg_cores": (cpu / elapsed * 100.0).round() / 100.0,
                "peak_rss_mib": procstat::status_mib(*pid, "VmHWM:"), "end_rss_mib": procstat::status_mib(*pid, "VmRSS:"),
            });
            (role.clone(), row)
        })
        .collect();
    // The control plane proper: store, apiserver, controller-manager, scheduler (the kubelet
    // process stands in for the nodes, the bench for the users).
    let plane = ["store", "apiserver", "controller-manager", "scheduler"];
    let idx: Vec<usize> = procs.iter().enumerate().filter(|(_, p)| plane.contains(&p.0.as_str())).map(|(i, _)| i).collect();
    let max_sum_rss = timeline.iter().map(|s| idx.iter().filter_map(|i| s.rss_mib.get(*i)).sum::<f64>()).fold(0.0, f64::max);
    let peak_sum: f64 = plane.iter().filter_map(|r| processes.get(*r)).filter_map(|p| p["peak_rss_mib"].as_f64()).sum();
    let ramp_startup = st.tracker.startup("ramp");
    let startup_p99 = ramp_startup["created_to_running_s"]["p99"].as_f64();
    let per_second = st.tracker.binds_per_second(wall0);
    let last = per_second.keys().next_back().copied().unwrap_or(0);
    let binds: Vec<(f64, f64)> = (0..=last).map(|s| (s as f64, per_second.get(&s).copied().unwrap_or(0) as f64)).collect();
    let report = json!({
        "config": {"nodes": cfg.nodes, "pods": total, "deployments": cfg.deployments(), "replicas": cfg.replicas,
                   "pods_per_second": cfg.pods_per_second, "updated_deployments": updated.len(), "scaled_replicas": cfg.scaled_replicas(),
                   "phase_limit_s": cfg.phase_limit.as_secs(), "sample_every_s": sample_every.as_secs_f64()},
        "elapsed_s": round1(elapsed),
        "phases": phase_json,
        "api": {"method": "apiserver_request_duration_seconds from /metrics, scraped before and after; quantiles from kube's buckets by linear interpolation (Prometheus histogram_quantile), as SIG Scalability computes them",
                "verdicts": report::verdicts(&whole), "calls": report::rows(&whole), "lists": lister::report(&listed),
                "dropped_429": (last_dropped - first_dropped).max(0.0),
                "dropped_method": "apiserver_dropped_requests_total (the max-in-flight limits' 429s), scraped before and after: every client's 429s at this apiserver (the bench's, the controllers', the scheduler's, the kubelets'); all of them retry 429s (kube-client's default_retry), so they show as latency and here, not as errors"},
        "pod_startup": {"method": "creationTimestamp (1 s granularity, truncated) and the benchmark watch's first arrival, each to the first arrival Running (phase Running or Ready=True)",
                        "ramp": ramp_startup, "update": st.tracker.startup("update"),
                        "target_p99_s": report::STARTUP_P99, "met": startup_p99.map(|p| p <= report::STARTUP_P99)},
        "scheduler": {"ramp": st.tracker.throughput("ramp", wall0), "update": st.tracker.throughput("update", wall0)},
        "watch_relists": {"pods": st.tracker.relists(), "deployments": st.deployment_lists.saturating_sub(1),
                          "note": "the benchmark's own watches listing again after falling out of the apiserver's change window (410)"},
        "processes": processes,
        "control_plane_rss_mib": {"max_of_sum_vmrss": round1(max_sum_rss), "sum_of_vmhwm": round1(peak_sum),
                                  "target_mib": report::RSS_MIB, "met": peak_sum <= report::RSS_MIB},
        "timeline": timeline.iter().map(|s| json!({"t": s.t, "phase": s.phase, "live": s.live, "bound": s.bound, "running": s.running,
            "cores": s.cores, "rss_mib": s.rss_mib, "p99_ms": {"mutating": s.p99_ms[0], "read": s.p99_ms[1], "list": s.p99_ms[2]},
            "requests_per_s": s.requests_per_s})).collect::<Vec<_>>(),
        "timeline_processes": procs.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
    });
    Ok(Outcome { report, timeline, procs: procs.into_iter().map(|p| p.0).collect(), phases, binds })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
