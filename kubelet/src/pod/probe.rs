//! Probe results as kubelet's prober worker keeps them (pkg/kubelet/prober/worker.go): a result
//! changes only after `successThreshold` consecutive successes or `failureThreshold` consecutive
//! failures; before the first run a readiness probe reads Failure and liveness and startup read
//! Success; nothing runs before `initialDelaySeconds`; liveness and readiness wait until the
//! startup probe has succeeded, and a startup probe stops once it has.
//!
//! This module is the pure state machine; the worker that runs a probe every `periodSeconds`
//! lives in [`crate::pod::prober`].

use k8s_openapi::api::core::v1::Probe;
use std::time::Duration;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    /// Restarts the container on failure.
    Liveness,
    /// Gates the container's `ready`.
    Readiness,
    /// Holds the other two back until the container has started.
    Startup,
}

impl ProbeKind {
    /// The word kubelet's events use (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// One run's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Success,
    /// The check failed; the text goes into the `Unhealthy` event.
    Failure(String),
}

/// The timing and thresholds of a probe, with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10).
    pub period: Duration,
    /// `timeoutSeconds` (1).
    pub timeout: Duration,
    /// `successThreshold` (1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64, min: u64) -> Duration {
    Duration::from_secs(v.map(|v| v.max(0) as u64).unwrap_or(default).max(min))
}

impl Timing {
    /// The probe's timing with defaults filled in (non-positive values take the minimum 1, as
    /// validation would have required).
    pub fn of(p: &Probe) -> Timing {
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: p.success_threshold.map(|v| v.max(1) as u32).unwrap_or(1),
            failure_threshold: p.failure_threshold.map(|v| v.max(1) as u32).unwrap_or(3),
        }
    }
}

/// The result a probe reports now and the counts that move it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    /// The probe.
    pub kind: ProbeKind,
    /// The reported result: true is Success.
    pub result: bool,
    /// Consecutive outcomes equal to the last one.
    pub streak: u32,
    /// Whether the last outcome was a success.
    pub last_ok: Option<bool>,
    /// Whether any outcome was observed yet.
    pub observed: bool,
}

/// What an observation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The reported result stays.
    Same,
    /// The reported result changed to `ok`.
    Changed {
        /// The new result.
        ok: bool,
    },
}

impl ProbeState {
    /// The state before the first run: readiness Failure, liveness and startup Success.
    pub fn initial(kind: ProbeKind) -> ProbeState {
        ProbeState { kind, result: kind != ProbeKind::Readiness, streak: 0, last_ok: None, observed: false }
    }

    /// Feeds one outcome; the reported result flips after a threshold's worth in a row.
    pub fn observe(&mut self, outcome: &Outcome, timing: &Timing) -> Transition {
        let ok = *outcome == Outcome::Success;
        if self.last_ok == Some(ok) {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.streak = 1;
            self.last_ok = Some(ok);
        }
        let success_threshold = if self.kind == ProbeKind::Readiness { timing.success_threshold } else { 1 };
        let flips = if ok { self.streak >= success_threshold } else { self.streak >= timing.failure_threshold };
        self.observed = true;
        if flips && self.result != ok {
            self.result = ok;
            return Transition::Changed { ok };
        }
        Transition::Same
    }

    /// Starts the count over (kubelet does after a liveness or startup kill, so the restarted
    /// container gets `failureThreshold` fresh tries).
    pub fn reset(&mut self) {
        *self = ProbeState::initial(self.kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    fn run(kind: ProbeKind, t: Timing, outcomes: &str) -> String {
        let mut s = ProbeState::initial(kind);
        outcomes
            .chars()
            .map(|c| {
                let o = if c == 's' { Outcome::Success } else { Outcome::Failure("x".into()) };
                s.observe(&o, &t);
                if s.result { 'S' } else { 'F' }
            })
            .collect()
    }

    /// Each row: probe, thresholds, outcomes (s/f), reported results after each (S/F).
    #[test]
    fn thresholds_table() {
        let rows = [
            (ProbeKind::Readiness, timing(1, 3), "sffsfff", "SSSSSSF"),
            (ProbeKind::Readiness, timing(2, 1), "sssfss", "FSSFFS"),
            (ProbeKind::Readiness, timing(1, 1), "ffs", "FFS"),
            (ProbeKind::Liveness, timing(1, 3), "ffsfffs", "SSSSSFS"),
            // successThreshold is always 1 for liveness.
            (ProbeKind::Liveness, timing(5, 1), "fs", "FS"),
            (ProbeKind::Startup, timing(1, 2), "ffs", "SFS"),
        ];
        for (kind, t, outcomes, want) in rows {
            assert_eq!(run(kind, t, outcomes), want, "{kind:?} {t:?} {outcomes}");
        }
    }

    #[test]
    fn initial_results_and_reset() {
        assert!(!ProbeState::initial(ProbeKind::Readiness).result);
        assert!(ProbeState::initial(ProbeKind::Liveness).result);
        let mut s = ProbeState::initial(ProbeKind::Liveness);
        s.observe(&Outcome::Failure("x".into()), &timing(1, 1));
        assert!(!s.result);
        s.reset();
        assert!(s.result && s.streak == 0);
        let p: Probe =
            serde_json::from_value(serde_json::json!({"periodSeconds": 0, "failureThreshold": 5})).unwrap_or_else(|e| panic!("{e}"));
        let t = Timing::of(&p);
        assert_eq!((t.period, t.failure_threshold, t.timeout, t.success_threshold), (Duration::from_secs(1), 5, Duration::from_secs(1), 1));
    }
}
