//! A de-duplicating, delaying, rate-limited work queue of [`ObjectKey`]s: client-go's
//! `workqueue.RateLimitingInterface`, the shape kube-runtime's `Controller` also has.
//!
//! Invariants (what makes reconcilers safe to run on several workers):
//! - a key is at most once in the queue (`dirty`), however often it is added;
//! - a key being processed (`processing`) is never handed to a second worker; adding it
//!   meanwhile marks it dirty, and [`Queue::done`] puts it back in the queue;
//! - a delayed add keeps only the earliest time per key;
//! - a failed key is re-added after 5 ms · 2^failures, at most 1000 s (client-go's
//!   `ItemExponentialFailureRateLimiter` defaults), until [`Queue::forget`].
//!
//! [`State`] is the pure core (time passed in); [`Queue`] wraps it in a mutex (never held
//! across an await) and wakes waiting workers.

use crate::key::ObjectKey;
use crate::metrics::{Metrics, QueueLabel};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Backoff of the first retry.
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// Backoff never grows beyond this.
pub const MAX_DELAY: Duration = Duration::from_secs(1000);

/// The queue's bookkeeping, without I/O or clocks.
#[derive(Debug, Default)]
pub struct State {
    queue: VecDeque<ObjectKey>,
    dirty: HashSet<ObjectKey>,
    processing: HashSet<ObjectKey>,
    /// When each queued key was (first) added, for the queue-duration metric.
    added_at: HashMap<ObjectKey, Instant>,
    /// Delayed keys by due time; `waiting_at` holds each key's one entry.
    waiting: BTreeSet<(Instant, ObjectKey)>,
    waiting_at: HashMap<ObjectKey, Instant>,
    failures: HashMap<ObjectKey, u32>,
    shut_down: bool,
}

impl State {
    /// Adds `key` now. Returns true when it became newly dirty.
    pub fn add(&mut self, key: ObjectKey, now: Instant) -> bool {
        if self.shut_down || self.dirty.contains(&key) {
            return false;
        }
        self.dirty.insert(key.clone());
        if !self.processing.contains(&key) {
            self.added_at.entry(key.clone()).or_insert(now);
            self.queue.push_back(key);
        }
        true
    }

    /// Adds `key` at `at` (now if `at <= now`); an earlier pending time wins.
    pub fn add_at(&mut self, key: ObjectKey, at: Instant, now: Instant) -> bool {
        if at <= now {
            return self.add(key, now);
        }
        if self.shut_down {
            return false;
        }
        match self.waiting_at.get(&key) {
            Some(&t) if t <= at => false,
            Some(&t) => {
                self.waiting.remove(&(t, key.clone()));
                self.waiting.insert((at, key.clone()));
                self.waiting_at.insert(key, at);
                true
            }
            None => {
                self.waiting.insert((at, key.clone()));
                self.waiting_at.insert(key, at);
                true
            }
        }
    }

    /// Moves delayed keys that are due into the queue.
    pub fn promote(&mut self, now: Instant) {
        while let Some((t, _)) = self.waiting.first() {
            if *t > now {
                break;
            }
            if let Some((_, key)) = self.waiting.pop_first() {
                self.waiting_at.remove(&key);
                self.add(key, now);
            }
        }
    }

    /// The earliest delayed key's due time.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.first().map(|(t, _)| *t)
    }

    /// Takes the next key to process, with how long it waited.
    pub fn pop(&mut self, now: Instant) -> Option<(ObjectKey, Duration)> {
        let key = self.queue.pop_front()?;
        self.dirty.remove(&key);
        self.processing.insert(key.clone());
        let waited = self.added_at.remove(&key).map(|t| now.saturating_duration_since(t)).unwrap_or_default();
        Some((key, waited))
    }

    /// Processing of `key` ended; re-queues it when it was added meanwhile.
    pub fn done(&mut self, key: &ObjectKey, now: Instant) {
        self.processing.remove(key);
        if self.dirty.contains(key) {
            self.added_at.entry(key.clone()).or_insert(now);
            self.queue.push_back(key.clone());
        }
    }

    /// The backoff for the next retry of `key`, counting this failure.
    pub fn next_backoff(&mut self, key: &ObjectKey) -> Duration {
        let n = self.failures.entry(key.clone()).or_insert(0);
        let exp = *n;
        *n = n.saturating_add(1);
        backoff(exp)
    }

    /// Forgets `key`'s failures.
    pub fn forget(&mut self, key: &ObjectKey) {
        self.failures.remove(key);
    }

    /// How many times `key` failed in a row.
    pub fn failures(&self, key: &ObjectKey) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// Keys waiting to be processed (not counting delayed ones).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no key waits to be processed.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// 5 ms · 2^exp, capped at [`MAX_DELAY`].
pub fn backoff(exp: u32) -> Duration {
    if exp >= 30 {
        return MAX_DELAY;
    }
    BASE_DELAY.saturating_mul(1u32 << exp).min(MAX_DELAY)
}

/// The queue the workers of one controller share.
pub struct Queue {
    state: Mutex<State>,
    wake: Notify,
    metrics: Option<(Metrics, QueueLabel)>,
}

impl Queue {
    /// A queue named `name` (the `name` label of its metrics).
    pub fn new(name: &str, metrics: Option<Metrics>) -> Arc<Queue> {
        Arc::new(Queue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            metrics: metrics.map(|m| (m, QueueLabel { name: name.to_string() })),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut s);
        if let Some((m, l)) = &self.metrics {
            m.depth.get_or_create(l).set(s.len() as i64);
        }
        out
    }

    /// Adds `key` now.
    pub fn add(&self, key: ObjectKey) {
        if self.with(|s| s.add(key, Instant::now())) {
            if let Some((m, l)) = &self.metrics {
                m.adds.get_or_create(l).inc();
            }
            self.wake.notify_one();
        }
    }

    /// Adds `key` after `delay`.
    pub fn add_after(&self, key: ObjectKey, delay: Duration) {
        let now = Instant::now();
        if delay.is_zero() {
            return self.add(key);
        }
        if self.with(|s| s.add_at(key, now + delay, now)) {
            // A sleeping worker may be waiting for a later time.
            self.wake.notify_one();
        }
    }

    /// Re-adds `key` after its backoff (a failed reconcile).
    pub fn add_rate_limited(&self, key: ObjectKey) {
        let delay = self.with(|s| s.next_backoff(&key));
        if let Some((m, l)) = &self.metrics {
            m.retries.get_or_create(l).inc();
        }
        self.add_after(key, delay);
    }

    /// Forgets `key`'s failures (a successful reconcile).
    pub fn forget(&self, key: &ObjectKey) {
        self.with(|s| s.forget(key));
    }

    /// Processing of `key` ended.
    pub fn done(&self, key: &ObjectKey) {
        let requeued = self.with(|s| {
            s.done(key, Instant::now());
            !s.is_empty()
        });
        if requeued {
            self.wake.notify_one();
        }
    }

    /// Waits for the next key; `None` once the queue is shut down.
    pub async fn get(&self) -> Option<ObjectKey> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (next, due) = self.with(|s| {
                if s.shut_down {
                    return (None, None);
                }
                s.promote(now);
                (s.pop(now), s.next_due())
            });
            if let Some((key, waited)) = next {
                if let Some((m, l)) = &self.metrics {
                    m.queue_duration.get_or_create(l).observe(waited.as_secs_f64());
                }
                // Others may be waiting for the rest.
                if self.with(|s| !s.is_empty()) {
                    self.wake.notify_one();
                }
                return Some(key);
            }
            if self.with(|s| s.shut_down) {
                return None;
            }
            match due {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Stops handing out keys; waiting workers get `None`.
    pub fn shut_down(&self) {
        self.with(|s| s.shut_down = true);
        self.wake.notify_waiters();
    }

    /// Records how long one reconcile took.
    pub fn observe_work(&self, took: Duration) {
        if let Some((m, l)) = &self.metrics {
            m.work_duration.get_or_create(l).observe(took.as_secs_f64());
        }
    }

    /// Keys waiting now (tests, metrics).
    pub fn len(&self) -> usize {
        self.with(|s| s.len())
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> ObjectKey {
        ObjectKey::new("ns", n)
    }

    #[test]
    fn a_key_is_queued_once_however_often_it_is_added() {
        let t = Instant::now();
        let mut s = State::default();
        assert!(s.add(k("a"), t));
        assert!(!s.add(k("a"), t));
        s.add(k("b"), t);
        assert_eq!(s.len(), 2);
        assert_eq!(s.pop(t).map(|p| p.0), Some(k("a")));
        assert_eq!(s.pop(t).map(|p| p.0), Some(k("b")));
        assert_eq!(s.pop(t), None);
    }

    #[test]
    fn a_key_added_while_processing_comes_back_after_done_not_before() {
        let t = Instant::now();
        let mut s = State::default();
        s.add(k("a"), t);
        let _ = s.pop(t);
        s.add(k("a"), t);
        assert_eq!(s.pop(t), None, "never handed to a second worker while processing");
        s.done(&k("a"), t);
        assert_eq!(s.pop(t).map(|p| p.0), Some(k("a")));
        s.done(&k("a"), t);
        assert_eq!(s.pop(t), None, "done without a new add does not requeue");
    }

    #[test]
    fn delayed_adds_keep_the_earliest_time_and_come_due_in_order() {
        let t = Instant::now();
        let mut s = State::default();
        s.add_at(k("a"), t + Duration::from_secs(10), t);
        s.add_at(k("a"), t + Duration::from_secs(20), t);
        s.add_at(k("b"), t + Duration::from_secs(5), t);
        assert_eq!(s.next_due(), Some(t + Duration::from_secs(5)));
        s.promote(t + Duration::from_secs(6));
        assert_eq!(s.pop(t).map(|p| p.0), Some(k("b")));
        assert_eq!(s.pop(t), None);
        s.add_at(k("a"), t + Duration::from_secs(7), t);
        s.promote(t + Duration::from_secs(8));
        assert_eq!(s.pop(t).map(|p| p.0), Some(k("a")));
        assert_eq!(s.next_due(), None, "one entry per key");
    }

    #[test]
    fn backoff_doubles_from_5ms_to_1000s_and_forget_resets_it() {
        let mut s = State::default();
        let got: Vec<Duration> = (0..4).map(|_| s.next_backoff(&k("a"))).collect();
        assert_eq!(got, [5, 10, 20, 40].map(Duration::from_millis));
        assert_eq!(backoff(17), Duration::from_millis(5 << 17));
        assert_eq!(backoff(18), MAX_DELAY);
        assert_eq!(backoff(40), MAX_DELAY);
        s.forget(&k("a"));
        assert_eq!(s.next_backoff(&k("a")), BASE_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn get_waits_for_delayed_keys_and_shut_down_releases_workers() {
        let q = Queue::new("t", None);
        q.add_after(k("a"), Duration::from_secs(3));
        let start = Instant::now();
        assert_eq!(q.get().await, Some(k("a")));
        assert!(start.elapsed() >= Duration::from_secs(3));
        q.done(&k("a"));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.ok().flatten(), None);
    }
}
