//! Node lifecycle through the real apiserver: a silent node becomes Unknown and tainted, its
//! pods are evicted when their toleration runs out and replaced elsewhere, the taints go when
//! it returns, and when every node goes silent nothing is evicted.

mod common;

use common::{FakeKubelet, apply, cluster, wait_for};
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
      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}]
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
    let c = cluster(&["--node-monitor-period=1s", "--node-monitor-grace-period=4s", "--node-eviction-rate=10"]);
    let kubelet = FakeKubelet::start(c.kubeconfig.clone(), &["node-1", "node-2", "node-3"]);
    let client = c.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    apply(&c, DEPLOY).await;
    let first = wait_for(&c, Duration::from_secs(30), "3 ready pods on 3 nodes", || async {
        let p = live_pods(&pods).await;
        (p.len() == 3 && p.iter().all(keel_controllers::pod::is_ready)).then_some(p)
    })
    .await;
    let victim = node_of(&first[0]);
    let on_victim: Vec<String> = first.iter().filter(|p| node_of(p) == victim).filter_map(|p| p.metadata.name.clone()).collect();

    // The kubelet of one node stops: Unknown, tainted, its pods evicted after 2 s and replaced.
    kubelet.set_alive(&victim, false);
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
    kubelet.set_alive(&victim, true);
    wait_for(&c, Duration::from_secs(30), "the node Ready and untainted", || async {
        let n = nodes.get(&victim).await.ok()?;
        (ready(&n) == "True" && !tainted(&n, UNREACHABLE, NO_EXECUTE) && !tainted(&n, UNREACHABLE, NO_SCHEDULE)).then_some(())
    })
    .await;

    // Every kubelet stops: all nodes go Unknown, but nothing is tainted for eviction and no pod
    // is deleted (kube's master disruption mode).
    let before: Vec<String> = live_pods(&pods).await.into_iter().filter_map(|p| p.metadata.name).collect();
    for n in ["node-1", "node-2", "node-3"] {
        kubelet.set_alive(n, false);
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
