//! The controller-manager survives kill -9 of itself and of the apiserver: after either comes
//! back it picks up where the cluster is (level-triggered, caches listed again) without
//! creating pods it already created.

mod common;

use common::{apply, control_plane, ok, ready_nodes, wait_for};
use k8s_openapi::api::core::v1::Pod;
use keel_testkit::Cluster;
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
    spec: {containers: [{name: c, image: nginx}]}
"#;

async fn ready_pods(pods: &Api<Pod>) -> Vec<String> {
    let list = pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && keel_controllers::pod::is_ready(p))
        .filter_map(|p| p.metadata.name)
        .collect()
}

async fn settle(c: &Cluster, pods: &Api<Pod>, n: usize, what: &str) -> Vec<String> {
    wait_for(c, Duration::from_secs(60), what, || async {
        let p = ready_pods(pods).await;
        (p.len() == n).then_some(p)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_manager_or_the_apiserver_loses_nothing_and_doubles_nothing() {
    let mut c = control_plane(&[], &[], 2);
    ready_nodes(&c, 2).await;
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    apply(&c, DEPLOY).await;
    let before = settle(&c, &pods, 3, "3 pods").await;

    // The manager dies and comes back: the same three pods, no new ones.
    c.components[0].kill9();
    c.components[0].restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(settle(&c, &pods, 3, "still 3 pods").await, before, "a restarted manager recreated pods");
    ok(&c, &["scale", "deployment/web", "--replicas=5"]).await;
    let five = settle(&c, &pods, 5, "5 pods after a restart of the manager").await;
    assert!(before.iter().all(|p| five.contains(p)));

    // The apiserver dies and comes back: the watches resume and the next change is acted on.
    c.apiservers[0].kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.apiservers[0].restart();
    wait_for(&c, Duration::from_secs(30), "the apiserver back", || async { pods.list(&ListParams::default()).await.ok().map(|_| ()) })
        .await;
    ok(&c, &["scale", "deployment/web", "--replicas=2"]).await;
    let two = settle(&c, &pods, 2, "2 pods after a restart of the apiserver").await;
    assert!(two.iter().all(|p| five.contains(p)), "scaling down keeps existing pods");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ready_pods(&pods).await.len(), 2, "and stays there");
}
