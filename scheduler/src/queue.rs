//! The scheduling queue (kube's `PriorityQueue`): pods waiting for a node, in three parts.
//!
//! ```text
//!   add ──► active (by priority desc, then time queued) ──pop──► in flight
//!              ▲   ▲                                              │ requeue(unschedulable)
//!              │   └── flush: backoff expired ◄── backoff ◄───────┤ requeue(error) / moved while in flight
//!              └── move_all (a node or pod changed) ◄── unschedulable ◄┘
//! ```
//!
//! Invariants:
//! - A pod is in at most one place (active, backoff, unschedulable or in flight); the entry
//!   map is the source of truth and the ordered indexes mirror it.
//! - Back-off after the n-th failed attempt is `initial × 2^(n−1)`, capped at `max` (kube's
//!   1 s → 10 s), counted from the time the pod was requeued.
//! - A pod that fails as unschedulable while a cluster change happened during its attempt
//!   goes to back-off, not to unschedulable: the change it may need must not be lost
//!   (kube's `moveRequestCycle`).
//! - Unschedulable pods are retried at least every `max_in_unschedulable` (5 min) even if no
//!   event moves them.
//! - Only `tokio::time::Instant`s passed in are used: the queue has no clock of its own.

use crate::pod::{PodInfo, PodKey};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Queue tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// `podInitialBackoffSeconds` (1 s).
    pub initial_backoff: Duration,
    /// `podMaxBackoffSeconds` (10 s).
    pub max_backoff: Duration,
    /// `podMaxInUnschedulablePodsDuration` (5 min).
    pub max_in_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(300),
        }
    }
}

/// Where a queued pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Ready to be tried.
    Active,
    /// Waiting for its back-off to expire.
    Backoff,
    /// Waiting for a cluster change.
    Unschedulable,
    /// Popped: an attempt is running.
    InFlight,
}

type ActiveKey = (Reverse<i32>, Instant, u64);

#[derive(Debug)]
struct Entry {
    info: Arc<PodInfo>,
    /// Scheduling attempts so far.
    attempts: u32,
    /// When it was (re)queued: orders equal priorities and starts the back-off.
    queued_at: Instant,
    place: Place,
    seq: u64,
    /// `move_cycle` when popped.
    popped_cycle: u64,
}

/// A popped pod.
#[derive(Clone, Debug)]
pub struct Popped {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Attempts including this one.
    pub attempts: u32,
}

/// How many pods are where (for `scheduler_pending_pods`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// In the active queue.
    pub active: usize,
    /// Backing off.
    pub backoff: usize,
    /// Unschedulable, waiting for a change.
    pub unschedulable: usize,
    /// Being tried (or bound) right now.
    pub in_flight: usize,
}

/// The queue.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    config: QueueConfig,
    entries: HashMap<PodKey, Entry>,
    active: BTreeMap<ActiveKey, PodKey>,
    backoff: BTreeMap<(Instant, u64), PodKey>,
    unschedulable: BTreeSet<PodKey>,
    move_cycle: u64,
    seq: u64,
    /// When unschedulable pods were last checked for staleness (kube checks every 30 s).
    leftover_checked: Option<Instant>,
}

/// How often [`SchedulingQueue::flush`] looks for pods unschedulable for too long.
const LEFTOVER_INTERVAL: Duration = Duration::from_secs(30);

impl SchedulingQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> SchedulingQueue {
        SchedulingQueue { config, ..Default::default() }
    }

    /// kube's `calculateBackoffDuration` for a pod that failed `attempts` times.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.config.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d > self.config.max_backoff {
                return self.config.max_backoff;
            }
        }
        d.min(self.config.max_backoff)
    }

    fn backoff_until(&self, e: &Entry) -> Instant {
        e.queued_at + self.backoff_duration(e.attempts)
    }

    fn unlink(&mut self, key: &PodKey) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        match e.place {
            Place::Active => {
                self.active.remove(&(Reverse(e.info.priority), e.queued_at, e.seq));
            }
            Place::Backoff => {
                let until = self.backoff_until(&e);
                self.backoff.remove(&(until, e.seq));
            }
            Place::Unschedulable => {
                self.unschedulable.remove(key);
            }
            Place::InFlight => {}
        }
        Some(e)
    }

    fn link(&mut self, key: PodKey, mut e: Entry, place: Place) {
        self.seq += 1;
        e.seq = self.seq;
        e.place = place;
        match place {
            Place::Active => {
                self.active.insert((Reverse(e.info.priority), e.queued_at, e.seq), key.clone());
            }
            Place::Backoff => {
                self.backoff.insert((self.backoff_until(&e), e.seq), key.clone());
            }
            Place::Unschedulable => {
                self.unschedulable.insert(key.clone());
            }
            Place::InFlight => {}
        }
        self.entries.insert(key, e);
    }

    /// Adds a pending pod, or updates the one queued under its key. A real update (its spec
    /// changed) of an unschedulable pod makes it worth trying again.
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        let Some(mut e) = self.unlink(&key) else {
            let e = Entry { info, attempts: 0, queued_at: now, place: Place::Active, seq: 0, popped_cycle: 0 };
            self.link(key, e, Place::Active);
            return;
        };
        let changed = e.info.spec_hash != info.spec_hash;
        e.info = info;
        let place = match e.place {
            Place::Unschedulable if changed => self.retry_place(&e, now),
            p => p,
        };
        self.link(key, e, place);
    }

    /// Backoff or active, whichever the pod's back-off says.
    fn retry_place(&self, e: &Entry, now: Instant) -> Place {
        if e.attempts > 0 && self.backoff_until(e) > now { Place::Backoff } else { Place::Active }
    }

    /// Forgets a pod (deleted, or bound by anyone).
    pub fn remove(&mut self, key: &PodKey) {
        self.unlink(key);
    }

    /// Whether the queue holds `key` anywhere (in flight included).
    pub fn contains(&self, key: &PodKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Takes the most important active pod.
    pub fn pop(&mut self) -> Option<Popped> {
        let (_, key) = self.active.pop_first()?;
        let mut e = self.entries.remove(&key)?;
        e.attempts += 1;
        e.popped_cycle = self.move_cycle;
        let popped = Popped { info: e.info.clone(), attempts: e.attempts };
        self.link(key, e, Place::InFlight);
        Some(popped)
    }

    /// Whether a pod is ready to pop.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Puts an in-flight pod back after a failed attempt: `unschedulable` (no node fits) waits
    /// for a cluster change, anything else backs off.
    pub fn requeue(&mut self, key: &PodKey, unschedulable: bool, now: Instant) {
        let Some(mut e) = self.unlink(key) else { return };
        e.queued_at = now;
        let place = if unschedulable && e.popped_cycle == self.move_cycle { Place::Unschedulable } else { Place::Backoff };
        self.link(key.clone(), e, place);
    }

    /// A cluster change that may let unschedulable pods fit: every unschedulable pod moves to
    /// back-off (still backing off) or active.
    pub fn move_all(&mut self, now: Instant) {
        self.move_cycle += 1;
        let keys: Vec<PodKey> = std::mem::take(&mut self.unschedulable).into_iter().collect();
        for key in keys {
            if let Some(mut e) = self.entries.remove(&key) {
                e.place = Place::InFlight; // detached; relinked below
                let place = self.retry_place(&e, now);
                self.link(key, e, place);
            }
        }
    }

    /// Moves expired back-offs to active, and (looking every 30 s) pods unschedulable for too
    /// long back to a retry.
    pub fn flush(&mut self, now: Instant) {
        while let Some(((until, _), _)) = self.backoff.first_key_value() {
            if *until > now {
                break;
            }
            let Some((_, key)) = self.backoff.pop_first() else { break };
            if let Some(mut e) = self.entries.remove(&key) {
                e.place = Place::InFlight;
                self.link(key, e, Place::Active);
            }
        }
        if self.leftover_checked.is_some_and(|t| now.saturating_duration_since(t) < LEFTOVER_INTERVAL) {
            return;
        }
        self.leftover_checked = Some(now);
        let stale: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| now.saturating_duration_since(e.queued_at) >= self.config.max_in_unschedulable)
            })
            .cloned()
            .collect();
        for key in stale {
            if let Some(e) = self.unlink(&key) {
                let place = self.retry_place(&e, now);
                self.link(key, e, place);
            }
        }
    }

    /// When the next back-off expires (for the driver's timer).
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.first_key_value().map(|((t, _), _)| *t)
    }

    /// Where `key` is.
    pub fn place(&self, key: &PodKey) -> Option<Place> {
        self.entries.get(key).map(|e| e.place)
    }

    /// Pods per place.
    pub fn counts(&self) -> Counts {
        let in_flight = self.entries.len() - self.active.len() - self.backoff.len() - self.unschedulable.len();
        Counts { active: self.active.len(), backoff: self.backoff.len(), unschedulable: self.unschedulable.len(), in_flight }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::testing::pod;
    use serde_json::json;

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(name, json!({"priority": priority})))
    }

    fn key(name: &str) -> PodKey {
        PodKey::new("default", name)
    }

    fn order(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop()).map(|x| x.info.key.name().to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priority_first_then_first_come() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        let t = Instant::now();
        q.add(p("low-1", 0), t);
        q.add(p("high", 100), t + Duration::from_millis(1));
        q.add(p("low-2", 0), t + Duration::from_millis(2));
        q.add(p("mid", 50), t + Duration::from_millis(3));
        q.add(p("negative", -5), t);
        assert_eq!(order(&mut q), ["high", "mid", "low-1", "low-2", "negative"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let q = SchedulingQueue::new(QueueConfig::default());
        let table = [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (6, 10), (40, 10)];
        for (attempts, secs) in table {
            assert_eq!(q.backoff_duration(attempts), Duration::from_secs(secs), "after {attempts} attempts");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_change_then_respect_their_backoff() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        let t = Instant::now();
        q.add(p("a", 0), t);
        assert_eq!(q.pop().map(|x| x.attempts), Some(1));
        q.requeue(&key("a"), true, t);
        assert_eq!(q.place(&key("a")), Some(Place::Unschedulable));
        q.flush(t + Duration::from_secs(60));
        assert_eq!(q.place(&key("a")), Some(Place::Unschedulable), "no change, no retry (until 5 min)");
        // A change half a second after the failure: still within the 1 s back-off.
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(p("a", 0), t);
        q.pop();
        q.requeue(&key("a"), true, t);
        q.move_all(t + Duration::from_millis(500));
        assert_eq!(q.place(&key("a")), Some(Place::Backoff), "moved while backing off");
        assert_eq!(q.next_backoff_expiry(), Some(t + Duration::from_secs(1)));
        q.flush(t + Duration::from_millis(999));
        assert!(!q.has_active());
        q.flush(t + Duration::from_secs(1));
        assert_eq!(q.place(&key("a")), Some(Place::Active));
        // Second failure: 2 s back-off.
        assert_eq!(q.pop().map(|x| x.attempts), Some(2));
        q.requeue(&key("a"), false, t + Duration::from_secs(1));
        assert_eq!(q.next_backoff_expiry(), Some(t + Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_the_attempt_is_not_lost() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        let t = Instant::now();
        q.add(p("a", 0), t);
        q.pop();
        q.move_all(t); // a node was added while "a" was being tried
        q.requeue(&key("a"), true, t);
        assert_eq!(q.place(&key("a")), Some(Place::Backoff), "retried after back-off instead of waiting for another change");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_unschedulable_pods_are_retried_after_five_minutes() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        let t = Instant::now();
        q.add(p("a", 0), t);
        q.pop();
        q.requeue(&key("a"), true, t);
        q.flush(t + Duration::from_secs(299));
        assert_eq!(q.place(&key("a")), Some(Place::Unschedulable));
        q.flush(t + Duration::from_secs(310));
        assert_eq!(q.place(&key("a")), Some(Place::Unschedulable), "looked at most every 30 s");
        q.flush(t + Duration::from_secs(329));
        assert_eq!(q.place(&key("a")), Some(Place::Active), "at the first look after 5 min");
    }

    #[tokio::test(start_paused = true)]
    async fn updates_deduplicate_and_only_spec_changes_wake_unschedulable_pods() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        let t = Instant::now();
        q.add(p("a", 0), t);
        q.add(p("a", 0), t);
        assert_eq!(q.counts(), Counts { active: 1, ..Default::default() }, "one entry per pod");
        q.pop();
        q.requeue(&key("a"), true, t);
        let status_only = Arc::new(crate::pod::testing::pod_with(
            "a",
            json!({"priority": 0}),
            json!({"conditions": [{"type": "PodScheduled", "status": "False"}]}),
        ));
        q.add(status_only, t + Duration::from_secs(5));
        assert_eq!(q.place(&key("a")), Some(Place::Unschedulable), "our own status write does not retry the pod");
        q.add(p("a", 7), t + Duration::from_secs(5));
        assert_eq!(q.place(&key("a")), Some(Place::Active), "a spec change does");
        q.remove(&key("a"));
        assert_eq!(q.counts(), Counts::default());
        assert!(q.pop().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_pods_are_counted_and_keep_their_place_on_update() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        let t = Instant::now();
        q.add(p("a", 0), t);
        q.add(p("b", 0), t);
        q.pop();
        q.add(p("a", 3), t);
        assert_eq!(q.place(&key("a")), Some(Place::InFlight));
        assert_eq!(q.counts(), Counts { active: 1, in_flight: 1, ..Default::default() });
    }
}
