//! Helpers for the scheduler's black-box tests: nodes and pods created through the API, the
//! scheduler started as a process, and waits on what the apiserver shows.
#![allow(dead_code, clippy::disallowed_methods)]

use k8s_openapi::api::core::v1::{Node, Pod};
use keel_testkit::Cluster;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::time::Duration;

/// A Node object with `cpu`/`memory` allocatable (and capacity), 110 pods, `labels` and `spec`.
pub fn node(name: &str, cpu: &str, memory: &str, labels: Value, spec: Value) -> Node {
    let alloc = json!({"cpu": cpu, "memory": memory, "pods": "110"});
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"capacity": alloc, "allocatable": alloc},
    }))
    .expect("a node")
}

/// A pod with one container requesting `cpu` (empty: nothing), plus `extra` spec fields.
pub fn pod(name: &str, cpu: &str, extra: Value) -> Pod {
    let requests = if cpu.is_empty() { json!({}) } else { json!({"cpu": cpu}) };
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": requests}}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}))
        .expect("a pod")
}

/// Creates `n` through the API.
pub async fn create_node(client: &kube::Client, n: &Node) {
    Api::<Node>::all(client.clone()).create(&PostParams::default(), n).await.expect("create node");
}

/// Creates `p` in `default`.
pub async fn create_pod(client: &kube::Client, p: &Pod) {
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), p).await.expect("create pod");
}

/// The pod's node, once it has one (within `limit`).
pub async fn wait_bound(client: &kube::Client, name: &str, limit: Duration) -> Option<String> {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    keel_testkit::eventually_async(limit, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().and_then(|p| p.spec.and_then(|s| s.node_name)) }
    })
    .await
}

/// The pod's node right now.
pub async fn node_of(client: &kube::Client, name: &str) -> Option<String> {
    Api::<Pod>::namespaced(client.clone(), "default").get_opt(name).await.ok().flatten().and_then(|p| p.spec.and_then(|s| s.node_name))
}

/// Starts a keel-scheduler with `extra` flags (its HTTPS port on a free address); returns its
/// index in `cluster.components` and its `https://addr` base URL.
pub fn start_scheduler(cluster: &mut Cluster, extra: &[&str]) -> (usize, String) {
    let addr = keel_testkit::net::free_addrs(1)[0];
    let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
    let mut args = vec!["--bind-address", ip.as_str(), "--secure-port", port.as_str()];
    args.extend_from_slice(extra);
    let i = cluster.spawn("keel-scheduler", true, &args);
    (i, format!("https://{addr}"))
}

/// `curl -ks <url>`: the body.
pub fn curl(url: &str) -> String {
    let out = std::process::Command::new("curl").args(["-ks", "--max-time", "5", url]).output().expect("run curl");
    keel_testkit::text(&out.stdout)
}

/// Every "bound" line a scheduler logged: (pod, node, holder).
pub fn binds_in_log(log: &str) -> Vec<(String, String, String)> {
    let field = |line: &str, name: &str| -> String {
        let key = format!("{name}=");
        line.split_whitespace().find_map(|w| w.strip_prefix(&key)).unwrap_or("").trim_matches('"').to_string()
    };
    log.lines()
        .filter(|l| l.contains(" bound ") || l.ends_with(" bound"))
        .map(|l| (field(l, "pod"), field(l, "node"), field(l, "holder")))
        .collect()
}

/// Every write to `/registry/pods/` in the store's history (from revision 1): the key and the
/// pod's `spec.nodeName` after the write (`None` for a delete or an unbound pod).
pub fn pod_history(cluster: &Cluster) -> Vec<(String, Option<String>, String)> {
    let out = std::process::Command::new("timeout")
        .args(["5", "etcdctl", "--endpoints", &cluster.store_addr.to_string(), "watch", "--rev=1", "--prefix", "/registry/pods/"])
        .output()
        .expect("run etcdctl");
    let text = keel_testkit::text(&out.stdout);
    let mut lines = text.lines();
    let mut history = Vec::new();
    while let Some(op) = lines.next() {
        match op {
            "PUT" => {
                let key = lines.next().unwrap_or("").to_string();
                let value = lines.next().unwrap_or("");
                let v: Value = serde_json::from_str(value).unwrap_or(Value::Null);
                let node = v.pointer("/spec/nodeName").and_then(Value::as_str).map(String::from);
                let uid = v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
                history.push((key, node, uid));
            }
            "DELETE" => {
                let key = lines.next().unwrap_or("").to_string();
                history.push((key, None, String::new()));
            }
            _ => {}
        }
    }
    history
}

/// Checks `single_binding` on the store's history: every pod incarnation (uid) goes from no
/// node to a node at most once and never changes node. Returns how many were bound.
pub fn assert_single_binding(history: &[(String, Option<String>, String)]) -> usize {
    use std::collections::BTreeMap;
    let mut node_of: BTreeMap<&str, &str> = BTreeMap::new();
    let mut bindings: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, node, uid) in history {
        let (Some(node), false) = (node.as_deref(), uid.is_empty()) else { continue };
        match node_of.get(uid.as_str()) {
            None => {
                node_of.insert(uid, node);
                *bindings.entry(uid).or_insert(0) += 1;
            }
            Some(before) => assert_eq!(before, &node, "{key} ({uid}) moved from {before} to {node}: bound twice"),
        }
    }
    assert!(bindings.values().all(|n| *n == 1));
    node_of.len()
}
