//! Node lifecycle with real processes: three keel-kubelets (one simulated node each), the real
//! scheduler, and an apiserver whose DefaultTolerationSeconds admission gives pods 2 s of
//! `unreachable` toleration. A stopped kubelet's node becomes Unknown and tainted after the
//! (shortened) grace period, its pods are evicted when the toleration runs out and placed on the
//! other nodes, the taints go when the kubelet is back, and when every kubelet stops nothing is
//! evicted.

mod common;

use common::{apply, control_plane, ready_nodes, spawn_kubelet_named, wait_for};
use k8s_openapi::api::core::v1::{Node, Pod};
use keel_controllers::nodelifecycle::taints::{NO_EXECUTE, NO_SCHEDULE, UNREACHABLE};
use kube::api::{Api, ListParams};
use std::time::Duration;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
"#;

fn ready(n: &Node) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn tainted(n: &Node, key: &str, effect: &str) -> bool {
    n.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == key && t.effect == effect))
}

async fn live_pods(api: &Api<Pod>) -> Vec<Pod> {
    api.list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn node_of(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_and_drained_and_a_silent_cluster_is_not() {
    let mut c = control_plane(
        &["--default-unreachable-toleration-seconds=2", "--default-not-ready-toleration-seconds=2"],
        &["--node-monitor-period=1s", "--node-monitor-grace-period=4s", "--node-eviction-rate=10"],
        0,
    );
    // Heartbeats scaled down with the grace period (kube: 40 s Leases renewed every 10 s against
    // 50 s): 4 s Leases, renewed every second.
    let kubelets: Vec<(String, usize)> = ["a", "b", "c"]
        .iter()
        .map(|b| (format!("{b}-0"), spawn_kubelet_named(&mut c, b, 1, &["--node-lease-duration-seconds", "4"])))
        .collect();
    let kubelet_of =
        |node: &str| kubelets.iter().find(|(n, _)| n == node).map(|(_, i)| *i).unwrap_or_else(|| panic!("no kubelet for {node}"));
    ready_nodes(&c, 3).await;
    let client = c.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    apply(&c, DEPLOY).await;
    let first = wait_for(&c, Duration::from_secs(30), "3 ready pods on 3 nodes", || async {
        let p = live_pods(&pods).await;
        (p.len() == 3 && p.iter().all(keel_controllers::pod::is_ready)).then_some(p)
    })
    .await;
    let tolerations = first[0].spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    assert!(
        tolerations.iter().any(|t| t.key.as_deref() == Some(UNREACHABLE) && t.toleration_seconds == Some(2)),
        "DefaultTolerationSeconds: {tolerations:?}"
    );
    let victim = node_of(&first[0]);
    let on_victim: Vec<String> = first.iter().filter(|p| node_of(p) == victim).filter_map(|p| p.metadata.name.clone()).collect();

    // The kubelet of one node is killed: Unknown, tainted, its pods evicted after 2 s and
    // replaced on the other nodes.
    let victim_kubelet = kubelet_of(&victim);
    c.components[victim_kubelet].kill9();
    wait_for(&c, Duration::from_secs(30), "the silent node Unknown and tainted", || async {
        let n = nodes.get(&victim).await.ok()?;
        (ready(&n) == "Unknown" && tainted(&n, UNREACHABLE, NO_EXECUTE) && tainted(&n, UNREACHABLE, NO_SCHEDULE)).then_some(())
    })
    .await;
    wait_for(&c, Duration::from_secs(30), "the pods moved to the other nodes", || async {
        let p = live_pods(&pods).await;
        let moved = p.iter().all(|p| node_of(p) != victim && !p.metadata.name.as_ref().is_some_and(|n| on_victim.contains(n)));
        (p.len() == 3 && moved && p.iter().all(keel_controllers::pod::is_ready)).then_some(())
    })
    .await;

    // It comes back: Ready, no taints.
    c.components[victim_kubelet].restart();
    wait_for(&c, Duration::from_secs(30), "the node Ready and untainted", || async {
        let n = nodes.get(&victim).await.ok()?;
        (ready(&n) == "True" && !tainted(&n, UNREACHABLE, NO_EXECUTE) && !tainted(&n, UNREACHABLE, NO_SCHEDULE)).then_some(())
    })
    .await;

    // Every kubelet stops: all nodes go Unknown, but nothing is tainted for eviction and no pod
    // is deleted (kube's master disruption mode).
    let before: Vec<String> = live_pods(&pods).await.into_iter().filter_map(|p| p.metadata.name).collect();
    for (_, i) in &kubelets {
        c.components[*i].kill9();
    }
    wait_for(&c, Duration::from_secs(30), "every node Unknown", || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        list.items.iter().all(|n| ready(n) == "Unknown").then_some(())
    })
    .await;
    // Longer than the toleration and several monitor passes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let list = nodes.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    assert!(list.iter().all(|n| !tainted(n, UNREACHABLE, NO_EXECUTE)), "no NoExecute taint in a full disruption");
    let after: Vec<String> = live_pods(&pods).await.into_iter().filter_map(|p| p.metadata.name).collect();
    assert_eq!(before, after, "no pod evicted while every node is silent");
}
