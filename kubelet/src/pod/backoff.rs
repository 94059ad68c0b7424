//! Container restart back-off, as kubelet's `flowcontrol.Backoff` with `doBackOff` uses it
//! (pkg/kubelet/kuberuntime): the first crash restarts at once and opens an entry of 10 s; a crash
//! within the entry's window waits until `finishedAt + window` (the container's waiting reason is
//! `CrashLoopBackOff`), and each restart after a wait doubles the window up to 5 min. An entry not
//! touched for twice the maximum (10 min, that is ten minutes of running without a crash) starts
//! over at 10 s.
//!
//! Invariant: the state is in memory only, as in kubelet, so a kubelet restart forgives.
//! Wall time comes in as arguments; nothing here reads a clock.

use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// Back-off settings (kubelet's `backOffPeriod` and `MaxContainerBackOff`).
#[derive(Debug, Clone, Copy)]
pub struct BackoffConfig {
    /// The first window: 10 s.
    pub initial: Duration,
    /// The cap: 5 min.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { initial: Duration::from_secs(10), max: Duration::from_secs(300) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window: Duration,
    last_update: Timestamp,
}

/// Per-container back-off windows, keyed by a stable container key (pod uid + container name).
#[derive(Debug, Default)]
pub struct Backoff {
    config: BackoffConfig,
    entries: BTreeMap<String, Entry>,
}

/// What to do with a container that exited and should restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it now (the window was opened or doubled).
    Restart,
    /// Wait: still inside the window. `remaining` until it may restart; `window` is the current
    /// back-off for the message (`back-off 20s restarting failed container=...`).
    Wait {
        /// Time left in the window.
        remaining: Duration,
        /// The whole window.
        window: Duration,
    },
}

fn since(now: Timestamp, then: Timestamp) -> Duration {
    let d: SignedDuration = now.duration_since(then);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

impl Backoff {
    /// An empty table with `config`.
    pub fn new(config: BackoffConfig) -> Backoff {
        Backoff { config, entries: BTreeMap::new() }
    }

    fn expired(&self, e: &Entry, at: Timestamp) -> bool {
        since(at, e.last_update) > self.config.max * 2
    }

    /// kubelet's `doBackOff` for a container of `key` whose last run finished at `finished_at`.
    /// `Restart` updates the entry (open or double), as `backOff.Next` does.
    pub fn decide(&mut self, key: &str, finished_at: Timestamp, now: Timestamp) -> Decision {
        if let Some(e) = self.entries.get(key).copied()
            && !self.expired(&e, now)
        {
            let elapsed = since(now, finished_at);
            if elapsed < e.window {
                return Decision::Wait { remaining: e.window - elapsed, window: e.window };
            }
        }
        let window = match self.entries.get(key) {
            Some(e) if !self.expired(e, finished_at) => (e.window * 2).min(self.config.max),
            _ => self.config.initial,
        };
        self.entries.insert(key.to_string(), Entry { window, last_update: now });
        Decision::Restart
    }

    /// The current window of `key`, if any.
    pub fn window(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.window)
    }

    /// Forgets entries not touched for twice the maximum, and those whose key `keep` rejects
    /// (containers of pods that are gone).
    pub fn gc(&mut self, now: Timestamp, keep: impl Fn(&str) -> bool) {
        let max2 = self.config.max * 2;
        self.entries.retain(|k, e| since(now, e.last_update) <= max2 && keep(k));
    }
}

/// Formats a window as Go's `time.Duration` does for whole seconds (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 { format!("{s}s") } else { format!("{}m{}s", s / 60, s % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A container that crashes one second after each start: the waits are 0, 10, 20, 40 ... 300.
    #[test]
    fn crash_loop_windows_double_to_five_minutes() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut now = 0i64;
        let mut waits = Vec::new();
        for _ in 0..8 {
            // It ran for a second and exited.
            now += 1;
            let finished = now;
            loop {
                match b.decide("pod/c", t(finished), t(now)) {
                    Decision::Restart => break,
                    Decision::Wait { remaining, .. } => now += remaining.as_secs() as i64,
                }
            }
            waits.push(now - finished);
        }
        assert_eq!(waits, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.window("pod/c"), Some(Duration::from_secs(300)));
    }

    #[test]
    fn ten_minutes_without_a_restart_resets_the_window() {
        let mut b = Backoff::new(BackoffConfig::default());
        assert_eq!(b.decide("k", t(0), t(0)), Decision::Restart);
        assert_eq!(b.decide("k", t(5), t(10)), Decision::Wait { remaining: Duration::from_secs(5), window: Duration::from_secs(10) });
        assert_eq!(b.decide("k", t(5), t(15)), Decision::Restart);
        assert_eq!(b.window("k"), Some(Duration::from_secs(20)));
        // Ran for more than 10 minutes, then crashed: restarts at once with a fresh 10 s window.
        assert_eq!(b.decide("k", t(700), t(700)), Decision::Restart);
        assert_eq!(b.window("k"), Some(Duration::from_secs(10)));
    }

    #[test]
    fn gc_forgets_gone_pods() {
        let mut b = Backoff::new(BackoffConfig::default());
        b.decide("a/x", t(0), t(0));
        b.decide("b/x", t(0), t(0));
        b.gc(t(1), |k| k.starts_with("a/"));
        assert!(b.window("a/x").is_some() && b.window("b/x").is_none());
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
