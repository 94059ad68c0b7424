//! `GET /stats/summary`, the Summary API metrics-server reads (`stats/v1alpha1`): node and
//! per-pod, per-container cpu (`usageNanoCores` from two samples, `usageCoreNanoSeconds`) and
//! memory (`workingSetBytes`). Node numbers come from /proc (stat, meminfo), container numbers
//! from the runtime (cgroups).

use super::Server;
use crate::runtime::PodUid;
use axum::Json;
use axum::extract::State;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The previous cpu sample per key (node, container id): when, and total ns.
#[derive(Debug, Default)]
pub struct Samples(BTreeMap<String, (tokio::time::Instant, u64)>);

impl Samples {
    /// Records `total` for `key`; the rate since the previous sample in nanocores.
    pub fn rate(&mut self, key: &str, total: u64) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let prev = self.0.insert(key.to_string(), (now, total));
        let (t, v) = prev?;
        let dt = now.duration_since(t).as_nanos() as u64;
        (dt > 0).then(|| total.saturating_sub(v).saturating_mul(1_000_000_000) / dt)
    }
}

fn node_cpu_ns() -> u64 {
    let t = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = t.lines().next() else { return 0 };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system (idle iowait excluded) irq softirq steal, in USER_HZ (100) ticks.
    let busy: u64 = v.iter().enumerate().filter(|(i, _)| ![3, 4].contains(i)).map(|(_, x)| *x).take(8).sum();
    busy * 10_000_000
}

fn cpu(at: Timestamp, total: u64, rate: Option<u64>) -> Value {
    json!({"time": at.to_string(), "usageCoreNanoSeconds": total, "usageNanoCores": rate.unwrap_or(0)})
}

fn memory(at: Timestamp, ws: u64) -> Value {
    json!({"time": at.to_string(), "workingSetBytes": ws, "usageBytes": ws})
}

/// The handler.
pub async fn handler(State(s): State<Server>) -> Json<Value> {
    let at = s.node.clock.now();
    let pods: Vec<_> = s.node.index.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    let mut pod_stats = Vec::new();
    for p in pods {
        let uid = PodUid(p.metadata.uid.clone().unwrap_or_default());
        let mut containers = Vec::new();
        let (mut pcpu, mut pmem) = (0u64, 0u64);
        for r in s.node.runtime.containers(&uid).await.unwrap_or_default().iter().filter(|r| r.running()) {
            let Some(u) = s.node.runtime.usage(&r.id).await else { continue };
            let rate = s.samples.lock().unwrap_or_else(|e| e.into_inner()).rate(&r.id.0, u.cpu_ns);
            pcpu += u.cpu_ns;
            pmem += u.memory_bytes;
            containers.push(json!({"name": r.name, "startTime": r.started_at.to_string(), "cpu": cpu(at, u.cpu_ns, rate), "memory": memory(at, u.memory_bytes)}));
        }
        let rate = s.samples.lock().unwrap_or_else(|e| e.into_inner()).rate(&format!("pod/{}", uid.0), pcpu);
        pod_stats.push(json!({
            "podRef": {"name": p.metadata.name, "namespace": p.metadata.namespace, "uid": uid.0},
            "startTime": p.status.as_ref().and_then(|s| s.start_time.clone()),
            "containers": containers,
            "cpu": cpu(at, pcpu, rate),
            "memory": memory(at, pmem),
        }));
    }
    let total = node_cpu_ns();
    let rate = s.samples.lock().unwrap_or_else(|e| e.into_inner()).rate("node", total);
    let mem_total = crate::node::host::capacity(std::path::Path::new("/"), 0).memory;
    let avail = crate::node::host::signals(std::path::Path::new("/")).memory_available.unwrap_or(0);
    Json(json!({
        "node": {"nodeName": s.node.name, "cpu": cpu(at, total, rate), "memory": {"time": at.to_string(), "workingSetBytes": mem_total.saturating_sub(avail), "availableBytes": avail, "usageBytes": mem_total.saturating_sub(avail)}},
        "pods": pod_stats,
    }))
}
