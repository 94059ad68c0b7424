//! One simulated run: a seed picks the options and the fault schedule; the harness builds the
//! cluster and clients on turmoil, steps it while the nemesis injects faults and the Raft
//! invariants are checked, heals everything, checks liveness, then judges the history.

use crate::cluster::{CLIENT_PORT, Disk, DriftClock, MemberSpec, PEER_PORT, Slot, run_member};
use crate::disk::SimLogDisk;
use crate::invariants::Invariants;
use crate::membership::{self, Signals};
use crate::nemesis::{self, BASE_LATENCY, Menu, Nemesis, Planned};
use crate::record::{Recorded, Recorder};
use crate::watchers;
use crate::workload::{self, Traffic};
use crate::{checks, linearizable_kv};
use keel_store::seams::{Bugs, Rng, SplitMix64};
use keel_store::storage::memory::MemoryBackend;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// What a run exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// KV traffic on 3 members under network faults.
    Kv,
    /// Kubernetes-style traffic, informer watchers and the compaction loop on 3 members under
    /// network faults and crashes.
    Kube,
    /// KV traffic on 5 members under crashes (losing unsynced writes), power loss of the whole
    /// cluster, and partitions.
    Crash,
    /// KV traffic on 3 members while a fourth is added as a learner, promoted, and one of the
    /// first three removed, under network faults and crashes.
    Membership,
    /// The control plane (apiservers, leader-elected schedulers and controller-managers,
    /// simulated kubelets) on 3 members, Deployments created and scaled, under store faults
    /// and crashes of apiservers and of the active scheduler and controller-manager
    /// (`crate::cp`). Not in [`Scenario::ALL`]: it is run by name.
    Controlplane,
    /// The same control plane with the node lifecycle and taint eviction controllers, and one
    /// kubelet host cut off from the apiservers for longer than the node monitor grace
    /// period: its nodes go Unknown and tainted, their pods are evicted and recreated on the
    /// other nodes, and after the cut heals the nodes return Ready (`crate::cp`). No store
    /// faults. Run by name.
    Nodes,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 4] = [Scenario::Kv, Scenario::Kube, Scenario::Crash, Scenario::Membership];

    /// Parse a scenario name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().chain([Scenario::Controlplane, Scenario::Nodes]).find(|x| x.name() == s)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kv => "kv",
            Scenario::Kube => "kube",
            Scenario::Crash => "crash",
            Scenario::Membership => "membership",
            Scenario::Controlplane => "controlplane",
            Scenario::Nodes => "nodes",
        }
    }

    /// Whether it runs the control plane (`crate::cp`).
    pub fn control_plane(self) -> bool {
        matches!(self, Scenario::Controlplane | Scenario::Nodes)
    }
}

/// Everything a seed decides about a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// Scenario.
    pub scenario: Scenario,
    /// Members.
    pub members: usize,
    /// Workload clients.
    pub clients: u32,
    /// Faults are injected until this simulated time; then everything heals.
    pub faults_until: Duration,
    /// The fault schedule.
    pub plan: Vec<Planned>,
    /// Bugs switched on (to prove the checkers catch them).
    pub bugs: Bugs,
    /// Raft logs whose fsync lies.
    pub lying_disks: bool,
    /// Control-plane bugs switched on (controlplane scenario).
    pub cp_bugs: CpBugs,
    /// The nodes scenario: when the kubelet host's cut starts (it heals at `faults_until`).
    pub cut_from: Option<Duration>,
}

impl Options {
    /// The options `seed` picks for `scenario`.
    pub fn new(seed: u64, scenario: Scenario) -> Options {
        let mut rng = SplitMix64(seed);
        let members = if scenario == Scenario::Crash { 5 } else { 3 };
        let clients = 2 + (rng.next_u64() % 3) as u32;
        // The control plane's clients are its components and one user (`crate::cp`).
        let clients = if scenario.control_plane() { 0 } else { clients };
        let mut cut_from = None;
        let faults_until = match scenario {
            Scenario::Controlplane => Duration::from_millis(CP_FAULTS_FROM.as_millis() as u64 + 10_000 + rng.next_u64() % 10_000),
            // The cut starts 2–6 s after the faults may and lasts 24–32 s.
            Scenario::Nodes => {
                let from = CP_FAULTS_FROM + Duration::from_millis(2000 + rng.next_u64() % 4000);
                cut_from = Some(from);
                from + Duration::from_millis(24_000 + rng.next_u64() % 8000)
            }
            _ => Duration::from_millis(6000 + rng.next_u64() % 6000),
        };
        let menu = match scenario {
            Scenario::Kv => Menu::Network,
            Scenario::Kube | Scenario::Membership | Scenario::Controlplane | Scenario::Nodes => Menu::WithCrashes,
            Scenario::Crash => Menu::Crashes,
        };
        // Faults may name the membership scenario's spare too (they do nothing until it runs).
        let named = members + usize::from(scenario == Scenario::Membership);
        let plan = nemesis::plan(&mut rng, named, menu, faults_until);
        let plan = if scenario == Scenario::Nodes { Vec::new() } else { plan };
        Options {
            cut_from,
            seed,
            scenario,
            members,
            clients,
            faults_until,
            plan,
            bugs: Bugs::default(),
            lying_disks: false,
            cp_bugs: Default::default(),
        }
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} scenario {} members {} clients {} faults until {} ms{}{}",
            self.seed,
            self.scenario.name(),
            self.members,
            self.clients,
            self.faults_until.as_millis(),
            if self.bugs == Bugs::default() { String::new() } else { format!(" bugs {:?}", self.bugs) },
            if self.lying_disks { " lying-disks" } else { "" }
        )?;
        if self.cp_bugs != Default::default() {
            writeln!(f, "  control-plane bugs {:?}", self.cp_bugs)?;
        }
        for p in &self.plan {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// What a run produced.
pub struct Outcome {
    /// What clients saw.
    pub recorded: Recorded,
    /// Violations found (empty: the run passed).
    pub violations: Vec<String>,
    /// The linearizability search ran out of budget (no verdict either way).
    pub undecided: bool,
    /// Simulated time the run took.
    pub elapsed: Duration,
}

/// Watchers of every shape in every run (`watchers::shaped`).
const SHAPED_WATCHERS: u64 = 3;

/// How long after the faults stop the cluster has to recover.
const RECOVERY: Duration = Duration::from_secs(20);

/// Register `slot`'s host: every (re)start runs the member's software on its disk.
pub(crate) fn add_host(sim: &mut turmoil::Sim<'_>, slot: &Slot, spec: &MemberSpec) {
    let (disk, running, incarnations, spec) = (slot.disk.clone(), slot.running.clone(), slot.incarnations.clone(), spec.clone());
    let go = slot.go.clone();
    sim.host(slot.name.as_str(), move || {
        let n = incarnations.get() + 1;
        incarnations.set(n);
        run_member(spec.clone(), disk.clone(), running.clone(), n, go.clone())
    });
}

/// Planted bugs of the control plane (to prove its checkers catch them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpBugs {
    /// The scheduler keeps scheduling whatever its lease says: it is given no fencing handle
    /// (its elector still runs, so its acts carry the term it sees).
    pub scheduler_ignores_lease: bool,
    /// The controller-manager runs its controllers whatever its lease says, unfenced (its
    /// elector still runs, so its acts carry the term it sees).
    pub controller_manager_ignores_lease: bool,
    /// The ReplicaSet controller trusts its informer's pod count alone, without expectations
    /// (`manager::Config::bug_ignore_expectations`).
    pub replicaset_ignores_expectations: bool,
    /// The scheduler binds without assuming the pod on its node first
    /// (`driver::Parts::bug_bind_without_assume`).
    pub scheduler_ignores_assume_cache: bool,
    /// The Deployment controller grows a rolling update's new ReplicaSet straight to
    /// `spec.replicas`, ignoring maxSurge (`deployment::Config::bug_ignore_max_surge`).
    pub deployment_ignores_max_surge: bool,
}

/// When the control-plane scenario's faults start: once the control plane is up and the
/// Deployments exist (`cp::FAULTS_FROM`).
pub const CP_FAULTS_FROM: Duration = Duration::from_secs(8);

#[cfg(feature = "controlplane")]
fn run_controlplane(opts: &Options) -> Outcome {
    crate::cp::run_here(opts)
}

#[cfg(not(feature = "controlplane"))]
fn run_controlplane(_: &Options) -> Outcome {
    panic!("keel-sim was built without its `controlplane` feature: the controlplane scenario is not in this binary")
}

/// What one step of the simulation came to.
pub(crate) enum Step {
    /// Go on.
    Go,
    /// Every client finished, or the simulation failed (a violation says so).
    Stop,
    /// A host (`who`) panicked (a violation says so); its runtimes are mid-poll.
    Panicked,
}

/// One `sim.step()`, with a failure or a panic of a host (`who`: "a member", "a host")
/// recorded as a violation.
pub(crate) fn step(sim: &mut turmoil::Sim<'_>, who: &str, violations: &mut Vec<String>) -> Step {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.step())) {
        Ok(Ok(true)) => Step::Stop,
        Ok(Ok(false)) => Step::Go,
        Ok(Err(e)) => {
            violations.push(format!("simulation failed at {} ms: {e}", sim.elapsed().as_millis()));
            Step::Stop
        }
        Err(panic) => {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            violations.push(format!("{who} panicked at {} ms: {}", sim.elapsed().as_millis(), msg.unwrap_or_default()));
            Step::Panicked
        }
    }
}

/// Run `opts` to the end and judge it, on a thread of its own, so nothing a previous run left in
/// thread-local state (tokio's and turmoil's) can reach this one.
pub fn run(opts: &Options) -> Outcome {
    let opts = opts.clone();
    let name = format!("sim-{}", opts.seed);
    let body = move || if opts.scenario.control_plane() { run_controlplane(&opts) } else { run_here(&opts) };
    match std::thread::Builder::new().name(name).spawn(body).map(|t| t.join()) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => panic!("cannot start the simulation's thread: {e}"),
    }
}

/// The bugs a member runs with: the planted ones, and with a durability fault (a planted one or a
/// lying disk) a leader that re-replicates to a follower whose log went back, so the harm shows
/// as a lost write, not as a panic that aborts the process (see
/// [`Bugs::replicate_over_reverted_logs`]). Without one, a log that went back is a store bug and
/// the leader's panic is the loud answer.
fn durability_faults_tolerated(opts: &Options) -> Bugs {
    let durability = opts.bugs.ack_before_sync || opts.bugs.skip_small_syncs || opts.lying_disks;
    Bugs { replicate_over_reverted_logs: opts.bugs.replicate_over_reverted_logs || durability, ..opts.bugs }
}

/// The member slots (disk outside the host, running handle, incarnations) and how each member
/// starts, for `names` at `ips`; those past `opts.members` join later (the spare).
pub(crate) fn member_slots(
    opts: &Options,
    names: &[String],
    ips: &[std::net::IpAddr],
    base: &std::path::Path,
    cluster_of: &dyn Fn(usize) -> String,
) -> (Vec<Slot>, Vec<MemberSpec>) {
    let mut slots = Vec::new();
    let mut specs = Vec::new();
    for (i, (name, ip)) in names.iter().zip(ips).enumerate() {
        let joins = i >= opts.members;
        slots.push(Slot {
            name: name.clone(),
            ip: *ip,
            disk: Disk {
                backend: MemoryBackend::new(),
                log: SimLogDisk::new(opts.seed ^ (i as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93), opts.lying_disks),
                clock: Arc::new(DriftClock::new()),
                dir: base.join(name),
            },
            running: Rc::new(RefCell::new(None)),
            incarnations: Rc::new(Cell::new(0)),
            removed: Cell::new(false),
            go: Rc::new(Cell::new(!joins)),
        });
        specs.push(MemberSpec {
            name: name.clone(),
            initial_cluster: cluster_of(if joins { names.len() } else { opts.members }),
            state: if joins { "existing" } else { "new" },
            ip: *ip,
            seed: opts.seed.wrapping_add(i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            bugs: durability_faults_tolerated(opts),
        });
    }
    (slots, specs)
}

/// The simulation's wall-clock start, seconds after the Unix epoch (2026-12-07T00:00:00Z).
pub(crate) const SIM_EPOCH_SECS: u64 = 1_796_601_600;

fn run_here(opts: &Options) -> Outcome {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(opts.faults_until + RECOVERY + Duration::from_secs(30))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(BASE_LATENCY.0)
        .max_message_latency(BASE_LATENCY.1)
        .tcp_capacity(1 << 16)
        .rng_seed(opts.seed)
        // A fixed wall-clock start: what members read from it (member-add IDs hash the second,
        // as etcd's do) must replay from the seed, not from the day the run happens.
        .epoch(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_SECS))
        .build();
    // The membership scenario has a spare member, started once the admin has added it.
    let spare = usize::from(opts.scenario == Scenario::Membership);
    let names: Vec<String> = (1..=opts.members + spare).map(|i| format!("m{i}")).collect();
    let ips: Vec<_> = names.iter().map(|n| sim.lookup(n.as_str())).collect();
    let cluster_of = |n: usize| -> String {
        names.iter().zip(&ips).take(n).map(|(n, ip)| format!("{n}=http://{ip}:{PEER_PORT}")).collect::<Vec<_>>().join(",")
    };
    // Snapshot folders (never written in a run; see the README): a fresh one per run.
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            let violations = vec![format!("no temporary folder for the run: {e}")];
            return Outcome { recorded: Recorded::default(), violations, undecided: false, elapsed: Duration::ZERO };
        }
    };
    let base = scratch.path().to_path_buf();
    let (slots, specs) = member_slots(opts, &names, &ips, &base, &cluster_of);
    // Every host is registered now (one registered mid-run gets a clock that can sit a
    // millisecond off from run to run); the spare's software waits for its `go`.
    for (slot, spec) in slots.iter().zip(&specs) {
        add_host(&mut sim, slot, spec);
    }
    let members: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, CLIENT_PORT)).collect();
    let rec: Recorder = Rc::new(RefCell::new(Recorded::default()));
    rec.borrow_mut().member_names = names.iter().zip(&ips).map(|(n, ip)| (SocketAddr::new(*ip, CLIENT_PORT), n.clone())).collect();
    let stop = opts.faults_until + Duration::from_millis(500);
    let traffic = if opts.scenario == Scenario::Kube { Traffic::Kube } else { Traffic::Kv };
    let seed = |k: u64| opts.seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for c in 0..opts.clients {
        let f = workload::client(rec.clone(), c, members.clone(), seed(100 + u64::from(c)), traffic, stop);
        sim.client(format!("client{c}").as_str(), f);
    }
    sim.client("leases", workload::lease_keeper(rec.clone(), 800, members.clone(), seed(700), stop));
    for w in 0..SHAPED_WATCHERS {
        let kube = opts.scenario == Scenario::Kube;
        sim.client(format!("shaped{w}").as_str(), watchers::shaped(rec.clone(), w, members.clone(), seed(250 + w), kube, stop));
    }
    if opts.scenario == Scenario::Kube {
        for w in 0..2u64 {
            sim.client(format!("watcher{w}").as_str(), watchers::watcher(rec.clone(), members.clone(), seed(200 + w), stop));
        }
        let every = Duration::from_secs(3);
        sim.client("compactor", workload::compactor(rec.clone(), 900, members.clone(), seed(300), every, stop));
    }
    let end = opts.faults_until + RECOVERY;
    let signals: Signals = Default::default();
    if spare == 1 {
        let originals: Vec<String> = ips.iter().take(opts.members).map(|ip| format!("http://{ip}:{PEER_PORT}")).collect();
        let new_peer = format!("http://{}:{PEER_PORT}", ips[opts.members]);
        let start = Duration::from_millis(1500 + seed(600) % 2000);
        let admin = membership::admin(
            signals.clone(),
            members.clone(),
            originals,
            new_peer,
            seed(601),
            start,
            opts.faults_until + Duration::from_secs(8),
        );
        sim.client("admin", admin);
    }
    sim.client("reference", watchers::reference(rec.clone(), members.clone(), seed(400), end));
    sim.client("liveness", workload::liveness(rec.clone(), 999, end));
    let mut nemesis = Nemesis::new(opts.plan.clone(), seed(500));
    let mut invariants = Invariants::default();
    let mut violations = Vec::new();
    let mut healed = false;
    let mut checking = false;
    let mut panicked = false;
    let mut broken = false;
    let mut spare_started = false;
    loop {
        let now = sim.elapsed();
        if spare == 1 {
            let (start_new, removed) = {
                let s = signals.borrow();
                (s.start_new, s.removed)
            };
            if start_new && !spare_started {
                spare_started = true;
                slots[opts.members].go.set(true);
            }
            if let Some(r) = removed
                && !slots[r].removed.get()
            {
                slots[r].removed.set(true);
                sim.crash(slots[r].name.as_str());
                *slots[r].running.borrow_mut() = None;
            }
        }
        if !healed && now >= opts.faults_until {
            nemesis.stop(&mut sim, &slots, now);
            healed = true;
        } else if !healed {
            nemesis.step(&mut sim, &slots, now);
        }
        // Liveness once the faults stopped and membership changes (if any) are settled.
        if healed && !checking && (signals.borrow().done || spare == 0 || now >= opts.faults_until + Duration::from_secs(9)) {
            checking = true;
            let live: Vec<SocketAddr> =
                slots.iter().filter(|s| !s.removed.get() && s.go.get()).map(|s| SocketAddr::new(s.ip, CLIENT_PORT)).collect();
            rec.borrow_mut().liveness_members = Some(live);
        }
        if std::env::var_os("KEEL_SIM_TRACE").is_some() && sim.elapsed().as_millis() % 1000 == 0 {
            let r = rec.borrow();
            let leaders: Vec<_> = slots
                .iter()
                .map(|s| {
                    s.running.borrow().as_ref().map(|r| {
                        let m = r.replica.metrics();
                        (r.replica.is_leader(), r.applied.visible().0, r.applied.is_learner(), m.membership_config.membership().to_string())
                    })
                })
                .collect();
            eprintln!("{leaders:?}");
            eprintln!("t={} ms ops={} ref_links={}", sim.elapsed().as_millis(), r.history.ops.len(), r.reference.links.len());
        }
        match step(&mut sim, "a member", &mut violations) {
            Step::Go => {}
            Step::Stop => break,
            Step::Panicked => {
                // Its runtimes are mid-poll: dropping them could panic again. Leak instead.
                panicked = true;
                break;
            }
        }
        // The first broken invariant is recorded and the run goes on unchecked, to its end: the
        // members' final histories then show what the break cost (a lost acknowledged write).
        if !broken && let Err(v) = invariants.check(&slots) {
            violations.push(format!("raft invariant at {} ms: {v}", sim.elapsed().as_millis()));
            broken = true;
        }
    }
    let elapsed = sim.elapsed();
    if panicked {
        std::mem::forget(sim);
    } else {
        drop(sim);
    }
    rec.borrow_mut().membership = std::mem::take(&mut signals.borrow_mut().steps);
    rec.borrow_mut().faults = std::mem::take(&mut nemesis.log);
    rec.borrow_mut().crashes = std::mem::take(&mut nemesis.crashes);
    let recorded = Rc::try_unwrap(rec).map(RefCell::into_inner).unwrap_or_else(|rc| std::mem::take(&mut *rc.borrow_mut()));
    let mut undecided = false;
    violations.extend(checks::judge(&recorded, &mut undecided));
    let _ = linearizable_kv::DEFAULT_BUDGET;
    Outcome { recorded, violations, undecided, elapsed }
}
