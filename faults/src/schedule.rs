//! Seeded fault schedules: a seed and a [`Config`] give the same list of [`Step`]s on every
//! run, printed before the run starts, so any failure replays from its seed. Which process a
//! step hits is named by role ("the store leader", "the active scheduler") and resolved when
//! the step runs.
//!
//! Faults do not overlap: each starts after the previous one ended (a pause resumed, a
//! partition healed) plus a gap, and the harness also waits for killed parts to be running
//! again first, so the cluster never loses more than one thing at a time (a 3-member store
//! keeps its quorum). Pauses of an apiserver stay under 3 s: a request held longer than the
//! leader-election margin (`leaseDuration − renewDeadline`, 5 s) can land after a takeover,
//! which [`crate::check::single_leader`] would rightly count as two leaders, but which no
//! component can prevent (Kubernetes has the same window).

use crate::rng::Rng;
use std::time::Duration;

/// Which process a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The store member that leads Raft when the step runs.
    StoreLeader,
    /// Store member `i` (1-based).
    StoreMember(usize),
    /// keel-apiserver `i` (1-based).
    Apiserver(usize),
    /// The scheduler holding the Lease when the step runs.
    ActiveScheduler,
    /// The controller-manager holding the Lease when the step runs.
    ActiveControllerManager,
    /// The kubelet of node `i` (1-based).
    Kubelet(usize),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::StoreLeader => write!(f, "the store leader"),
            Target::StoreMember(i) => write!(f, "store member m{i}"),
            Target::Apiserver(i) => write!(f, "apiserver-{i}"),
            Target::ActiveScheduler => write!(f, "the active scheduler"),
            Target::ActiveControllerManager => write!(f, "the active controller-manager"),
            Target::Kubelet(i) => write!(f, "kubelet-{i}"),
        }
    }
}

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 (keel up starts it again).
    Kill(Target),
    /// SIGSTOP, then SIGCONT after the duration.
    Pause(Target, Duration),
    /// Drop every packet between the kubelet of node `i` and the apiservers, for the duration.
    IsolateKubelet(usize, Duration),
    /// Drop every peer packet between a store member and the other members, for the duration.
    IsolateMember(Target, Duration),
}

impl Fault {
    /// How long the fault lasts (0 for a kill).
    pub fn lasts(&self) -> Duration {
        match self {
            Fault::Kill(_) => Duration::ZERO,
            Fault::Pause(_, d) | Fault::IsolateKubelet(_, d) | Fault::IsolateMember(_, d) => *d,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill(t) => write!(f, "kill -9 {t}"),
            Fault::Pause(t, d) => write!(f, "SIGSTOP {t} for {d:?}"),
            Fault::IsolateKubelet(i, d) => write!(f, "partition kubelet-{i} from the apiservers for {d:?}"),
            Fault::IsolateMember(t, d) => write!(f, "partition {t} from the other members for {d:?}"),
        }
    }
}

/// One step: a fault at an offset from the start of the fault phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// When it starts (the harness may start it later, never earlier).
    pub at: Duration,
    /// What it does.
    pub fault: Fault,
}

/// What a schedule may contain.
#[derive(Clone, Debug)]
pub struct Config {
    /// Length of the fault phase.
    pub duration: Duration,
    /// Store members (and apiservers and kubelets: one per member address).
    pub members: usize,
    /// Whether schedulers run (else no scheduler faults).
    pub scheduler: bool,
    /// Whether controller-managers run.
    pub controller_manager: bool,
    /// Whether iptables partitions may be used.
    pub partitions: bool,
    /// The quiet time between two faults.
    pub gap: (Duration, Duration),
}

impl Config {
    /// A 3-member cluster with everything on, `secs` of faults.
    pub fn full(secs: u64) -> Config {
        Config {
            duration: Duration::from_secs(secs),
            members: 3,
            scheduler: true,
            controller_manager: true,
            partitions: true,
            gap: (Duration::from_secs(2), Duration::from_secs(6)),
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn draw(r: &mut Rng, c: &Config) -> Fault {
    let n = c.members as u64;
    let member = |r: &mut Rng| Target::StoreMember(r.between(1, n) as usize);
    let mut kinds: Vec<(u64, u8)> = vec![(3, 0), (2, 1), (2, 2)]; // kill store, kill apiserver, kill kubelet
    kinds.extend([(2, 3), (1, 4), (1, 5)]); // pause store, pause apiserver, pause kubelet
    if c.scheduler {
        kinds.extend([(3, 6), (2, 7)]);
    }
    if c.controller_manager {
        kinds.extend([(3, 8), (2, 9)]);
    }
    if c.partitions {
        kinds.extend([(2, 10), (2, 11)]);
    }
    match r.weighted(&kinds).copied().unwrap_or(0) {
        0 => Fault::Kill(if r.below(2) == 0 { Target::StoreLeader } else { member(r) }),
        1 => Fault::Kill(Target::Apiserver(r.between(1, n) as usize)),
        2 => Fault::Kill(Target::Kubelet(r.between(1, n) as usize)),
        3 => Fault::Pause(if r.below(2) == 0 { Target::StoreLeader } else { member(r) }, r.duration(secs(1), secs(6))),
        4 => Fault::Pause(Target::Apiserver(r.between(1, n) as usize), r.duration(Duration::from_millis(500), secs(3))),
        5 => Fault::Pause(Target::Kubelet(r.between(1, n) as usize), r.duration(secs(2), secs(20))),
        6 => Fault::Kill(Target::ActiveScheduler),
        // Beyond the lease (15 s) half of the time: the standby takes over and the woken
        // leader must not act.
        7 => Fault::Pause(Target::ActiveScheduler, r.duration(secs(3), secs(25))),
        8 => Fault::Kill(Target::ActiveControllerManager),
        9 => Fault::Pause(Target::ActiveControllerManager, r.duration(secs(3), secs(25))),
        10 => Fault::IsolateKubelet(r.between(1, n) as usize, r.duration(secs(5), secs(30))),
        _ => Fault::IsolateMember(if r.below(2) == 0 { Target::StoreLeader } else { member(r) }, r.duration(secs(3), secs(15))),
    }
}

/// The schedule of `seed` under `c`.
pub fn generate(seed: u64, c: &Config) -> Vec<Step> {
    let mut r = Rng::fork(seed, "schedule");
    let mut out = Vec::new();
    let mut at = r.duration(c.gap.0, c.gap.1);
    while at < c.duration {
        let fault = draw(&mut r, c);
        out.push(Step { at, fault });
        at += fault.lasts() + r.duration(c.gap.0, c.gap.1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_and_seeds_differ() {
        let c = Config::full(600);
        assert_eq!(generate(42, &c), generate(42, &c));
        assert_ne!(generate(42, &c), generate(43, &c));
    }

    #[test]
    fn faults_do_not_overlap_and_stay_within_the_phase_and_the_config() {
        let c = Config { scheduler: false, controller_manager: false, partitions: false, ..Config::full(3600) };
        for seed in 0..50 {
            let steps = generate(seed, &c);
            assert!(!steps.is_empty());
            for w in steps.windows(2) {
                assert!(w[0].at + w[0].fault.lasts() + c.gap.0 <= w[1].at, "seed {seed}: {w:?}");
            }
            for s in &steps {
                assert!(s.at < c.duration);
                let t = match s.fault {
                    Fault::Kill(t) | Fault::Pause(t, _) => t,
                    other => panic!("seed {seed}: partitions are off: {other}"),
                };
                assert!(!matches!(t, Target::ActiveScheduler | Target::ActiveControllerManager), "seed {seed}: {t}");
                if let (Fault::Pause(_, d), Target::Apiserver(_)) = (s.fault, t) {
                    assert!(d <= secs(3), "an apiserver pause stays under the election margin");
                }
            }
        }
    }

    #[test]
    fn every_kind_of_fault_turns_up_in_a_long_schedule() {
        let steps = generate(1, &Config::full(3600));
        let has = |f: &dyn Fn(&Fault) -> bool| steps.iter().any(|s| f(&s.fault));
        assert!(has(&|f| matches!(f, Fault::Kill(Target::StoreLeader))));
        assert!(has(&|f| matches!(f, Fault::Kill(Target::ActiveScheduler))));
        assert!(has(&|f| matches!(f, Fault::Pause(Target::ActiveControllerManager, d) if *d > secs(15))));
        assert!(has(&|f| matches!(f, Fault::IsolateKubelet(..))));
        assert!(has(&|f| matches!(f, Fault::IsolateMember(..))));
        assert!(has(&|f| matches!(f, Fault::Kill(Target::Kubelet(_)))));
    }
}
