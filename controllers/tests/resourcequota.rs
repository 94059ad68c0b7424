//! The resourcequota controller with the real apiserver (which serves ResourceQuotas and keeps
//! `status.used` exact on its own writes): a drifted `status.used` is recounted on the next full
//! resync, and the recount never lets more pods in than the quota allows.

mod common;

use common::{apply, control_plane, kubectl, wait_for};
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

fn used_pods(q: &ResourceQuota) -> Option<String> {
    q.status.as_ref()?.used.as_ref()?.get("pods").map(|v| v.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_quota_is_recounted_and_stays_exact() {
    let c = control_plane(&[], &["--controllers=resourcequota", "--resource-quota-sync-period=1s"], 0);
    let client = c.client().await;
    apply(&c, "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: default}\nspec: {hard: {pods: \"3\"}}\n").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    for name in ["a", "b"] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}}))
            .unwrap_or_default();
        pods.create(&pp, &p).await.unwrap_or_else(|e| panic!("pod {name}: {e}"));
    }
    wait_for(&c, Duration::from_secs(30), "used pods 2", || async { (used_pods(&quotas.get("q").await.ok()?)? == "2").then_some(()) })
        .await;

    // Someone writes a wrong count: the resync puts the real one back.
    let drift = json!({"status": {"hard": {"pods": "3"}, "used": {"pods": "0"}}});
    quotas.patch_status("q", &PatchParams::default(), &Patch::Merge(drift)).await.unwrap_or_else(|e| panic!("drift: {e}"));
    wait_for(&c, Duration::from_secs(30), "the count repaired", || async {
        (used_pods(&quotas.get("q").await.ok()?)? == "2").then_some(())
    })
    .await;

    // Racing creates while the controller keeps writing: exactly one more pod fits.
    let mut created = 0;
    let results = futures::future::join_all((0..6).map(|i| {
        let pods = pods.clone();
        async move {
            let p: Pod = serde_json::from_value(
                json!({"metadata": {"name": format!("r{i}")}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            )
            .unwrap_or_default();
            pods.create(&PostParams::default(), &p).await
        }
    }))
    .await;
    for r in &results {
        if r.is_ok() {
            created += 1;
        }
    }
    assert_eq!(created, 1, "the quota's last unit: {results:?}");
    let listed = kubectl(&c, &["get", "pods", "-o", "name"]).await;
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 3);
    // A few resyncs later the count is still the apiserver's exact one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(quotas.get("q").await.ok().as_ref().and_then(used_pods).as_deref(), Some("3"));
}
