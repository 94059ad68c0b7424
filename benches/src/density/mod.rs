//! The density/load run (issue 24, modelled on clusterloader2's density and load tests):
//! Deployments ramped to `pods` pods at a steady creation rate, a rolling update of a fraction
//! of them, a scale-down of all of them, then their deletion, while the shell records API call
//! latency (the apiserver's histogram), pod startup, scheduler throughput and each process's
//! CPU and RSS.
//!
//! ```text
//!   plan (this file, pure)          run (async shell)                 report (pure)
//!   Config → Deployment specs,  →   pace creates/patches/deletes,  →  SLI tables, SLO verdicts,
//!   patches, per-phase targets      watch pods + Deployments,         the JSON document
//!                                   sample /metrics and /proc
//! ```
//!
//! - [`run`]: the phases against a running [`crate::controlplane::ControlPlane`].
//! - [`report`]: SLI rows from scrapes, verdicts against issue 24's targets.
//! - [`lister`]: the run's own LISTs of pods (cluster-wide and namespace), so lists are measured.
//!
//! Invariants of the plan: every Deployment has `replicas` pods, so the ramp creates exactly
//! `deployments() × replicas` pods; the k-th item of a paced phase is issued at
//! `k × replicas / pods_per_second` seconds after the phase starts (a steady pod rate, not a
//! burst); the rolling update touches every `1/update_fraction`-th Deployment; the scale-down
//! target and the pod count it leaves are computed here once and checked by the shell.

pub mod lister;
pub mod report;
pub mod run;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use std::time::Duration;

/// The label every Deployment and its pods carry.
pub const GROUP_LABEL: &str = "density";

/// The phases, in order.
pub const PHASES: [&str; 4] = ["ramp", "update", "scale-down", "delete"];

/// What one run does.
#[derive(Clone, Debug)]
pub struct Config {
    /// Simulated nodes.
    pub nodes: usize,
    /// Pods at the end of the ramp.
    pub pods: usize,
    /// Replicas per Deployment.
    pub replicas: usize,
    /// Steady pod creation rate of the paced phases.
    pub pods_per_second: f64,
    /// Share of the Deployments the rolling update touches (0.1 = 10 %).
    pub update_fraction: f64,
    /// Longest a phase may take to converge before the run records it as not done and moves on.
    pub phase_limit: Duration,
    /// Namespace of the Deployments.
    pub namespace: String,
    /// Interval between the run's own LISTs of pods.
    pub list_every: Duration,
}

impl Config {
    /// Deployments the ramp creates (rounded up, so at least `pods` pods).
    pub fn deployments(&self) -> usize {
        self.pods.div_ceil(self.replicas.max(1))
    }

    /// Pods the ramp ends with.
    pub fn total_pods(&self) -> usize {
        self.deployments() * self.replicas
    }

    /// When the k-th paced item (each worth `pods_per_item` pods) is due.
    pub fn due(&self, k: usize, pods_per_item: usize) -> Duration {
        let secs = k as f64 * pods_per_item as f64 / self.pods_per_second.max(1e-3);
        Duration::from_secs_f64(secs)
    }

    /// Indices of the Deployments the rolling update touches.
    pub fn updated(&self) -> Vec<usize> {
        let every = (1.0 / self.update_fraction.clamp(1e-6, 1.0)).round().max(1.0) as usize;
        (0..self.deployments()).step_by(every).collect()
    }

    /// Replicas per Deployment after the scale-down (half, rounded down).
    pub fn scaled_replicas(&self) -> usize {
        self.replicas / 2
    }

    /// Pods after the scale-down.
    pub fn scaled_pods(&self) -> usize {
        self.deployments() * self.scaled_replicas()
    }
}

/// The name of Deployment `i`.
pub fn name(i: usize) -> String {
    format!("density-{i:05}")
}

/// Deployment `i`: `replicas` pods of one container requesting 10m CPU and 16Mi (the
/// keel-cm-bench shape; clusterloader2's density pods are pause containers with small requests).
pub fn deployment(cfg: &Config, i: usize) -> Result<Deployment, serde_json::Error> {
    let n = name(i);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": n, "namespace": cfg.namespace, "labels": {GROUP_LABEL: "true"}},
        "spec": {
            "replicas": cfg.replicas,
            "selector": {"matchLabels": {"app": n}},
            "template": {
                "metadata": {"labels": {"app": n, GROUP_LABEL: "true"}},
                "spec": {"containers": [{
                    "name": "c",
                    "image": "registry.example/pause:3.9",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
                }]}
            }
        }
    }))
}

/// The rolling update's merge patch: a new template annotation, so a new ReplicaSet.
pub fn update_patch() -> serde_json::Value {
    json!({"spec": {"template": {"metadata": {"annotations": {"density/revision": "2"}}}}})
}

/// The scale-down's merge patch.
pub fn scale_patch(replicas: usize) -> serde_json::Value {
    json!({"spec": {"replicas": replicas}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pods: usize, replicas: usize, pps: f64) -> Config {
        Config {
            nodes: 10,
            pods,
            replicas,
            pods_per_second: pps,
            update_fraction: 0.1,
            phase_limit: Duration::from_secs(60),
            namespace: "default".into(),
            list_every: Duration::from_secs(30),
        }
    }

    #[test]
    fn sizes_round_up_to_whole_deployments() {
        let table = [(30_000, 10, 3000, 30_000, 5, 15_000), (3000, 10, 300, 3000, 5, 1500), (95, 10, 10, 100, 5, 50), (7, 1, 7, 7, 0, 0)];
        for (pods, replicas, deployments, total, scaled, scaled_pods) in table {
            let c = cfg(pods, replicas, 100.0);
            assert_eq!(
                (c.deployments(), c.total_pods(), c.scaled_replicas(), c.scaled_pods()),
                (deployments, total, scaled, scaled_pods),
                "{pods}/{replicas}"
            );
        }
    }

    #[test]
    fn pacing_is_a_steady_pod_rate() {
        let c = cfg(3000, 10, 100.0);
        // Ten pods per Deployment at 100 pods/s: one Deployment every 100 ms.
        assert_eq!(c.due(0, 10), Duration::ZERO);
        assert_eq!(c.due(1, 10), Duration::from_millis(100));
        assert_eq!(c.due(299, 10), Duration::from_secs_f64(29.9));
        // The scale-down removes 5 pods per patch: one every 50 ms.
        assert_eq!(c.due(2, 5), Duration::from_millis(100));
    }

    #[test]
    fn the_update_touches_a_tenth() {
        let c = cfg(3000, 10, 100.0);
        let u = c.updated();
        assert_eq!(u.len(), 30);
        assert_eq!(&u[..3], &[0, 10, 20]);
        let all = Config { update_fraction: 1.0, ..c.clone() };
        assert_eq!(all.updated().len(), 300);
    }

    #[test]
    fn deployments_carry_the_shape() -> Result<(), serde_json::Error> {
        let d = deployment(&cfg(100, 10, 100.0), 7)?;
        assert_eq!(d.metadata.name.as_deref(), Some("density-00007"));
        let spec = d.spec.as_ref().map(|s| (s.replicas, s.selector.match_labels.clone()));
        assert_eq!(spec.as_ref().map(|s| s.0), Some(Some(10)));
        assert_eq!(spec.and_then(|s| s.1).and_then(|m| m.get("app").cloned()).as_deref(), Some("density-00007"));
        Ok(())
    }
}
