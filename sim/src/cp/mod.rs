//! The `controlplane` and `nodes` scenarios: the real control plane on turmoil hosts over the
//! simulated network, on the simulated store.
//!
//! ```text
//!   user ─────► api1 ─┐                      sched1, sched2   (leader-elected: Lease kube-scheduler)
//!   podwatcher► api2 ─┼─► m1 m2 m3 (store)   cm1, cm2         (Lease kube-controller-manager)
//!   history ──────────┘   (etcd watch of     kubelet1, kubelet2 (3 simulated nodes each)
//!                          /registry/)       each component's kube::Client dials api1/api2 in turn
//! ```
//!
//! Faults in `controlplane`: the store's nemesis on the members (partitions, leader isolation,
//! pauses, crashes, drift …) and, beside it, the control plane's ([`plan`]): an apiserver
//! crash, the active scheduler's crash, the active controller-manager's crash, a kubelet
//! host's crash (each restarted after a while), a kubelet host cut off from the apiservers and
//! an apiserver cut off from the store (each healed after a while). In `nodes`: one kubelet
//! host cut off for longer than the node monitor grace period ([`NodeTimings`]), nothing else.
//! Checkers: [`workload::bound_once`] (no pod bound twice or rebound), [`acts::one_actor_per_term`]
//! (at most one scheduler and one controller-manager act at any instant),
//! [`history::rollout_bounds`], [`history::no_overcommit`], [`history::lost_writes`],
//! [`apiwatch::judge`] (a watch through the apiservers is ordered and gap-free), convergence
//! (every Deployment reaches its final spec within [`CONVERGE`]; in `nodes` also on the other
//! nodes during the cut), and no host error.
//!
//! Modules: [`net`] (connectors), [`hosts`] (the components), [`acts`] (who acted, the
//! one-actor checker), [`history`] (the store history and the checkers over it), [`apiwatch`]
//! (the watch through the apiservers), [`workload`] (the user, convergence, the binding checker).

pub mod acts;
pub mod apiwatch;
pub mod history;
pub mod hosts;
pub mod net;
pub mod workload;

use crate::cluster::CLIENT_PORT;
use crate::nemesis::{BASE_LATENCY, Nemesis};
use crate::record::Recorded;
use crate::run::{Options, Outcome, SIM_EPOCH_SECS, Scenario, add_host, member_slots};
use keel_store::seams::{Rng, SplitMix64};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Faults start once the control plane is up and the Deployments exist.
pub use crate::run::CP_FAULTS_FROM as FAULTS_FROM;

/// How long after the faults stop every Deployment has to converge to its final spec.
pub const CONVERGE: Duration = Duration::from_secs(45);

const APISERVERS: usize = 2;
const REPLICAS: usize = 2;
const KUBELETS: usize = 2;
const NODES_PER_KUBELET: usize = 3;
const DEPLOYMENTS: usize = 3;

/// The node timings of a scenario: kube's defaults scaled down so a node's failure and
/// return fit a short run in `nodes` (lease 40 s → 8 s, grace 50 s → 8 s, monitor 5 s → 1 s,
/// startup grace 60 s → 10 s, default NoExecute tolerations 300 s → 3 s, eviction rate
/// 0.1 → 1 node/s); `controlplane` keeps the kubelet's 40 s lease and runs no node lifecycle.
#[derive(Clone, Debug)]
pub struct NodeTimings {
    /// The kubelet's node Lease duration (renewed every quarter of it).
    pub lease: Duration,
    /// The node lifecycle and taint eviction controllers run, with these settings.
    pub lifecycle: Option<keel_controllers::nodelifecycle::Config>,
    /// The apiserver's default `not-ready` / `unreachable` toleration seconds.
    pub tolerations: (i64, i64),
    /// The CPU each of the user's pods asks for: in `controlplane` a twentieth of a node
    /// ([`NODE_CPU`]), room for every scale-up; in `nodes` half a node: the three nodes left
    /// during the cut hold 6 pods, as many as the Deployments ask for at most there (no
    /// rollouts: a surge could not fit), so the evicted pods' replacements fill nodes up and
    /// an overcommit shows.
    pub pod_cpu: &'static str,
}

/// Every simulated node's CPU (millicores).
pub const NODE_CPU: u32 = 2000;

/// The `controlplane` scenario's burst: the nodes kept for it (one per kubelet host, labelled
/// and tainted so only its pods land there), and its Deployment's replicas, each pod asking
/// for an equal share of a node so the pods fill these nodes exactly. The ReplicaSet creates
/// them at once, so the scheduler decides several before its informer shows the bindings of
/// the first: a scheduler that does not assume a pod on its node while the binding is in flight
/// sees both nodes emptier than they are, piles pods on one and overcommits it (caught by
/// [`history::no_overcommit`]); one that does fills both exactly.
pub const BURST_NODES: [&str; 2] = ["node-0-0", "node-1-0"];
/// How many pods of the burst fit on each of [`BURST_NODES`].
pub const BURST_PER_NODE: u32 = 4;
/// The label (`true`) and `NoSchedule` taint key of [`BURST_NODES`].
pub const BURST_KEY: &str = "keel-sim/burst";

impl NodeTimings {
    /// The timings of `scenario`.
    pub fn of(scenario: Scenario) -> NodeTimings {
        if scenario != Scenario::Nodes {
            return NodeTimings { lease: Duration::from_secs(40), lifecycle: None, tolerations: (300, 300), pod_cpu: "100m" };
        }
        let lifecycle = keel_controllers::nodelifecycle::Config {
            monitor_period: Duration::from_secs(1),
            grace_period: Duration::from_secs(8),
            startup_grace_period: Duration::from_secs(10),
            rates: keel_controllers::nodelifecycle::zones::Rates { eviction_qps: 1.0, ..Default::default() },
        };
        NodeTimings { lease: Duration::from_secs(8), lifecycle: Some(lifecycle), tolerations: (3, 3), pod_cpu: "1000m" }
    }
}

/// The names of kubelet host `host`'s nodes.
pub fn node_names(host: usize) -> Vec<String> {
    (0..NODES_PER_KUBELET).map(|i| format!("node-{host}-{i}")).collect()
}

/// What the control plane's run recorded.
#[derive(Debug, Default)]
pub struct Record {
    /// The user's requests and their outcomes.
    pub user: Vec<String>,
    /// The final spec (replicas and image by Deployment), set once the faults stopped.
    pub desired: BTreeMap<String, (i32, String)>,
    /// Every version of every pod, ReplicaSet and Deployment in the store, in revision order.
    pub history: Vec<history::Version>,
    /// The history's watch was compacted past (at this revision): the checks are incomplete.
    pub history_lost: Option<i64>,
    /// The history's watch ended short of the store: (the last revision it delivered, the
    /// store's revision after the user's verdict, or None when no read of it succeeded).
    pub history_behind: Option<(i64, Option<i64>)>,
    /// The user's writes of Deployment specs, in the order sent.
    pub writes: Vec<history::Written>,
    /// What the pod watch through the apiservers delivered.
    pub apiwatch: Vec<apiwatch::Seen>,
    /// The convergence check's verdict (with every node Ready).
    pub convergence: Option<Result<String, String>>,
    /// The nodes scenario: whether the Deployments converged on the other nodes during the cut.
    pub during: Option<Result<String, String>>,
    /// The nodes scenario: the cut (from, until in ms, the nodes it cut off).
    pub cut: Option<(u128, u128, Vec<String>)>,
    /// Acts of the leader-elected components.
    pub acts: Vec<acts::Act>,
    /// Control-plane faults as applied.
    pub faults: Vec<String>,
}

impl Record {
    /// Everything recorded, as comparable text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for u in &self.user {
            let _ = writeln!(s, "user {u}");
        }
        for v in &self.history {
            let _ = writeln!(s, "{} {v:?}", if v.kind == history::ObjKind::Pod { "pod" } else { "object" });
        }
        for w in &self.writes {
            let _ = writeln!(s, "write {w:?}");
        }
        for w in &self.apiwatch {
            let _ = writeln!(s, "apiwatch {w:?}");
        }
        for a in &self.acts {
            let _ = writeln!(s, "act {a:?}");
        }
        for f in &self.faults {
            let _ = writeln!(s, "cp fault {f}");
        }
        let _ = writeln!(
            s,
            "desired {:?}; history lost {:?}; history behind {:?}; convergence {:?}",
            self.desired, self.history_lost, self.history_behind, self.convergence
        );
        if let Some(cut) = &self.cut {
            let _ = writeln!(s, "cut {cut:?}; during the cut {:?}", self.during);
        }
        s
    }
}

/// A control-plane fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpFault {
    /// Crash apiserver `i` (0-based).
    CrashApiserver(usize),
    /// Crash the scheduler replica that leads (replica 0 when none does).
    CrashActiveScheduler,
    /// Crash the controller-manager replica that leads (replica 0 when none does).
    CrashActiveControllerManager,
    /// Crash kubelet host `i` (0-based; its simulated nodes go with it).
    CrashKubelet(usize),
    /// Cut apiserver `i` off from every store member (messages held): its watch cache falls
    /// behind and its requests stall, while the other apiserver serves.
    CutApiserverFromStore(usize),
    /// Cut kubelet host `i` off from every apiserver (both ways, messages held until the cut
    /// heals, as TCP retransmits them; shorter than the node
    /// monitor grace period here, see the `nodes` scenario for longer ones).
    PartitionKubelet(usize),
}

/// The control-plane fault schedule `seed` picks: one of each kind, in a seeded order, spread over
/// [`FAULTS_FROM`]..`until`, each lasting 1–4 s; (start, duration, fault).
pub fn plan(seed: u64, until: Duration) -> Vec<(Duration, Duration, CpFault)> {
    let mut rng = SplitMix64(seed ^ 0x0C01_7801_u64);
    let mut faults = vec![
        CpFault::CrashApiserver((rng.next_u64() % APISERVERS as u64) as usize),
        CpFault::CrashActiveScheduler,
        CpFault::CrashActiveControllerManager,
        CpFault::CrashKubelet((rng.next_u64() % KUBELETS as u64) as usize),
        CpFault::PartitionKubelet((rng.next_u64() % KUBELETS as u64) as usize),
        CpFault::CutApiserverFromStore((rng.next_u64() % APISERVERS as u64) as usize),
    ];
    for i in (1..faults.len()).rev() {
        faults.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let span = until.saturating_sub(FAULTS_FROM).as_millis() as u64 / faults.len() as u64;
    faults
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let at = FAULTS_FROM + Duration::from_millis(i as u64 * span + rng.next_u64() % (span / 2).max(1));
            (at, Duration::from_millis(1000 + rng.next_u64() % 3000), f)
        })
        .collect()
}

/// A host of the control plane: its name and how many times it started.
struct CpHost {
    name: String,
    incarnations: Rc<Cell<u64>>,
}

/// Run the controlplane scenario of `opts` here (on this thread) and judge it.
pub fn run_here(opts: &Options) -> Outcome {
    // backon's retry jitter (kube-runtime's watcher backoff) draws from fastrand's thread-local
    // generator, seeded from the real clock unless seeded here; every host runs on this thread.
    fastrand::seed(opts.seed);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deadline = opts.faults_until + CONVERGE;
    let timings = NodeTimings::of(opts.scenario);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(deadline + history::CATCH_UP + Duration::from_secs(5))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(BASE_LATENCY.0)
        .max_message_latency(BASE_LATENCY.1)
        .tcp_capacity(1 << 20)
        .rng_seed(opts.seed)
        .epoch(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_SECS))
        .build();
    let names: Vec<String> = (1..=opts.members).map(|i| format!("m{i}")).collect();
    let ips: Vec<_> = names.iter().map(|n| sim.lookup(n.as_str())).collect();
    let cluster_of = |n: usize| -> String {
        names.iter().zip(&ips).take(n).map(|(n, ip)| format!("{n}=http://{ip}:{}", crate::cluster::PEER_PORT)).collect::<Vec<_>>().join(",")
    };
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return failed(format!("no temporary folder for the run: {e}")),
    };
    let (slots, specs) = member_slots(opts, &names, &ips, scratch.path(), &cluster_of);
    for (slot, spec) in slots.iter().zip(&specs) {
        add_host(&mut sim, slot, spec);
    }
    let members: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, CLIENT_PORT)).collect();
    let seed = |k: u64| opts.seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let rec: Rc<RefCell<Record>> = Default::default();
    let acts: acts::Acts = Default::default();
    let actors: acts::Actors = Default::default();
    let mut hosts: BTreeMap<&'static str, Vec<CpHost>> = BTreeMap::new();
    let mut host = |sim: &mut turmoil::Sim<'_>, kind: &'static str, i: usize, f: Rc<dyn Fn(u64) -> HostFuture>| {
        let name = format!("{kind}{}", i + 1);
        let incarnations = Rc::new(Cell::new(0));
        let n = incarnations.clone();
        sim.host(name.as_str(), move || {
            n.set(n.get() + 1);
            f(n.get())
        });
        hosts.entry(kind).or_default().push(CpHost { name, incarnations });
    };
    let api_ips: Vec<SocketAddr> =
        (1..=APISERVERS).map(|i| SocketAddr::new(sim.lookup(format!("api{i}").as_str()), net::API_PORT)).collect();
    for i in 0..APISERVERS {
        let (members, acts, actors) = (members.clone(), acts.clone(), actors.clone());
        let s = seed(1000 + i as u64);
        host(
            &mut sim,
            "api",
            i,
            Rc::new(move |n| Box::pin(hosts::apiserver(i, members.clone(), s ^ n, acts.clone(), actors.clone(), timings.tolerations))),
        );
    }
    let lifecycle = timings.lifecycle.clone();
    for i in 0..REPLICAS {
        let lifecycle = lifecycle.clone();
        let (apis, sched_actors, bugs) = (api_ips.clone(), actors.clone(), opts.cp_bugs);
        let s = seed(1100 + i as u64);
        host(&mut sim, "sched", i, Rc::new(move |n| Box::pin(hosts::scheduler(i, n, apis.clone(), s ^ n, sched_actors.clone(), bugs))));
        let (apis, cm_actors) = (api_ips.clone(), actors.clone());
        host(
            &mut sim,
            "cm",
            i,
            Rc::new(move |n| Box::pin(hosts::controller_manager(i, n, apis.clone(), cm_actors.clone(), bugs, lifecycle.clone()))),
        );
    }
    let lease = timings.lease;
    let burst = opts.scenario == Scenario::Controlplane;
    for i in 0..KUBELETS {
        let (apis, dir) = (api_ips.clone(), scratch.path().join(format!("kubelet{i}")));
        host(&mut sim, "kubelet", i, Rc::new(move |_| Box::pin(hosts::kubelet(i, apis.clone(), dir.clone(), lease, burst))));
    }
    // The nodes scenario: one kubelet host cut off from every apiserver from `cut_from` until
    // the faults stop; the user's changes stop 4 s before it.
    let cut = opts.cut_from.map(|from| {
        let host = (SplitMix64(opts.seed ^ 0x0C07).next_u64() % KUBELETS as u64) as usize;
        (from, host)
    });
    let when = workload::Schedule {
        start: Duration::from_secs(2),
        settle: cut.map_or(opts.faults_until, |(from, _)| from.saturating_sub(Duration::from_secs(4))),
        deadline,
        cut: cut.map(|(from, host)| workload::Cut { from, until: opts.faults_until, nodes: node_names(host) }),
        pod_cpu: timings.pod_cpu,
        burst: opts.scenario == Scenario::Controlplane,
    };
    rec.borrow_mut().cut = cut.map(|(from, host)| (from.as_millis(), opts.faults_until.as_millis(), node_names(host)));
    sim.client("user", workload::user(rec.clone(), api_ips.clone(), seed(1200), DEPLOYMENTS, when));
    sim.client("history", history::watch(rec.clone(), members.clone(), deadline + history::CATCH_UP));
    sim.client("podwatcher", apiwatch::watch(rec.clone(), api_ips.clone(), deadline + Duration::from_secs(1)));

    let mut nemesis = Nemesis::new(opts.plan.clone(), seed(500));
    let mut cp_plan = match cut {
        Some((from, host)) => vec![(from, opts.faults_until - from, CpFault::PartitionKubelet(host))],
        None => plan(opts.seed, opts.faults_until),
    };
    cp_plan.reverse();
    // The fault in force: until when, and the host it crashed or the partition it made.
    let mut cp_active: Option<(Duration, Heal)> = None;
    let mut healed = false;
    let mut violations = Vec::new();
    let mut panicked = false;
    loop {
        let now = sim.elapsed();
        if !healed && now >= opts.faults_until {
            nemesis.stop(&mut sim, &slots, now);
            healed = true;
        } else if !healed {
            nemesis.step(&mut sim, &slots, now);
        }
        if let Some((until, heal)) = &cp_active
            && (now >= *until || healed)
        {
            let done = match heal {
                Heal::Restart(name) => {
                    sim.bounce(name.as_str());
                    format!("restart {name}")
                }
                Heal::Release(a, bs) => {
                    for b in bs {
                        sim.release(a.as_str(), b.as_str());
                    }
                    format!("release {a} ↔ {}", bs.join(", "))
                }
            };
            rec.borrow_mut().faults.push(format!("{} ms {done}", now.as_millis()));
            cp_active = None;
        }
        if cp_active.is_none()
            && !healed
            && let Some((at, lasts, fault)) = cp_plan.last().copied()
            && now >= at
        {
            cp_plan.pop();
            let heal = inject(&mut sim, &hosts, &actors, &names, fault);
            let what = match &heal {
                Heal::Restart(name) => format!("crash {name}"),
                Heal::Release(a, bs) => format!("cut {a} ↮ {}", bs.join(", ")),
            };
            rec.borrow_mut().faults.push(format!("{} ms {fault:?}: {what}", now.as_millis()));
            cp_active = Some((now + lasts, heal));
        }
        match crate::run::step(&mut sim, "a host", &mut violations) {
            crate::run::Step::Go => {}
            crate::run::Step::Stop => break,
            crate::run::Step::Panicked => {
                panicked = true;
                break;
            }
        }
    }
    let elapsed = sim.elapsed();
    if panicked {
        std::mem::forget(sim);
    } else {
        drop(sim);
    }
    let mut record = std::mem::take(&mut *rec.borrow_mut());
    record.acts = std::mem::take(&mut *acts.lock().unwrap_or_else(|p| p.into_inner()));
    let mut faults = std::mem::take(&mut nemesis.log);
    faults.append(&mut record.faults);
    record.faults = faults;
    violations.extend(judge(&record));
    let mut recorded = Recorded::default();
    recorded.controlplane = Some(record.render());
    Outcome { recorded, violations, undecided: false, elapsed }
}

type HostFuture = std::pin::Pin<Box<dyn std::future::Future<Output = turmoil::Result>>>;

/// How a control-plane fault ends.
enum Heal {
    /// Restart the crashed host (a new incarnation).
    Restart(String),
    /// Release the links between a host and these.
    Release(String, Vec<String>),
}

/// Applies `fault`; how to end it.
fn inject(
    sim: &mut turmoil::Sim<'_>,
    hosts: &BTreeMap<&'static str, Vec<CpHost>>,
    actors: &acts::Actors,
    members: &[String],
    fault: CpFault,
) -> Heal {
    let name = |kind: &str, i: usize| hosts.get(kind).and_then(|h| h.get(i)).map_or_else(String::new, |h| h.name.clone());
    let crash = |sim: &mut turmoil::Sim<'_>, name: String| {
        sim.crash(name.as_str());
        Heal::Restart(name)
    };
    match fault {
        CpFault::CrashApiserver(i) => crash(sim, name("api", i)),
        CpFault::CrashKubelet(i) => crash(sim, name("kubelet", i)),
        CpFault::CrashActiveScheduler | CpFault::CrashActiveControllerManager => {
            let active = target(hosts, actors, fault);
            crash(sim, active)
        }
        CpFault::CutApiserverFromStore(i) => {
            let (api, members) = (name("api", i), members.to_vec());
            for m in &members {
                sim.hold(api.as_str(), m.as_str());
            }
            Heal::Release(api, members)
        }
        CpFault::PartitionKubelet(i) => {
            let (kubelet, apis) = (name("kubelet", i), (0..APISERVERS).map(|a| name("api", a)).collect::<Vec<_>>());
            // Held, not dropped: turmoil's TCP does not retransmit, so a dropped segment would
            // leave a connection silently broken for good, where real TCP delivers it once
            // the network heals (within its retransmission timeout, minutes).
            for a in &apis {
                sim.hold(kubelet.as_str(), a.as_str());
            }
            Heal::Release(kubelet, apis)
        }
    }
}

/// The replica a fault crashes: the one whose election says it leads (replica 0 when none does).
fn target(hosts: &BTreeMap<&'static str, Vec<CpHost>>, actors: &acts::Actors, fault: CpFault) -> String {
    let (kind, prefix) = match fault {
        CpFault::CrashActiveScheduler => ("sched", "scheduler"),
        _ => ("cm", "controller-manager"),
    };
    let replicas = hosts.get(kind).map(Vec::as_slice).unwrap_or_default();
    let actors = actors.lock().unwrap_or_else(|p| p.into_inner());
    // `leading()` is the published state (no clock read: this runs outside every host).
    let leader = replicas
        .iter()
        .enumerate()
        .position(|(i, h)| actors.get(&format!("{prefix}-{i}#{}", h.incarnations.get())).is_some_and(|l| l.leading()));
    replicas.get(leader.unwrap_or(0)).map_or_else(String::new, |h| h.name.clone())
}

fn failed(why: String) -> Outcome {
    Outcome { recorded: Recorded::default(), violations: vec![why], undecided: false, elapsed: Duration::ZERO }
}

/// Every violation in `record`.
pub fn judge(record: &Record) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((seen, store)) = record.history_behind {
        let store = store.map_or("unknown (no read of it answered)".to_string(), |r| r.to_string());
        out.push(format!(
            "the store history is incomplete: its watch delivered revisions up to {seen} by {} s after the deadline; the store's revision after the verdict: {store} (writes not judged)",
            history::CATCH_UP.as_secs()
        ));
    }
    out.extend(workload::bound_once(&record.history).into_iter().map(|v| format!("bound twice: {v}")));
    out.extend(history::rollout_bounds(&record.history).into_iter().map(|v| format!("rollout bounds: {v}")));
    out.extend(apiwatch::judge(&record.history, &record.apiwatch).into_iter().map(|v| format!("pod watch through the apiservers: {v}")));
    out.extend(history::no_overcommit(&record.history).into_iter().map(|v| format!("overcommitted: {v}")));
    // Judged on a history without its tail, the final spec's writes would look lost: a history
    // behind the store is reported instead (first, above).
    if record.history_behind.is_none() {
        out.extend(history::lost_writes(&record.history, &record.writes).into_iter().map(|v| format!("lost write: {v}")));
    }
    out.extend(acts::one_actor_per_term(&record.acts).into_iter().map(|v| format!("two actors at once: {v}")));
    if let Some(at) = record.history_lost {
        out.push(format!("the store history is incomplete: compacted at revision {at}"));
    }
    match &record.convergence {
        Some(Ok(_)) => {}
        Some(Err(e)) => out.push(format!("convergence: {e}")),
        None => out.push("convergence: the user never set the final spec".into()),
    }
    if let Some((from, until, nodes)) = &record.cut {
        match &record.during {
            Some(Ok(_)) => {}
            Some(Err(e)) => out.push(format!("convergence during the cut: {e}")),
            None => out.push("convergence during the cut: never checked".into()),
        }
        out.extend(workload::evicted(&record.history, *from, *until, nodes).err().map(|e| format!("the cut tested nothing: {e}")));
    }
    let acted = |k: acts::Kind| record.acts.iter().any(|a| a.kind == k);
    if record.desired.values().any(|(r, _)| *r > 0) && !(acted(acts::Kind::Scheduler) && acted(acts::Kind::ControllerManager)) {
        out.push("no act of a scheduler or of a controller-manager was recorded: the act checker saw nothing".into());
    }
    out
}
