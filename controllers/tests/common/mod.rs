//! Shared helpers of the controller-manager's black-box tests: a cluster with the
//! controller-manager running, and a stand-in for the scheduler and kubelets.

#![allow(dead_code, clippy::disallowed_methods)]

pub mod kubelet;

use keel_testkit::Cluster;
use std::time::Duration;

pub use kubelet::FakeKubelet;

/// A store, an apiserver and one keel-controller-manager with `args` (not serving /healthz
/// unless `args` give a `--secure-port`).
pub fn cluster(args: &[&str]) -> Cluster {
    let mut c = Cluster::start();
    spawn_manager(&mut c, args);
    c
}

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
