//! Request arithmetic: what a pod asks for, as kube-scheduler counts it.
//!
//! Invariants:
//! - A pod's request is the larger of the containers' sum (plus sidecars) and each init
//!   container at its turn, plus the overhead (component-helpers' `PodRequests`): init
//!   containers run one at a time before the app containers; restartable init containers
//!   (sidecars, `restartPolicy: Always`) keep running and add to everything after them.
//! - Only `requests` count (limits are the apiserver's defaulting to copy, not ours).
//! - The *non-zero* request, used only for scoring, counts a container that states no CPU or
//!   memory request as 100m / 200Mi, so that best-effort pods still spread.

use crate::quantity::{self, BadQuantity};
use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// kube-scheduler's `DefaultMilliCPURequest`: 0.1 core for a container without a CPU request.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// kube-scheduler's `DefaultMemoryRequest`: 200 MiB for a container without a memory request.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Pods (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`), ordered so messages are stable.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
        self.pods = self.pods.saturating_add(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `o` from `self`.
    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_sub(o.milli_cpu);
        self.memory = self.memory.saturating_sub(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(o.ephemeral_storage);
        self.pods = self.pods.saturating_sub(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
        self.scalar.retain(|_, v| *v != 0);
    }

    /// Each field the larger of the two.
    pub fn max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.pods = self.pods.max(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// Whether nothing at all is requested (kube's fast path in NodeResourcesFit).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.values().all(|v| *v == 0)
    }

    /// Reads a resource list (`requests`, `allocatable`, `overhead`). Unknown names become
    /// extended resources; a malformed value is an error naming its field.
    pub fn from_list(list: &BTreeMap<String, Quantity>, field: &str) -> Result<Resource, BadRequest> {
        let mut r = Resource::default();
        for (name, q) in list {
            let at = |e: BadQuantity| BadRequest { field: format!("{field}[{name}]"), error: e };
            match name.as_str() {
                "cpu" => r.milli_cpu = quantity::milli_value(&q.0).map_err(at)?,
                "memory" => r.memory = quantity::value(&q.0).map_err(at)?,
                "ephemeral-storage" => r.ephemeral_storage = quantity::value(&q.0).map_err(at)?,
                "pods" => r.pods = quantity::value(&q.0).map_err(at)?,
                other => {
                    let v = quantity::value(&q.0).map_err(at)?;
                    if v != 0 {
                        r.scalar.insert(other.to_string(), v);
                    }
                }
            }
        }
        Ok(r)
    }
}

/// A malformed quantity in a pod or node, with the field it was found in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest {
    /// Where (`spec.containers[0].resources.requests[cpu]`).
    pub field: String,
    /// What.
    pub error: BadQuantity,
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: Invalid value: {:?}: {}", self.field, self.error.text, self.error.why)
    }
}

/// What a pod asks for: the real request (filters) and the non-zero one (scores).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// For NodeResourcesFit's filter and the node's `requested`.
    pub requested: Resource,
    /// CPU/memory with the 100m / 200Mi floor per container, for scoring.
    pub non_zero_milli_cpu: i64,
    /// See `non_zero_milli_cpu`.
    pub non_zero_memory: i64,
}

fn container_requests(c: &Container, field: &str) -> Result<(Resource, i64, i64), BadRequest> {
    let empty = BTreeMap::new();
    let list = c.resources.as_ref().and_then(|r: &ResourceRequirements| r.requests.as_ref()).unwrap_or(&empty);
    let r = Resource::from_list(list, &format!("{field}.resources.requests"))?;
    let cpu = if list.contains_key("cpu") { r.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST };
    let mem = if list.contains_key("memory") { r.memory } else { DEFAULT_MEMORY_REQUEST };
    Ok((r, cpu, mem))
}

/// A pod's requests (component-helpers' `PodRequests`, with the non-zero variant alongside).
pub fn pod_requests(spec: &PodSpec) -> Result<PodRequests, BadRequest> {
    let mut sum = Resource::default();
    let (mut nz_cpu, mut nz_mem) = (0i64, 0i64);
    for (i, c) in spec.containers.iter().enumerate() {
        let (r, cpu, mem) = container_requests(c, &format!("spec.containers[{i}]"))?;
        sum.add(&r);
        nz_cpu = nz_cpu.saturating_add(cpu);
        nz_mem = nz_mem.saturating_add(mem);
    }
    // Init containers: each runs alone (plus the sidecars started before it); sidecars then
    // keep running next to the app containers.
    let mut sidecars = Resource::default();
    let (mut sc_cpu, mut sc_mem) = (0i64, 0i64);
    let mut init_max = Resource::default();
    let (mut init_cpu, mut init_mem) = (0i64, 0i64);
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let (r, cpu, mem) = container_requests(c, &format!("spec.initContainers[{i}]"))?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sc_cpu = sc_cpu.saturating_add(cpu);
            sc_mem = sc_mem.saturating_add(mem);
            // A sidecar's own start-up counts too: it and those before it.
            init_max.max(&sidecars);
            init_cpu = init_cpu.max(sc_cpu);
            init_mem = init_mem.max(sc_mem);
        } else {
            let mut at_turn = sidecars.clone();
            at_turn.add(&r);
            init_max.max(&at_turn);
            init_cpu = init_cpu.max(sc_cpu.saturating_add(cpu));
            init_mem = init_mem.max(sc_mem.saturating_add(mem));
        }
    }
    sum.add(&sidecars);
    sum.max(&init_max);
    nz_cpu = nz_cpu.saturating_add(sc_cpu).max(init_cpu);
    nz_mem = nz_mem.saturating_add(sc_mem).max(init_mem);
    if let Some(overhead) = &spec.overhead {
        let o = Resource::from_list(overhead, "spec.overhead")?;
        sum.add(&o);
        nz_cpu = nz_cpu.saturating_add(o.milli_cpu);
        nz_mem = nz_mem.saturating_add(o.memory);
    }
    sum.pods = 0;
    Ok(PodRequests { requested: sum, non_zero_milli_cpu: nz_cpu, non_zero_memory: nz_mem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("a pod spec")
    }

    fn c(name: &str, requests: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "image": "x", "resources": {"requests": requests}})
    }

    const MI: i64 = 1024 * 1024;

    #[test]
    fn pod_requests_follow_kube_scheduler() {
        // (name, spec, cpu, memory, non-zero cpu, non-zero memory)
        let table: Vec<(&str, serde_json::Value, i64, i64, i64, i64)> = vec![
            ("no requests: zero, scored as 100m/200Mi", json!({"containers": [{"name": "a", "image": "x"}]}), 0, 0, 100, 200 * MI),
            (
                "two best-effort containers: each counted at the floor",
                json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}),
                0,
                0,
                200,
                400 * MI,
            ),
            ("explicit zero is zero, also for scoring", json!({"containers": [c("a", json!({"cpu": "0", "memory": "0"}))]}), 0, 0, 0, 0),
            ("only cpu: memory floor for scoring", json!({"containers": [c("a", json!({"cpu": "250m"}))]}), 250, 0, 250, 200 * MI),
            (
                "containers sum",
                json!({"containers": [c("a", json!({"cpu": "1", "memory": "1Gi"})), c("b", json!({"cpu": "500m", "memory": "512Mi"}))]}),
                1500,
                1536 * MI,
                1500,
                1536 * MI,
            ),
            (
                "init container larger than the sum: the max wins",
                json!({"containers": [c("a", json!({"cpu": "1", "memory": "1Gi"}))],
                       "initContainers": [c("i1", json!({"cpu": "3", "memory": "100Mi"})), c("i2", json!({"cpu": "2", "memory": "2Gi"}))]}),
                3000,
                2048 * MI,
                3000,
                2048 * MI,
            ),
            (
                "init containers smaller than the sum do not add",
                json!({"containers": [c("a", json!({"cpu": "2"})), c("b", json!({"cpu": "2"}))],
                       "initContainers": [c("i", json!({"cpu": "3"}))]}),
                4000,
                0,
                4000,
                400 * MI,
            ),
            (
                "sidecar adds to the app containers and to later init containers",
                json!({"containers": [c("a", json!({"cpu": "1"}))],
                       "initContainers": [
                           {"name": "s", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m", "memory": "0"}}},
                           c("i", json!({"cpu": "2", "memory": "0"}))]}),
                2500,
                0,
                2500,
                200 * MI,
            ),
            (
                "overhead is added",
                json!({"containers": [c("a", json!({"cpu": "1", "memory": "1Gi"}))], "overhead": {"cpu": "250m", "memory": "120Mi"}}),
                1250,
                1144 * MI,
                1250,
                1144 * MI,
            ),
        ];
        for (name, s, cpu, mem, nz_cpu, nz_mem) in table {
            let r = pod_requests(&spec(s)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((r.requested.milli_cpu, r.requested.memory), (cpu, mem), "{name}: requested");
            assert_eq!((r.non_zero_milli_cpu, r.non_zero_memory), (nz_cpu, nz_mem), "{name}: non-zero");
        }
    }

    #[test]
    fn extended_resources_and_storage_are_counted() {
        let s = spec(json!({"containers": [c("a", json!({"example.com/gpu": "2", "ephemeral-storage": "1Gi"}))]}));
        let r = pod_requests(&s).expect("requests");
        assert_eq!(r.requested.scalar.get("example.com/gpu"), Some(&2));
        assert_eq!(r.requested.ephemeral_storage, 1 << 30);
        assert!(!r.requested.is_zero());
    }

    #[test]
    fn a_malformed_request_names_its_field() {
        let s = spec(json!({"containers": [c("a", json!({"cpu": "1"})), c("b", json!({"cpu": "lots"}))]}));
        let e = pod_requests(&s).expect_err("malformed");
        assert_eq!(e.field, "spec.containers[1].resources.requests[cpu]");
        assert_eq!(
            e.to_string(),
            "spec.containers[1].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }
}
