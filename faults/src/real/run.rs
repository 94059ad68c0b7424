//! One fault-test run, start to verdict: `keel up`; the recorder on `/registry/` from revision
//! 1; the seed's fault schedule and workload plan carried out together (the *safety phase*);
//! then no faults and no changes while the cluster settles (the *liveness phase*, bounded by
//! [`Bounds::converge_within`]); an end marker written and waited for so the record is
//! complete; the components' acts read from their logs; every checker run on the history; and
//! each scheduler's and controller-manager's `/metrics` count of its acts compared with its log.
//!
//! What runs is what is built: without keel-scheduler or keel-controller-manager next to
//! `keel`, keel up does not start them, and the schedule and the plan leave out what needs
//! them (bare pods then name their node).

use super::cluster::{KeelUp, Options};
use super::driver::{self, Driver, Tally};
use super::inject::{self, Injector};
use super::recorder::Recorder;
use super::{Error, Result};
use crate::check::{self, Bounds};
use crate::history::{Component, History, Op, Violation};
use crate::{schedule, workload};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, PostParams};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The seed of the schedule and the workload.
    pub seed: u64,
    /// Length of the safety phase.
    pub fault_secs: u64,
    /// Store members (3 or 5).
    pub members: usize,
    /// `keel up --simulated-nodes N` (the default, N = members): one kubelet process hosts
    /// the nodes and no container runs; None runs a real kubelet per member address (root,
    /// bridges, cgroups, containers).
    pub simulated_nodes: Option<usize>,
    /// Where the cluster keeps data and logs (a temporary folder when None; kept when the run
    /// finds violations or fails).
    pub data_dir: Option<PathBuf>,
    /// The checkers' bounds.
    pub bounds: Bounds,
    /// Write the history to `<data-dir>/history.jsonl` even when nothing is found (it is
    /// always written when a checker finds something).
    pub dump: bool,
}

impl Config {
    /// `fault_secs` of faults from `seed` on 3 members.
    pub fn new(seed: u64, fault_secs: u64) -> Config {
        Config { seed, fault_secs, members: 3, simulated_nodes: Some(3), data_dir: None, bounds: Bounds::default(), dump: false }
    }
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The schedule, as generated.
    pub schedule: Vec<schedule::Step>,
    /// The workload plan's length.
    pub plan_steps: usize,
    /// What the injector did, with times from the start of the run.
    pub fault_log: Vec<(Duration, String)>,
    /// Faults carried out.
    pub injected: usize,
    /// Steps skipped.
    pub skipped: usize,
    /// The workload's counts.
    pub tally: Tally,
    /// Store events recorded.
    pub events: usize,
    /// Distinct pods (uids) the history shows created.
    pub pods_created: usize,
    /// Acts read from the components' logs, by component.
    pub acts: Vec<(Component, usize)>,
    /// Writes acknowledged to the workload.
    pub acked: usize,
    /// Which parts ran (what was built).
    pub parts: Vec<String>,
    /// How long the liveness phase took to settle (as the API saw it).
    pub settled_after: Option<Duration>,
    /// Schedulers and controller-managers whose `/metrics` count of acts was compared with
    /// their logs ([`super::metrics`]).
    pub metrics_compared: usize,
    /// The checkers' findings (and the metrics comparison's).
    pub violations: Vec<Violation>,
    /// Where the cluster's data and logs were kept (runs with findings).
    pub kept: Option<PathBuf>,
    /// The history the checkers ran on (the test plants violations in it to show each checker
    /// fires on a real run's record).
    pub history: History,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {}: {} faults injected ({} skipped), {} workload steps",
            self.seed, self.injected, self.skipped, self.plan_steps
        )?;
        writeln!(f, "  workload acknowledged {:?}, failed {:?}", self.tally.acked, self.tally.failed)?;
        writeln!(
            f,
            "  history: {} store events, {} pods created, {} acknowledged writes, acts {:?}; settled after {:?}",
            self.events, self.pods_created, self.acked, self.acts, self.settled_after
        )?;
        writeln!(f, "  /metrics act counts compared with the logs for {} parts", self.metrics_compared)?;
        for (at, line) in &self.fault_log {
            writeln!(f, "  {:>7.1}s {line}", at.as_secs_f64())?;
        }
        writeln!(f, "  violations: {}", self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "    {v}")?;
        }
        if let Some(k) = &self.kept {
            writeln!(f, "  data and logs kept in {}", k.display())?;
        }
        Ok(())
    }
}

/// The schedule and plan of `c` for a cluster with these parts.
pub fn plans(c: &Config, scheduler: bool, controllers: bool, partitions: bool) -> (Vec<schedule::Step>, Vec<workload::Step>) {
    let sc = schedule::Config {
        scheduler,
        controller_manager: controllers,
        partitions,
        members: c.members,
        ..schedule::Config::full(c.fault_secs)
    };
    let wc = workload::Config { controllers, scheduler, nodes: c.members, ..workload::Config::full(c.fault_secs) };
    (schedule::generate(c.seed, &sc), workload::plan(c.seed, &wc))
}

async fn settled(client: &kube::Client) -> bool {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), driver::NAMESPACE);
    let Ok(list) = deployments.list(&ListParams::default()).await else { return false };
    list.items.iter().all(|d| {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        s.observed_generation >= d.metadata.generation
            && s.replicas == Some(want)
            && s.updated_replicas == Some(want)
            && s.available_replicas == Some(want)
    })
}

async fn ready_nodes(client: &kube::Client) -> usize {
    let nodes: Api<Node> = Api::all(client.clone());
    let Ok(list) = nodes.list(&ListParams::default()).await else { return 0 };
    list.items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Runs `c` and checks the history; the report (violations included). `Err` only when the run
/// itself could not be carried out (the cluster did not start, the record is incomplete).
pub async fn run(c: &Config) -> Result<Report> {
    let started = Instant::now();
    let mut up = KeelUp::start(&Options { members: c.members, data_dir: c.data_dir.clone(), simulated_nodes: c.simulated_nodes }).await?;
    let outcome = drive(c, &up, started).await;
    let mut report = match outcome {
        Ok(r) => r,
        Err(e) => {
            let kept = up.keep();
            eprintln!("keel-faults: run failed ({e}); data and logs kept in {}", kept.display());
            stop(up).await;
            return Err(e);
        }
    };
    if !report.violations.is_empty() {
        report.kept = Some(up.keep());
    }
    stop(up).await;
    Ok(report)
}

async fn stop(mut up: KeelUp) {
    let _ = tokio::task::spawn_blocking(move || up.stop()).await;
}

/// Writes `h` as JSON lines: one per store event, then one per act and acknowledged write.
fn dump(h: &History, path: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(Error::io(format!("creating {}", path.display())))?;
    let mut w = std::io::BufWriter::new(file);
    let io = Error::io(format!("writing {}", path.display()));
    let mut lines = Vec::new();
    for e in &h.events {
        let op = if e.op == Op::Put { "put" } else { "delete" };
        lines.push(
            serde_json::json!({"rev": e.revision.0, "key": e.key, "op": op, "seen_ms": e.seen.as_millis() as u64, "object": e.object})
                .to_string(),
        );
    }
    lines.extend(h.acts.iter().map(|a| format!("{{\"act\": {:?}}}", format!("{a:?}"))));
    lines.extend(h.acked.iter().map(|a| format!("{{\"acked\": {:?}}}", format!("{a:?}"))));
    lines.iter().try_for_each(|l| writeln!(w, "{l}")).and_then(|()| w.flush()).map_err(io)
}

async fn drive(c: &Config, up: &KeelUp, started: Instant) -> Result<Report> {
    let recorder = Recorder::start(&up.endpoints(), started)?;
    let mut driver = Driver::new(up.kubeconfig(), up.dir().join("kube-cache")).await?;
    let client = driver::client(&up.kubeconfig()).await?;
    let (scheduler, controllers, kubelets) = (up.has("keel-scheduler"), up.has("keel-controller-manager"), up.has("keel-kubelet"));
    if kubelets && !eventually(Duration::from_secs(120), || async { ready_nodes(&client).await >= up.nodes() }).await {
        return Err(Error::Timeout(format!("{} Ready nodes", up.nodes())));
    }
    for (present, component) in [(scheduler, Component::Scheduler), (controllers, Component::ControllerManager)] {
        if present && !eventually(Duration::from_secs(60), || async { inject::lease_holder(&client, component).await.is_some() }).await {
            return Err(Error::Timeout(format!("a {} leader", component.name())));
        }
    }
    let partitions = std::path::Path::new(super::net::CGROUP2).is_dir();
    let (steps, plan) = plans(c, scheduler, controllers, partitions);
    eprintln!(
        "keel-faults: seed {} ({} s of faults; reproduce with KEEL_FAULTS_SEED={} or keel-faults --seed {})",
        c.seed, c.fault_secs, c.seed, c.seed
    );
    for s in &steps {
        eprintln!("keel-faults:   {:>6.1}s {}", s.at.as_secs_f64(), s.fault);
    }
    let tag = format!("keel-faults-{}-{}", std::process::id(), c.seed);
    let mut injector = Injector::new(up, client.clone(), &tag, started)?;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    tokio::join!(driver.run(&plan, start, &stop_rx), injector.run(&steps, start));
    let (fault_log, injected, skipped) = (std::mem::take(&mut injector.log), injector.injected, injector.skipped);
    drop(injector); // heals any partition, removes the cgroup folders
    let quiet_from = started.elapsed();
    let settle = Instant::now();
    let settled_after = eventually(c.bounds.converge_within, || settled(&client)).await.then(|| settle.elapsed());
    // The end marker: once the recorder has its revision, it has everything before it.
    let marker: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("keel-faults-end-{}", c.seed)}}))
        .map_err(|e| Error::Kube(e.to_string()))?;
    let made = marker.create(&PostParams::default(), &cm).await.map_err(|e| Error::Kube(format!("writing the end marker: {e}")))?;
    let rv: i64 = made.metadata.resource_version.and_then(|r| r.parse().ok()).unwrap_or(i64::MAX);
    recorder.until(rv, Duration::from_secs(60)).await?;
    let events = recorder.finish()?;
    let mut acts = Vec::new();
    let mut act_counts = Vec::new();
    for (component, prefix) in [(Component::Scheduler, "scheduler-"), (Component::ControllerManager, "controller-manager-")] {
        let before = acts.len();
        for i in 1..=c.members {
            acts.extend(super::acts::acts(component, &up.log(&format!("{prefix}{i}"))));
        }
        act_counts.push((component, acts.len() - before));
    }
    let pods_created = events
        .iter()
        .filter(|e| e.op == Op::Put && e.key.starts_with(crate::objects::PODS))
        .filter_map(|e| e.object.as_ref().and_then(crate::objects::uid))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let history = History { events, acts, acked: std::mem::take(&mut driver.acked), quiet_from: Some(quiet_from) };
    let mut violations = check::all(&history, &c.bounds);
    let (metrics_compared, disagreements) = super::metrics::cross_check(up).await;
    violations.extend(disagreements);
    if c.dump || !violations.is_empty() {
        dump(&history, &up.dir().join("history.jsonl"))?;
    }
    Ok(Report {
        seed: c.seed,
        schedule: steps,
        plan_steps: plan.len(),
        fault_log,
        injected,
        skipped,
        tally: std::mem::take(&mut driver.tally),
        events: history.events.len(),
        pods_created,
        acts: act_counts,
        acked: history.acked.len(),
        parts: up.expected_parts(),
        settled_after,
        metrics_compared,
        violations,
        kept: None,
        history,
    })
}
