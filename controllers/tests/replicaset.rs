//! The ReplicaSet controller with the real scheduler and kubelets: replicas kept, a deleted pod
//! (finished by its kubelet) replaced, scaled, orphans adopted, pods that stop matching released.

mod common;

use common::{apply, control_plane, ok, ready_nodes, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use keel_controllers::ownership::controller_of;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

const RS: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
"#;

async fn web_pods(api: &Api<Pod>) -> Vec<Pod> {
    let list = api.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    list.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_keeps_replicas_adopts_orphans_and_releases_mismatches() {
    let serve = keel_testkit::net::free_addrs(1)[0];
    let (ip, port) = (serve.ip().to_string(), serve.port().to_string());
    let c = control_plane(&[], &[&format!("--bind-address={ip}"), &format!("--secure-port={port}")], 2);
    ready_nodes(&c, 2).await;
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    apply(&c, RS).await;

    // Three pods, all owned, and a status that says so.
    let first = wait_for(&c, Duration::from_secs(30), "3 ready replicas", || async {
        let rs = rss.get("web").await.ok()?;
        let st = rs.status?;
        (st.ready_replicas == Some(3) && st.available_replicas == Some(3) && st.observed_generation == rs.metadata.generation)
            .then_some(())?;
        let p = web_pods(&pods).await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let rs_uid = rss.get("web").await.ok().and_then(|r| r.metadata.uid).unwrap_or_default();
    for p in &first {
        let r = controller_of(&p.metadata).cloned().unwrap_or_default();
        assert_eq!((r.kind.as_str(), r.uid.as_str(), r.block_owner_deletion), ("ReplicaSet", rs_uid.as_str(), Some(true)));
        assert!(p.metadata.name.as_deref().unwrap_or_default().starts_with("web-"));
    }

    // A deleted pod is replaced.
    let victim = first[0].metadata.name.clone().unwrap_or_default();
    pods.delete(&victim, &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(30), "a replacement pod", || async {
        let p = web_pods(&pods).await;
        (p.len() == 3 && p.iter().all(|p| p.metadata.name.as_deref() != Some(victim.as_str()))).then_some(())
    })
    .await;

    // Scaled down through kubectl: the controller deletes two.
    ok(&c, &["scale", "rs", "web", "--replicas=1"]).await;
    wait_for(&c, Duration::from_secs(30), "1 pod after scale-down", || async { (web_pods(&pods).await.len() == 1).then_some(()) }).await;

    // An orphan that matches is adopted, and then one of the two is deleted (replicas is 1).
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}
    }))
    .unwrap_or_default();
    pods.create(&PostParams::default(), &orphan).await.ok();
    wait_for(&c, Duration::from_secs(30), "the orphan adopted and the count back to 1", || async {
        let p = web_pods(&pods).await;
        let owned = p.iter().all(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == rs_uid));
        (p.len() == 1 && owned).then_some(())
    })
    .await;

    // A pod whose labels stop matching is released and replaced.
    let kept = web_pods(&pods).await.pop().and_then(|p| p.metadata.name).unwrap_or_default();
    pods.patch(&kept, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}}))).await.ok();
    wait_for(&c, Duration::from_secs(30), "the mismatching pod released and replaced", || async {
        let released = pods.get(&kept).await.ok()?;
        let replaced = web_pods(&pods).await.len() == 1;
        (controller_of(&released.metadata).is_none() && replaced).then_some(())
    })
    .await;

    // Health and the workqueue metrics over HTTPS (self-signed, as kube's components serve).
    let curl = |path: &str| {
        std::process::Command::new("curl")
            .args(["-sk", &format!("https://{ip}:{port}{path}")])
            .output()
            .map(|o| keel_testkit::text(&o.stdout))
            .unwrap_or_default()
    };
    assert_eq!(curl("/healthz").trim(), "ok");
    let metrics = curl("/metrics");
    let adds = metrics
        .lines()
        .find(|l| l.starts_with("workqueue_adds_total{name=\"replicaset\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok());
    assert!(adds.is_some_and(|n| n > 0.0), "{metrics}");
    assert!(metrics.contains("workqueue_work_duration_seconds_count{name=\"replicaset\"}"), "{metrics}");
    assert!(metrics.contains("workqueue_depth{name=\"deployment\"}"), "{metrics}");
}
