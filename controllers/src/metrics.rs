//! The controller-manager's Prometheus metrics, named as client-go's workqueue metrics
//! (`workqueue_depth`, `workqueue_adds_total`, `workqueue_retries_total`,
//! `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`, label `name` = the
//! controller), so dashboards written for kube-controller-manager read them unchanged.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `name` label of every workqueue metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// The controller's queue name (`replicaset`, `deployment`, …).
    pub name: String,
}

fn seconds_histogram() -> Histogram {
    // 1 µs … ~ 17 min, as client-go's workqueue buckets (powers of ten) roughly span.
    Histogram::new(exponential_buckets(1e-6, 4.0, 16))
}

/// Every controller's workqueue metrics. Cheap to clone (families are shared).
#[derive(Clone)]
pub struct Metrics {
    /// Keys waiting to be processed.
    pub depth: Family<QueueLabel, Gauge>,
    /// Keys added (after de-duplication).
    pub adds: Family<QueueLabel, Counter>,
    /// Rate-limited re-adds after a failed reconcile.
    pub retries: Family<QueueLabel, Counter>,
    /// Time from add to the start of processing.
    pub queue_duration: Family<QueueLabel, Histogram, fn() -> Histogram>,
    /// Time one reconcile took.
    pub work_duration: Family<QueueLabel, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// New, empty families.
    pub fn new() -> Metrics {
        Metrics {
            depth: Family::default(),
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(seconds_histogram),
            work_duration: Family::new_with_constructor(seconds_histogram),
        }
    }

    /// Registers the families in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("workqueue_depth", "Current depth of workqueue", self.depth.clone());
        registry.register("workqueue_adds", "Total number of adds handled by workqueue", self.adds.clone());
        registry.register("workqueue_retries", "Total number of retries handled by workqueue", self.retries.clone());
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            self.queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            self.work_duration.clone(),
        );
    }
}
