//! Faults from a seeded schedule: one at a time, each healed before the next begins, so the
//! schedule is a plain list a human can read next to a failing history.

use crate::cluster::Slot;
use keel_store::seams::{Rng, SplitMix64};
use std::fmt;
use std::time::Duration;

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// These members are cut off from the others, both ways.
    Partition {
        /// The side cut off (a minority or a majority).
        side: Vec<usize>,
    },
    /// Whoever leads when the fault begins is cut off from everyone.
    IsolateLeader,
    /// Messages from `from` to `to` are lost; the other way works.
    OneWay {
        /// Sender whose messages are lost.
        from: usize,
        /// Receiver.
        to: usize,
    },
    /// Every message between two members waits up to this long.
    Delay {
        /// Maximum latency in ms.
        max_ms: u64,
    },
    /// The link between two members flaps: each 50 ms it is cut or repaired at random.
    Loss {
        /// One end.
        a: usize,
        /// Other end.
        b: usize,
    },
    /// A member's messages are held (it is paused), then all delivered at once.
    Pause {
        /// The member.
        member: usize,
    },
    /// A member crashes (losing what it did not sync when `lose_unsynced`) and restarts when
    /// the fault ends.
    Crash {
        /// The member.
        member: usize,
        /// Its disk forgets unsynced writes.
        lose_unsynced: bool,
    },
    /// Every member loses power at once, unsynced writes are lost, and all restart.
    CrashAll,
    /// A member's lease clock runs at `percent` of true speed (leases expire by it).
    Drift {
        /// The member.
        member: usize,
        /// Its clock's rate, in percent.
        percent: u64,
    },
}

/// A fault with when it starts and how long it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Start (simulated time).
    pub at: Duration,
    /// Length.
    pub lasts: Duration,
    /// What.
    pub fault: Fault,
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>6}ms +{:>4}ms {:?}", self.at.as_millis(), self.lasts.as_millis(), self.fault)
    }
}

/// Which faults a scenario draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Menu {
    /// Network faults only.
    Network,
    /// Network faults and crashes.
    WithCrashes,
    /// Crashes, power loss and partitions.
    Crashes,
}

/// A schedule of faults between 1 s and `until`.
pub fn plan(rng: &mut SplitMix64, members: usize, menu: Menu, until: Duration) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut at = Duration::from_millis(1000 + rng.next_u64() % 1000);
    let n = members as u64;
    while at < until {
        let lasts = Duration::from_millis(300 + rng.next_u64() % 2700);
        let pick = |rng: &mut SplitMix64| (rng.next_u64() % n) as usize;
        let choices: &[u8] = match menu {
            Menu::Network => &[0, 1, 2, 3, 4, 5, 8],
            Menu::WithCrashes => &[0, 1, 2, 3, 4, 5, 6, 6, 8],
            Menu::Crashes => &[0, 1, 6, 6, 6, 7, 8],
        };
        let fault = match choices[(rng.next_u64() % choices.len() as u64) as usize] {
            0 => {
                // A minority or a majority side, of random members.
                let size = 1 + rng.next_u64() % (n - 1);
                let mut all: Vec<usize> = (0..members).collect();
                let mut side = Vec::new();
                for _ in 0..size {
                    side.push(all.remove((rng.next_u64() % all.len() as u64) as usize));
                }
                side.sort();
                Fault::Partition { side }
            }
            1 => Fault::IsolateLeader,
            2 => {
                let from = pick(rng);
                let to = (from + 1 + (rng.next_u64() % (n - 1)) as usize) % members;
                Fault::OneWay { from, to }
            }
            3 => Fault::Delay { max_ms: 20 + rng.next_u64() % 300 },
            4 => {
                let a = pick(rng);
                let b = (a + 1 + (rng.next_u64() % (n - 1)) as usize) % members;
                Fault::Loss { a, b }
            }
            5 => Fault::Pause { member: pick(rng) },
            6 => Fault::Crash { member: pick(rng), lose_unsynced: rng.next_u64().is_multiple_of(2) },
            7 => Fault::CrashAll,
            _ => {
                let percent = [50, 70, 130, 200][(rng.next_u64() % 4) as usize];
                Fault::Drift { member: pick(rng), percent }
            }
        };
        out.push(Planned { at, lasts, fault });
        at += lasts + Duration::from_millis(200 + rng.next_u64() % 1500);
    }
    out
}

/// The baseline message latency range.
pub const BASE_LATENCY: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(5));

/// Applies and heals faults on a running simulation.
pub struct Nemesis {
    plan: Vec<Planned>,
    next: usize,
    active: Option<(Planned, Vec<usize>)>,
    rng: SplitMix64,
    last_flap: Duration,
    /// What was done, when: each fault as applied, or why it did nothing.
    pub log: Vec<String>,
    /// Every crash: when, which member, and how many unsynced Raft log bytes it lost.
    pub crashes: Vec<(Duration, String, usize)>,
}

/// The members a fault names, if any.
fn named(fault: &Fault) -> Vec<usize> {
    match fault {
        Fault::Partition { side } => side.clone(),
        Fault::OneWay { from: a, to: b } | Fault::Loss { a, b } => vec![*a, *b],
        Fault::Pause { member } | Fault::Crash { member, .. } | Fault::Drift { member, .. } => vec![*member],
        Fault::IsolateLeader | Fault::Delay { .. } | Fault::CrashAll => Vec::new(),
    }
}

impl Nemesis {
    /// A nemesis for `plan`, with its own randomness for flapping links.
    pub fn new(plan: Vec<Planned>, seed: u64) -> Nemesis {
        Nemesis { plan, next: 0, active: None, rng: SplitMix64(seed), last_flap: Duration::ZERO, log: Vec::new(), crashes: Vec::new() }
    }

    /// The fastest a drifting lease clock runs, relative to true time.
    pub const MAX_DRIFT: f64 = 2.0;

    /// Start, continue or heal faults due at `now`.
    pub fn step(&mut self, sim: &mut turmoil::Sim<'_>, slots: &[Slot], now: Duration) {
        if let Some((p, touched)) = &self.active {
            if now >= p.at + p.lasts {
                let (p, touched) = (p.clone(), touched.clone());
                heal(sim, slots, &p.fault, &touched, now);
                self.active = None;
            } else if let Fault::Loss { a, b } = p.fault
                && now >= self.last_flap + Duration::from_millis(50)
            {
                self.last_flap = now;
                if self.rng.next_u64().is_multiple_of(2) {
                    sim.partition(slots[a].name.as_str(), slots[b].name.as_str());
                } else {
                    sim.repair(slots[a].name.as_str(), slots[b].name.as_str());
                }
            }
        }
        if self.active.is_none()
            && let Some(p) = self.plan.get(self.next)
            && now >= p.at
        {
            self.next += 1;
            // A member not running yet (the spare) or removed cannot take the fault.
            if let Some(&m) = named(&p.fault).iter().find(|&&m| !slots[m].go.get() || slots[m].removed.get()) {
                self.log.push(format!("{} ms {:?}: nothing done, {} is not in the cluster", now.as_millis(), p.fault, slots[m].name));
                return;
            }
            if p.fault == Fault::IsolateLeader && leader(slots).is_none() {
                self.log.push(format!("{} ms {:?}: nothing done, no member leads", now.as_millis(), p.fault));
                return;
            }
            self.log.push(format!("{} ms {:?}", now.as_millis(), p.fault));
            let (touched, lost) = apply(sim, slots, &p.fault, now);
            self.crashes.extend(lost.into_iter().map(|(m, bytes)| (now, slots[m].name.clone(), bytes)));
            self.active = Some((p.clone(), touched));
        }
    }

    /// Heal whatever is active and restart every crashed member.
    pub fn stop(&mut self, sim: &mut turmoil::Sim<'_>, slots: &[Slot], now: Duration) {
        if let Some((p, touched)) = self.active.take() {
            heal(sim, slots, &p.fault, &touched, now);
        }
        self.next = self.plan.len();
    }
}

fn leader(slots: &[Slot]) -> Option<usize> {
    slots.iter().position(|s| s.running.borrow().as_ref().is_some_and(|r| r.replica.is_leader()))
}

/// Members started so far (a spare member starts once it has been added).
fn hosted(slots: &[Slot]) -> impl Iterator<Item = (usize, &Slot)> {
    slots.iter().enumerate().filter(|(_, s)| s.go.get())
}

fn cut(sim: &turmoil::Sim<'_>, slots: &[Slot], side: &[usize]) {
    for &a in side {
        for (b, other) in hosted(slots) {
            if !side.contains(&b) {
                sim.partition(slots[a].name.as_str(), other.name.as_str());
            }
        }
    }
}

/// Crash `slot`'s member; the unsynced Raft log bytes it lost.
fn crash(sim: &mut turmoil::Sim<'_>, slot: &Slot, lose_unsynced: bool) -> usize {
    sim.crash(slot.name.as_str());
    *slot.running.borrow_mut() = None;
    if lose_unsynced { slot.disk.crash() } else { 0 }
}

/// Apply `fault`; the members it touched, and for each member it crashed the unsynced Raft
/// log bytes lost.
fn apply(sim: &mut turmoil::Sim<'_>, slots: &[Slot], fault: &Fault, now: Duration) -> (Vec<usize>, Vec<(usize, usize)>) {
    if let Fault::Crash { member, lose_unsynced } = fault {
        let lost = crash(sim, &slots[*member], *lose_unsynced);
        return (vec![*member], vec![(*member, lost)]);
    }
    if *fault == Fault::CrashAll {
        let all: Vec<usize> = hosted(slots).filter(|(_, s)| !s.removed.get()).map(|(i, _)| i).collect();
        let lost = all.iter().map(|&i| (i, crash(sim, &slots[i], true))).collect();
        return (all, lost);
    }
    let touched = match fault {
        Fault::Partition { side } => {
            cut(sim, slots, side);
            side.clone()
        }
        Fault::IsolateLeader => match leader(slots) {
            Some(l) => {
                cut(sim, slots, &[l]);
                vec![l]
            }
            None => Vec::new(),
        },
        Fault::OneWay { from, to } => {
            sim.partition_oneway(slots[*from].name.as_str(), slots[*to].name.as_str());
            vec![*from, *to]
        }
        Fault::Delay { max_ms } => {
            sim.set_max_message_latency(Duration::from_millis(*max_ms));
            Vec::new()
        }
        Fault::Loss { a, b } => vec![*a, *b],
        Fault::Pause { member } => {
            for (b, other) in hosted(slots) {
                if b != *member {
                    sim.hold(slots[*member].name.as_str(), other.name.as_str());
                }
            }
            vec![*member]
        }
        Fault::Drift { member, percent } => {
            slots[*member].disk.clock.set_rate(*percent as f64 / 100.0, now);
            vec![*member]
        }
        Fault::Crash { .. } | Fault::CrashAll => Vec::new(),
    };
    (touched, Vec::new())
}

fn heal(sim: &mut turmoil::Sim<'_>, slots: &[Slot], fault: &Fault, touched: &[usize], now: Duration) {
    match fault {
        Fault::Drift { member, .. } => slots[*member].disk.clock.set_rate(1.0, now),
        Fault::Partition { .. } | Fault::IsolateLeader | Fault::Loss { .. } => {
            for (i, a) in hosted(slots) {
                for (_, b) in hosted(slots).filter(|(j, _)| *j > i) {
                    sim.repair(a.name.as_str(), b.name.as_str());
                }
            }
        }
        Fault::OneWay { from, to } => sim.repair_oneway(slots[*from].name.as_str(), slots[*to].name.as_str()),
        Fault::Delay { .. } => sim.set_max_message_latency(BASE_LATENCY.1),
        Fault::Pause { member } => {
            for (b, other) in hosted(slots) {
                if b != *member {
                    sim.release(slots[*member].name.as_str(), other.name.as_str());
                }
            }
        }
        Fault::Crash { .. } | Fault::CrashAll => {
            for &m in touched {
                if !slots[m].removed.get() {
                    sim.bounce(slots[m].name.as_str());
                }
            }
        }
    }
}
