//! The kubelet's own Prometheus metrics on `/metrics`, named as kubelet's: started containers,
//! running pods, evictions. One set per process (simulated nodes add up).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The metrics; clones share the same values.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// `kubelet_started_containers_total`.
    pub started_containers: Counter,
    /// `kubelet_running_pods`: pods with a worker.
    pub running_pods: Gauge,
    /// `kubelet_evictions_total`.
    pub evictions: Counter,
}

impl Metrics {
    /// New metrics registered in `r`.
    pub fn register(r: &mut Registry) -> Metrics {
        let m = Metrics::default();
        r.register("kubelet_started_containers", "Cumulative number of containers started", m.started_containers.clone());
        r.register("kubelet_running_pods", "Number of pods that have a running pod worker", m.running_pods.clone());
        r.register("kubelet_evictions", "Cumulative number of pod evictions by the eviction manager", m.evictions.clone());
        m
    }
}
