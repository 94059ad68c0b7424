//! Shared helpers of the controller-manager's black-box tests: a control plane of real
//! processes (store, apiserver, keel-scheduler, keel-controller-manager, keel-kubelets with
//! simulated nodes), the store's history and the managers' logged acts.

#![allow(dead_code, clippy::disallowed_methods)]

pub mod history;

use keel_testkit::Cluster;
use std::time::Duration;

/// Starts one more keel-controller-manager; its index in `c.components`.
pub fn spawn_manager(c: &mut Cluster, args: &[&str]) -> usize {
    let mut all: Vec<&str> = Vec::new();
    if !args.iter().any(|a| a.starts_with("--secure-port")) {
        all.push("--secure-port=0");
    }
    if !args.iter().any(|a| a.starts_with("--leader-elect")) {
        all.push("--leader-elect=false");
    }
    all.extend_from_slice(args);
    c.spawn("keel-controller-manager", true, &all)
}

/// Starts the real keel-scheduler (no election, no HTTPS port).
pub fn spawn_scheduler(c: &mut Cluster) -> usize {
    c.spawn("keel-scheduler", true, &["--leader-elect=false", "--secure-port", "0"])
}

/// Starts one keel-kubelet hosting `n` simulated nodes `node-0` … `node-<n-1>` that report
/// quickly (status every second, pod syncs every 500 ms); `extra` flags are appended.
pub fn spawn_kubelets(c: &mut Cluster, n: usize, extra: &[&str]) -> usize {
    spawn_kubelet_named(c, "node", n, extra)
}

/// Starts one keel-kubelet hosting `n` simulated nodes `<base>-0` … `<base>-<n-1>`, with its own
/// root dir and its own pod range (`10.<128 + k>.0.0/16` for the `k`-th kubelet of the test, so
/// pod IPs of different kubelet processes never collide); `extra` flags are appended.
pub fn spawn_kubelet_named(c: &mut Cluster, base: &str, n: usize, extra: &[&str]) -> usize {
    let k = c.components.iter().filter(|p| p.name.starts_with("keel-kubelet")).count();
    let root = c.path(&format!("kubelet-root-{base}")).to_string_lossy().into_owned();
    let range = format!("10.{}.0.0/16", 128 + k);
    let n = n.to_string();
    let mut args = vec![
        "--simulated-nodes",
        n.as_str(),
        "--simulated-pod-range",
        range.as_str(),
        "--hostname-override",
        base,
        "--port",
        "0",
        "--root-dir",
        root.as_str(),
        "--sync-frequency",
        "500ms",
        "--node-status-update-frequency",
        "1s",
    ];
    args.extend_from_slice(extra);
    c.spawn("keel-kubelet", true, &args)
}

/// A store, an apiserver (with `api_flags`), the real keel-scheduler, one keel-controller-manager
/// with `manager_args` and one keel-kubelet hosting `nodes` simulated nodes `node-0` … — the
/// whole control plane as real processes.
pub fn control_plane(api_flags: &[&str], manager_args: &[&str], nodes: usize) -> Cluster {
    let mut c = Cluster::builder().apiserver_flags(api_flags).start();
    spawn_manager(&mut c, manager_args);
    spawn_scheduler(&mut c);
    if nodes > 0 {
        spawn_kubelets(&mut c, nodes, &[]);
    }
    c
}

/// Waits until `n` nodes are registered and Ready.
pub async fn ready_nodes(c: &Cluster, n: usize) {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, ListParams};
    let nodes: Api<Node> = Api::all(c.client().await);
    wait_for(c, Duration::from_secs(60), &format!("{n} Ready nodes"), || async {
        let list = nodes.list(&ListParams::default()).await.ok()?.items;
        let ready = list
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        (ready >= n).then_some(())
    })
    .await
}

/// One acknowledged write a controller-manager logged (`created pod=ns/name … rv=… holder=…
/// transitions=…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedAct {
    /// `created`, `updated`, `deleted`.
    pub verb: String,
    /// `pod`, `replicaset`, …
    pub kind: String,
    /// `namespace/name`.
    pub key: String,
    /// The response's resourceVersion (the store revision of the write).
    pub rv: Option<i64>,
    /// The identity that sent it.
    pub holder: String,
    /// Its Lease's leaseTransitions when sent.
    pub transitions: i32,
}

/// Every act in a controller-manager's log.
pub fn acts_in_log(log: &str) -> Vec<LoggedAct> {
    let field = |line: &str, name: &str| -> Option<String> {
        let key = format!("{name}=");
        line.split_whitespace().find_map(|w| w.strip_prefix(&key)).map(|v| v.trim_matches('"').to_string())
    };
    log.lines()
        .filter(|l| l.contains("keel_controllers::acts:"))
        .filter_map(|l| {
            let after = l.split("keel_controllers::acts:").nth(1)?.trim();
            let mut words = after.split_whitespace();
            let verb = words.next()?.to_string();
            let (kind, key) = words.next()?.split_once('=')?;
            Some(LoggedAct {
                verb,
                kind: kind.to_string(),
                key: key.to_string(),
                rv: field(l, "rv").and_then(|r| r.parse().ok()),
                holder: field(l, "holder")?,
                transitions: field(l, "transitions")?.parse().ok()?,
            })
        })
        .collect()
}

/// Polls `f` (async) every 100 ms for up to `limit`; panics with `what` and the logs if it never
/// returns Some.
pub async fn wait_for<T, F, Fut>(c: &Cluster, limit: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match keel_testkit::eventually_async(limit, f).await {
        Some(v) => v,
        None => {
            let state =
                tokio::task::block_in_place(|| keel_testkit::text(&c.kubectl(&["get", "deploy,rs,pods,nodes", "-A", "-o", "wide"]).stdout));
            panic!("timed out waiting for {what}\n{state}\n{}", c.logs())
        }
    }
}

/// kubectl off the async runtime's threads.
pub async fn kubectl(c: &Cluster, args: &[&str]) -> std::process::Output {
    tokio::task::block_in_place(|| c.kubectl(args))
}

/// kubectl that must succeed; its stdout.
pub async fn ok(c: &Cluster, args: &[&str]) -> String {
    tokio::task::block_in_place(|| c.ok(args))
}

/// `kubectl apply -f -`.
pub async fn apply(c: &Cluster, yaml: &str) -> String {
    tokio::task::block_in_place(|| c.apply(yaml, &[]))
}
