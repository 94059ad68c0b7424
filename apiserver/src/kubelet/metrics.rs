//! metrics.k8s.io objects from a kubelet's Summary API (`/stats/summary`), as metrics-server
//! computes them (pure): cpu is `usageNanoCores` (the kubelet's rate since its previous
//! summary), memory is `workingSetBytes`, both as canonical Kubernetes quantities; a container
//! or node without both numbers has no metrics (metrics-server skips it too).

use serde_json::{Value, json};

/// The window metrics are reported over (metrics-server's default resolution).
pub const WINDOW: &str = "10s";

/// `n` nanocores as a canonical decimal quantity (`250m`, `2`, `123456n`).
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    let mut v = nanocores;
    for suffix in ["n", "u", "m"] {
        if !v.is_multiple_of(1000) {
            return format!("{v}{suffix}");
        }
        v /= 1000;
    }
    v.to_string()
}

/// `bytes` as a canonical binary quantity (`64Mi`, `1000Ki`, `1536`).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut v = bytes;
    let mut suffix = "";
    for next in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !v.is_multiple_of(1024) {
            break;
        }
        v /= 1024;
        suffix = next;
    }
    format!("{v}{suffix}")
}

fn usage(stats: &Value) -> Option<(Value, String)> {
    let cpu = stats.pointer("/cpu/usageNanoCores")?.as_u64()?;
    let mem = stats.pointer("/memory/workingSetBytes")?.as_u64()?;
    let at = stats.pointer("/cpu/time").and_then(Value::as_str).unwrap_or_default().to_string();
    Some((json!({"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)}), at))
}

fn meta(name: &str, namespace: Option<&str>, labels: Option<&Value>, now: &str) -> Value {
    let mut m = json!({"name": name, "creationTimestamp": now});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if let Some(l) = labels.filter(|l| l.as_object().is_some_and(|o| !o.is_empty())) {
        m["labels"] = l.clone();
    }
    m
}

/// The NodeMetrics of `node` (a Node object) from its kubelet's `summary`; `now` is the
/// object's creationTimestamp (metrics are made on request).
pub fn node_metrics(node: &Value, summary: &Value, now: &str) -> Option<Value> {
    let name = node.pointer("/metadata/name")?.as_str()?;
    let (usage, at) = usage(summary.get("node")?)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta(name, None, node.pointer("/metadata/labels"), now),
        "timestamp": at,
        "window": WINDOW,
        "usage": usage,
    }))
}

/// The PodMetrics of `pod` (a Pod object) from its node's `summary`, if the kubelet reports it
/// (matched by namespace, name and uid) with at least one container's numbers.
pub fn pod_metrics(pod: &Value, summary: &Value, now: &str) -> Option<Value> {
    let name = pod.pointer("/metadata/name")?.as_str()?;
    let ns = pod.pointer("/metadata/namespace")?.as_str()?;
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str);
    let stats = summary.get("pods")?.as_array()?.iter().find(|p| {
        p.pointer("/podRef/name").and_then(Value::as_str) == Some(name)
            && p.pointer("/podRef/namespace").and_then(Value::as_str) == Some(ns)
            && (uid.is_none() || p.pointer("/podRef/uid").and_then(Value::as_str) == uid)
    })?;
    let mut at = String::new();
    let containers: Vec<Value> = stats
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let (u, t) = usage(c)?;
            at = t;
            Some(json!({"name": c.get("name")?.as_str()?, "usage": u}))
        })
        .collect();
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta(name, Some(ns), pod.pointer("/metadata/labels"), now),
        "timestamp": at,
        "window": WINDOW,
        "containers": containers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical() {
        let cpu: &[(u64, &str)] =
            &[(0, "0"), (123_456_789, "123456789n"), (250_000_000, "250m"), (2_000_000_000, "2"), (1_500, "1500n"), (7_000, "7u")];
        for (n, want) in cpu {
            assert_eq!(cpu_quantity(*n), *want, "{n}");
        }
        let mem: &[(u64, &str)] = &[(0, "0"), (1536, "1536"), (4_096_000, "4000Ki"), (64 << 20, "64Mi"), (3 << 30, "3Gi")];
        for (b, want) in mem {
            assert_eq!(memory_quantity(*b), *want, "{b}");
        }
    }

    #[test]
    fn summaries_become_node_and_pod_metrics() {
        let summary = json!({
            "node": {"nodeName": "n1", "cpu": {"time": "2030-01-01T00:00:00Z", "usageNanoCores": 250_000_000u64}, "memory": {"workingSetBytes": 64u64 << 20}},
            "pods": [
                {"podRef": {"name": "web", "namespace": "default", "uid": "u1"}, "containers": [
                    {"name": "web", "cpu": {"time": "t1", "usageNanoCores": 1_000_000u64}, "memory": {"workingSetBytes": 4_096_000u64}},
                    {"name": "half", "cpu": {"time": "t1"}, "memory": {"workingSetBytes": 1u64}},
                ]},
                {"podRef": {"name": "idle", "namespace": "default", "uid": "u2"}, "containers": []},
            ],
        });
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        let m = node_metrics(&node, &summary, "now").unwrap_or_default();
        assert_eq!(m["usage"], json!({"cpu": "250m", "memory": "64Mi"}));
        assert_eq!(m["metadata"], json!({"name": "n1", "creationTimestamp": "now", "labels": {"zone": "a"}}));
        assert_eq!(m["timestamp"], "2030-01-01T00:00:00Z");
        let web = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}});
        let p = pod_metrics(&web, &summary, "now").unwrap_or_default();
        assert_eq!(
            p["containers"],
            json!([{"name": "web", "usage": {"cpu": "1m", "memory": "4000Ki"}}]),
            "a container without cpu is left out"
        );
        let other_uid = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u9"}});
        assert!(pod_metrics(&other_uid, &summary, "now").is_none(), "a recreated pod is not the old one");
        let idle = json!({"metadata": {"name": "idle", "namespace": "default", "uid": "u2"}});
        assert!(pod_metrics(&idle, &summary, "now").is_none());
        assert!(node_metrics(&node, &json!({"node": {"cpu": {}}}), "now").is_none());
    }
}
