//! The control plane the cluster benchmarks run: one store member (keel-store or the real
//! etcd) and keel-apiserver (keel-testkit), one keel-kubelet hosting `nodes` simulated nodes,
//! keel-scheduler and keel-controller-manager, all real processes from the folder the running
//! binary is in, stopped by PID when [`ControlPlane`] is dropped.
//!
//! Invariants: nothing is measured before every simulated node is Ready; the processes are
//! named by role in [`ControlPlane::pids`] so CPU and RSS rows say whose they are.

use crate::error::Error;
use k8s_openapi::api::core::v1::Node;
use keel_testkit::{Backend, Cluster};
use kube::Api;
use kube::api::ListParams;
use std::time::Duration;

/// The processes of one run.
pub struct ControlPlane {
    /// The store, the apiserver and the components.
    pub cluster: Cluster,
    kubelet: usize,
    scheduler: usize,
    manager: usize,
}

/// How to start it.
#[derive(Clone, Debug)]
pub struct Shape {
    /// keel-store or etcd under the apiserver.
    pub backend: Backend,
    /// Simulated nodes in the one kubelet process.
    pub nodes: usize,
    /// `--max-pods` of every simulated node.
    pub max_pods: usize,
    /// Extra keel-controller-manager flags.
    pub manager_flags: Vec<String>,
}

impl ControlPlane {
    /// Starts every process (the store and apiserver are listening when this returns; the
    /// components are started, not yet ready).
    pub fn start(shape: &Shape) -> ControlPlane {
        let mut cluster = Cluster::builder().backend(shape.backend).start();
        let root = cluster.path("kubelet-root").to_string_lossy().into_owned();
        let (nodes, max_pods) = (shape.nodes.to_string(), shape.max_pods.to_string());
        let kubelet = cluster.spawn(
            "keel-kubelet",
            true,
            &["--simulated-nodes", &nodes, "--hostname-override", "hollow", "--port", "0", "--root-dir", &root, "--max-pods", &max_pods],
        );
        let scheduler = cluster.spawn("keel-scheduler", true, &["--secure-port", "0"]);
        let mut flags: Vec<&str> = vec!["--secure-port", "0"];
        flags.extend(shape.manager_flags.iter().map(String::as_str));
        let manager = cluster.spawn("keel-controller-manager", true, &flags);
        ControlPlane { cluster, kubelet, scheduler, manager }
    }

    /// (role, PID) of every process of the control plane.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let c = &self.cluster;
        vec![
            ("store".into(), c.stores[0].pid()),
            ("apiserver".into(), c.apiservers[0].pid()),
            ("controller-manager".into(), c.components[self.manager].pid()),
            ("scheduler".into(), c.components[self.scheduler].pid()),
            ("kubelet".into(), c.components[self.kubelet].pid()),
        ]
    }

    /// Waits until `nodes` Nodes report Ready=True, polling every 500 ms for at most `limit`.
    pub async fn wait_nodes_ready(&self, client: &kube::Client, nodes: usize, limit: Duration) -> Result<(), Error> {
        let api = Api::<Node>::all(client.clone());
        let wait = async {
            loop {
                let ready = api.list(&ListParams::default()).await.map(|l| l.items.iter().filter(|n| ready(n)).count()).unwrap_or(0);
                if ready >= nodes {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| Error::Timeout(format!("fewer than {nodes} nodes Ready after {limit:?}\n{}", self.cluster.logs())))
    }
}

impl ControlPlane {
    /// The scheduler's and controller-manager's leader-election log lines ("became leader",
    /// "stopped leading"), as (role, line): a lost lease under load shows here.
    pub fn leadership(&self) -> Vec<(String, String)> {
        let c = &self.cluster;
        [("scheduler", self.scheduler), ("controller-manager", self.manager)]
            .into_iter()
            .flat_map(|(role, i)| {
                let log = c.components[i].log();
                log.lines()
                    .filter(|l| l.contains("became leader") || l.contains("stopped leading"))
                    .map(|l| (role.to_string(), l.chars().take(200).collect()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The Node's Ready condition is True.
pub fn ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
