//! The overload test (issue 24): pods created at a steady rate, then `factor` times that rate
//! for the burst, then the steady rate again, while the shell records every answer (201, 429
//! with or without `Retry-After`, other codes, transport errors), the apiserver's mutating p99
//! per 5-s window, whether every process is alive after, and whether every create answered
//! 201 exists at the end.
//!
//! ```text
//!   plan (this file, pure)             run (async shell)                  verdicts (pure)
//!   Schedule → due times per create →  open-loop creates, 5-s scrapes, →  tallies per phase,
//!                                      final list, /proc                  recovery time, lost writes
//! ```
//!
//! - [`run`]: the async shell against a running [`crate::controlplane::ControlPlane`].
//!
//! Invariants: the creates are open-loop — the k-th is issued at its due time whether or not
//! earlier ones were answered (up to an in-flight cap; a create the cap holds back is counted
//! as `not_sent`, never silently dropped), so overload builds up as it does with many clients;
//! the baseline is the mutating p99 over the windows wholly inside the steady phase before the
//! burst; latency has "returned" in the first window wholly after the burst whose p99 is at
//! most `baseline × (1 + RECOVERY_TOLERANCE)`; a write is lost when its create was answered
//! 201 and its name is not in the final list.

pub mod run;

use crate::promtext::Hist;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

/// How far above the baseline p99 a window may be and still count as returned (the
/// histogram's buckets are coarse: kube's 0.1, 0.2, 0.4 … s).
pub const RECOVERY_TOLERANCE: f64 = 0.2;

/// Issue 24's recovery target, seconds after the burst.
pub const RECOVERY_TARGET_S: f64 = 30.0;

/// The phases, in order.
pub const PHASES: [&str; 3] = ["before", "burst", "after"];

/// When the creates are due.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Steady pods per second.
    pub rate: f64,
    /// The burst's multiple of it.
    pub factor: f64,
    /// Seconds of each phase, in [`PHASES`] order.
    pub seconds: [f64; 3],
}

impl Schedule {
    /// Pods per second in phase `p`.
    pub fn rate_of(&self, p: usize) -> f64 {
        if p == 1 { self.rate * self.factor } else { self.rate }
    }

    /// Where phase `p` starts, seconds after the start.
    pub fn start_of(&self, p: usize) -> f64 {
        self.seconds.iter().take(p).sum()
    }

    /// Every create's (due time in seconds, phase index), in order: phase `p` issues one every
    /// `1 / rate_of(p)` seconds from its start.
    pub fn due(&self) -> Vec<(f64, usize)> {
        let mut out = Vec::new();
        for p in 0..PHASES.len() {
            let rate = self.rate_of(p).max(1e-3);
            let n = (self.seconds[p] * rate).round() as usize;
            let start = self.start_of(p);
            out.extend((0..n).map(|k| (start + k as f64 / rate, p)));
        }
        out
    }

    /// The end of the last phase.
    pub fn end(&self) -> f64 {
        self.seconds.iter().sum()
    }
}

/// The name of create `k`.
pub fn name(k: usize) -> String {
    format!("ovl-{k:06}")
}

/// What a create got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 201 (or 200).
    Created,
    /// 429, and whether it carried `Retry-After`.
    Throttled {
        /// The header was there.
        retry_after: bool,
    },
    /// Any other status.
    Other(u16),
    /// No HTTP answer (connection error or the client's timeout).
    Transport,
    /// Held back by the in-flight cap.
    NotSent,
}

impl Answer {
    /// From a status code and whether `Retry-After` was present.
    pub fn of(code: u16, retry_after: bool) -> Answer {
        match code {
            200 | 201 => Answer::Created,
            429 => Answer::Throttled { retry_after },
            c => Answer::Other(c),
        }
    }

    /// The tally's key.
    pub fn key(&self) -> String {
        match self {
            Answer::Created => "created".into(),
            Answer::Throttled { retry_after: true } => "429_with_retry_after".into(),
            Answer::Throttled { retry_after: false } => "429_without_retry_after".into(),
            Answer::Other(c) => format!("http_{c}"),
            Answer::Transport => "transport_error".into(),
            Answer::NotSent => "not_sent".into(),
        }
    }

    /// Whether the object may exist without a 201 (a 5xx or no answer: the write may have
    /// happened).
    pub fn uncertain(&self) -> bool {
        matches!(self, Answer::Transport) || matches!(self, Answer::Other(c) if *c >= 500)
    }
}

/// Answers per phase, by [`Answer::key`].
pub fn tally(answers: &[(usize, Answer)]) -> Value {
    let mut per: BTreeMap<&str, BTreeMap<String, u64>> = PHASES.iter().map(|p| (*p, BTreeMap::new())).collect();
    for (phase, a) in answers {
        if let Some(m) = PHASES.get(*phase).and_then(|p| per.get_mut(p)) {
            *m.entry(a.key()).or_default() += 1;
        }
    }
    json!(per)
}

/// One 5-s window of the apiserver's mutating calls.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Seconds after the start.
    pub from: f64,
    /// Seconds after the start.
    pub to: f64,
    /// The mutating calls' histogram over it.
    pub mutating: Hist,
}

impl Window {
    /// Its p99, seconds.
    pub fn p99(&self) -> Option<f64> {
        self.mutating.quantile(0.99)
    }
}

/// The mutating p99 over the windows wholly inside `[from, to]`.
pub fn p99_between(windows: &[Window], from: f64, to: f64) -> Option<f64> {
    let mut h = Hist::default();
    for w in windows.iter().filter(|w| w.from >= from && w.to <= to) {
        h.merge(&w.mutating);
    }
    h.quantile(0.99)
}

/// Seconds from `burst_end` to the end of the first window wholly after it whose p99 is at
/// most `baseline × (1 + RECOVERY_TOLERANCE)`, and whether every later window with calls
/// stayed there; `None` when no window returned.
pub fn recovery(windows: &[Window], burst_end: f64, baseline: f64) -> Option<(f64, bool)> {
    let limit = baseline * (1.0 + RECOVERY_TOLERANCE);
    let after: Vec<&Window> = windows.iter().filter(|w| w.from >= burst_end).collect();
    let first = after.iter().position(|w| w.p99().is_some_and(|p| p <= limit))?;
    let stayed = after[first..].iter().all(|w| w.p99().is_none_or(|p| p <= limit));
    Some((after[first].to - burst_end, stayed))
}

/// Names answered 201 that are not in `existing`.
pub fn lost<'a>(created: impl IntoIterator<Item = &'a str>, existing: &HashSet<String>) -> Vec<String> {
    created.into_iter().filter(|n| !existing.contains(*n)).map(str::to_string).collect()
}

/// The `/proc/<pid>/stat` state letter says the process is alive (not gone, not a zombie).
pub fn alive(stat: &str) -> bool {
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> Schedule {
        Schedule { rate: 10.0, factor: 5.0, seconds: [10.0, 6.0, 10.0] }
    }

    #[test]
    fn the_schedule_is_steady_then_five_times_then_steady() {
        let s = sched();
        let due = s.due();
        let count = |p: usize| due.iter().filter(|(_, q)| *q == p).count();
        assert_eq!((count(0), count(1), count(2)), (100, 300, 100));
        assert_eq!(due[0], (0.0, 0));
        assert!((due[1].0 - 0.1).abs() < 1e-9);
        // The burst starts at 10 s, one create every 20 ms.
        assert_eq!(due[100], (10.0, 1));
        assert!((due[101].0 - 10.02).abs() < 1e-9);
        assert_eq!(due[400], (16.0, 2));
        assert!(due.windows(2).all(|w| w[0].0 <= w[1].0), "in order");
        assert_eq!((s.start_of(2), s.end()), (16.0, 26.0));
    }

    #[test]
    fn answers_are_keyed_and_tallied_per_phase() {
        let table = [
            (201, false, Answer::Created, "created", false),
            (429, true, Answer::Throttled { retry_after: true }, "429_with_retry_after", false),
            (429, false, Answer::Throttled { retry_after: false }, "429_without_retry_after", false),
            (500, false, Answer::Other(500), "http_500", true),
            (409, false, Answer::Other(409), "http_409", false),
        ];
        for (code, ra, want, key, uncertain) in table {
            let a = Answer::of(code, ra);
            assert_eq!((&a, a.key().as_str(), a.uncertain()), (&want, key, uncertain), "{code}");
        }
        assert!(Answer::Transport.uncertain());
        let t = tally(&[(0, Answer::Created), (1, Answer::Created), (1, Answer::Throttled { retry_after: true }), (1, Answer::NotSent)]);
        assert_eq!(t["before"]["created"], 1);
        assert_eq!(t["burst"]["429_with_retry_after"], 1);
        assert_eq!(t["burst"]["not_sent"], 1);
        assert_eq!(t["after"], json!({}));
    }

    fn window(from: f64, p99_bucket: f64) -> Window {
        // Every call in the bucket up to `p99_bucket`: p99 interpolates just under it.
        let mutating = Hist { buckets: vec![(p99_bucket / 2.0, 0.0), (p99_bucket, 100.0), (f64::INFINITY, 100.0)], sum: 1.0, count: 100.0 };
        Window { from, to: from + 5.0, mutating }
    }

    #[test]
    fn recovery_is_the_first_window_after_the_burst_back_near_the_baseline() {
        let w = vec![
            window(0.0, 0.1),
            window(5.0, 0.1),
            window(10.0, 2.0),
            window(15.0, 4.0),
            window(20.0, 0.8),
            window(25.0, 0.1),
            window(30.0, 0.1),
        ];
        let baseline = p99_between(&w, 0.0, 10.0).unwrap_or(f64::NAN);
        assert!((baseline - 0.0995).abs() < 1e-9, "{baseline}");
        // Burst 10–20 s: the 20–25 window is still high, 25–30 is back: 10 s.
        assert_eq!(recovery(&w, 20.0, baseline), Some((10.0, true)));
        // A later relapse is reported.
        let mut relapse = w.clone();
        relapse.push(window(35.0, 3.0));
        assert_eq!(recovery(&relapse, 20.0, baseline), Some((10.0, false)));
        // Never back.
        assert_eq!(recovery(&w[..5], 20.0, baseline), None);
        // A window that straddles the burst's end does not count.
        assert_eq!(recovery(&w, 22.0, baseline), Some((8.0, true)));
    }

    #[test]
    fn lost_writes_and_live_processes() {
        let existing: HashSet<String> = ["ovl-000001", "ovl-000002"].iter().map(|s| s.to_string()).collect();
        assert_eq!(lost(["ovl-000001", "ovl-000003"], &existing), vec!["ovl-000003".to_string()]);
        assert!(lost(["ovl-000002"], &existing).is_empty());
        let table = [
            ("12 (keel-apiserver) S 1 12", true),
            ("12 (keel apiserver) R 1 12", true),
            ("12 (keel-apiserver) Z 1 12", false),
            ("", false),
        ];
        for (stat, want) in table {
            assert_eq!(alive(stat), want, "{stat:?}");
        }
    }
}
