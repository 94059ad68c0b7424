//! The scheduler's Prometheus metrics, named as kube-scheduler's where kube has them.
//!
//! Every bind is also counted under the identity of the leader that sent it
//! (`scheduler_binds_total{holder, transitions}`), so a test or an operator can see which
//! instance bound what and that two instances never bound in the same lease term.

use crate::queue::Counts;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    // 1 ms … ~16 s, as kube's scheduling histograms roughly span.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The metrics, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// `scheduler_schedule_attempts_total{result, profile}`.
    pub attempts: Family<Labels, Counter>,
    /// `scheduler_scheduling_attempt_duration_seconds{result, profile}`: the algorithm's time.
    pub attempt_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// `scheduler_pending_pods{queue}`.
    pub pending: Family<Labels, Gauge>,
    /// `scheduler_e2e_scheduling_duration_seconds`: first queued → bound.
    pub e2e: Histogram,
    /// `scheduler_binding_duration_seconds`: the binding request.
    pub binding: Histogram,
    /// `scheduler_binds_total{holder, transitions}`.
    pub binds: Family<Labels, Counter>,
    /// `scheduler_bind_failures_total{reason}`.
    pub bind_failures: Family<Labels, Counter>,
    /// `scheduler_preemption_attempts_total`.
    pub preemption_attempts: Counter,
    /// `scheduler_preemption_victims_total`.
    pub preemption_victims: Counter,
    /// `scheduler_events_dropped_total`: events not written because the writer was behind.
    pub events_dropped: Counter,
    /// `leader_election_master_status{name}`: 1 while this instance leads.
    pub leader: Family<Labels, Gauge>,
}

impl Metrics {
    /// Registers every metric in `r` (the process's shared registry).
    pub fn register(r: &mut Registry) -> Metrics {
        let attempts = Family::<Labels, Counter>::default();
        r.register("scheduler_schedule_attempts", "Scheduling attempts by result (scheduled, unschedulable, error)", attempts.clone());
        let attempt_duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        r.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency (filter, score, preemption)",
            attempt_duration.clone(),
        );
        let pending = Family::<Labels, Gauge>::default();
        r.register("scheduler_pending_pods", "Pending pods by queue (active, backoff, unschedulable)", pending.clone());
        let e2e = histogram();
        r.register("scheduler_e2e_scheduling_duration_seconds", "From a pod entering the queue to its binding succeeding", e2e.clone());
        let binding = histogram();
        r.register("scheduler_binding_duration_seconds", "Latency of the binding request", binding.clone());
        let binds = Family::<Labels, Counter>::default();
        r.register("scheduler_binds", "Successful bindings by the leader identity that sent them and its lease transitions", binds.clone());
        let bind_failures = Family::<Labels, Counter>::default();
        r.register("scheduler_bind_failures", "Failed bindings by reason (conflict, not_found, not_leader, error)", bind_failures.clone());
        let preemption_attempts = Counter::default();
        r.register("scheduler_preemption_attempts", "Preemption attempts", preemption_attempts.clone());
        let preemption_victims = Counter::default();
        r.register("scheduler_preemption_victims", "Pods evicted by preemption", preemption_victims.clone());
        let events_dropped = Counter::default();
        r.register("scheduler_events_dropped", "Events dropped because the event writer was behind", events_dropped.clone());
        let leader = Family::<Labels, Gauge>::default();
        r.register("leader_election_master_status", "1 while this instance holds the lease", leader.clone());
        Metrics {
            attempts,
            attempt_duration,
            pending,
            e2e,
            binding,
            binds,
            bind_failures,
            preemption_attempts,
            preemption_victims,
            events_dropped,
            leader,
        }
    }

    /// Counts one attempt and its duration.
    pub fn attempt(&self, result: &'static str, profile: &str, seconds: f64) {
        let labels = vec![("result", result.to_string()), ("profile", profile.to_string())];
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration.get_or_create(&labels).observe(seconds);
    }

    /// Sets the queue gauges.
    pub fn set_pending(&self, c: Counts) {
        for (queue, n) in [("active", c.active), ("backoff", c.backoff), ("unschedulable", c.unschedulable)] {
            self.pending.get_or_create(&vec![("queue", queue.to_string())]).set(n as i64);
        }
    }

    /// Counts a successful bind by `holder` in lease term `transitions`.
    pub fn bound(&self, holder: &str, transitions: i32) {
        self.binds.get_or_create(&vec![("holder", holder.to_string()), ("transitions", transitions.to_string())]).inc();
    }

    /// Counts a failed bind.
    pub fn bind_failed(&self, reason: &'static str) {
        self.bind_failures.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    /// Sets `leader_election_master_status`.
    pub fn set_leader(&self, name: &str, leading: bool) {
        self.leader.get_or_create(&vec![("name", name.to_string())]).set(i64::from(leading));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_kube_schedulers_metrics() {
        let registry = keel_component::metrics::shared();
        let m = Metrics::register(&mut registry.lock().expect("registry"));
        m.attempt("scheduled", "default-scheduler", 0.002);
        m.set_pending(Counts { active: 3, ..Default::default() });
        m.bound("host_abc", 2);
        let text = keel_component::metrics::render(&registry);
        for want in [
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1",
            "scheduler_pending_pods{queue=\"active\"} 3",
            "scheduler_scheduling_attempt_duration_seconds_bucket",
            "scheduler_binds_total{holder=\"host_abc\",transitions=\"2\"} 1",
            "scheduler_e2e_scheduling_duration_seconds_count 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
