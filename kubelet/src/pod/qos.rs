//! QoS class (`status.qosClass`), computed as kubelet's `GetPodQOS` does: only cpu and memory
//! count; a pod is `Guaranteed` when every container (init containers included) sets limits for
//! both and its requests equal its limits (a missing request defaults to the limit),
//! `BestEffort` when no container requests or limits either, else `Burstable`.

use crate::pod::quantity::{cpu_millis, memory_bytes};
use k8s_openapi::api::core::v1::{Container, PodSpec};

/// A pod's quality-of-service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QosClass {
    /// No cpu/memory requests or limits anywhere: evicted first.
    BestEffort,
    /// Some requests or limits, not all equal.
    Burstable,
    /// Every container's cpu and memory limits set and equal to its requests.
    Guaranteed,
}

impl QosClass {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::BestEffort => "BestEffort",
            QosClass::Burstable => "Burstable",
            QosClass::Guaranteed => "Guaranteed",
        }
    }
}

/// (cpu millis, memory bytes) of a container's requests and limits; a request defaults to the
/// limit as the apiserver's defaulting does.
fn amounts(c: &Container) -> ([Option<u64>; 2], [Option<u64>; 2]) {
    let r = c.resources.as_ref();
    let get = |m: Option<&std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
        [m.and_then(|m| m.get("cpu")).and_then(|q| cpu_millis(&q.0)), m.and_then(|m| m.get("memory")).and_then(|q| memory_bytes(&q.0))]
    };
    let limits = get(r.and_then(|r| r.limits.as_ref()));
    let mut requests = get(r.and_then(|r| r.requests.as_ref()));
    for i in 0..2 {
        if requests[i].is_none() {
            requests[i] = limits[i];
        }
    }
    (requests, limits)
}

/// The pod's QoS class.
pub fn qos_class(spec: &PodSpec) -> QosClass {
    let all: Vec<&Container> = spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let (req, lim) = amounts(c);
        if req.iter().chain(lim.iter()).any(|v| v.is_some_and(|v| v > 0)) {
            any = true;
        }
        for i in 0..2 {
            match (req[i], lim[i]) {
                (Some(r), Some(l)) if r == l && l > 0 => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(containers: serde_json::Value) -> PodSpec {
        serde_json::from_value(json!({ "containers": containers })).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn qos_class_table() {
        let table = [
            (json!([{"name": "a"}]), QosClass::BestEffort),
            (json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]), QosClass::Burstable),
            (json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]), QosClass::Guaranteed),
            (
                json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}]),
                QosClass::Guaranteed,
            ),
            (
                json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]),
                QosClass::Burstable,
            ),
            (json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}, {"name": "b"}]), QosClass::Burstable),
            (json!([{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]), QosClass::Burstable),
            // Other resources do not count.
            (json!([{"name": "a", "resources": {"limits": {"ephemeral-storage": "1Gi"}}}]), QosClass::BestEffort),
        ];
        for (containers, want) in table {
            assert_eq!(qos_class(&spec(containers.clone())), want, "{containers}");
        }
    }
}
