//! Garbage collection, namespace deletion and ServiceAccounts with the real apiserver, scheduler,
//! kubelet and kubectl: dangling and cross-namespace owners, finalizers set by hand, and
//! `kubectl delete --cascade=orphan|foreground` end to end (the apiserver only adds the
//! finalizer; the collector does the cascade, the kubelet the pods' final delete).

mod common;

use common::{apply, control_plane, ok, ready_nodes, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn cm(name: &str, owners: serde_json::Value, finalizers: &[&str]) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers}})).unwrap_or_default()
}

fn owner(name: &str, uid: &str, block: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid, "blockOwnerDeletion": block})
}

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_cascades_orphans_and_rejects_bad_owners() {
    let c = control_plane(&[], &[], 1);
    ready_nodes(&c, 1).await;
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let uid_of = |c: &ConfigMap| c.metadata.uid.clone().unwrap_or_default();

    // A dependent of an owner that never existed is deleted.
    cms.create(&pp, &cm("dangling", json!([owner("gone", "00000000-0000-0000-0000-000000000000", false)]), &[])).await.ok();
    // An owner in another namespace cannot own: the dependent is deleted.
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap_or_default()).await.ok();
    let elsewhere =
        Api::<ConfigMap>::namespaced(client.clone(), "other").create(&pp, &cm("far-owner", json!([]), &[])).await.ok().unwrap_or_default();
    cms.create(&pp, &cm("cross-ns", json!([owner("far-owner", &uid_of(&elsewhere), false)]), &[])).await.ok();
    // A solid owner keeps its dependent; the dangling reference next to it is dropped.
    let keeper = cms.create(&pp, &cm("keeper", json!([]), &[])).await.ok().unwrap_or_default();
    cms.create(
        &pp,
        &cm("kept", json!([owner("keeper", &uid_of(&keeper), false), owner("gone", "11111111-0000-0000-0000-000000000000", false)]), &[]),
    )
    .await
    .ok();
    wait_for(&c, Duration::from_secs(30), "dangling and cross-namespace dependents deleted, the kept one patched", || async {
        let gone = cms.get_opt("dangling").await.ok()?.is_none() && cms.get_opt("cross-ns").await.ok()?.is_none();
        let kept = cms.get_opt("kept").await.ok()??;
        let refs = kept.metadata.owner_references.unwrap_or_default();
        (gone && refs.len() == 1 && refs[0].name == "keeper").then_some(())
    })
    .await;

    // Foreground by finalizer: the blocking dependent goes first, then the owner.
    let fg = cms.create(&pp, &cm("fg-owner", json!([]), &["foregroundDeletion"])).await.ok().unwrap_or_default();
    cms.create(&pp, &cm("fg-dep", json!([owner("fg-owner", &uid_of(&fg), true)]), &[])).await.ok();
    cms.delete("fg-owner", &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(30), "the foreground owner and its dependent gone", || async {
        (cms.get_opt("fg-dep").await.ok()?.is_none() && cms.get_opt("fg-owner").await.ok()?.is_none()).then_some(())
    })
    .await;

    // Orphan by finalizer: the dependent stays, without the reference.
    let or = cms.create(&pp, &cm("or-owner", json!([]), &["orphan"])).await.ok().unwrap_or_default();
    cms.create(&pp, &cm("or-dep", json!([owner("or-owner", &uid_of(&or), true)]), &[])).await.ok();
    cms.delete("or-owner", &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(30), "the orphan owner gone, its dependent kept without the reference", || async {
        let dep = cms.get_opt("or-dep").await.ok()??;
        (cms.get_opt("or-owner").await.ok()?.is_none() && dep.metadata.owner_references.unwrap_or_default().is_empty()).then_some(())
    })
    .await;

    // kubectl delete --cascade=orphan keeps the ReplicaSet and pods: the apiserver answers that
    // DELETE by adding the `orphan` finalizer and the collector does the rest.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    apply(&c, DEPLOY).await;
    ok(&c, &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    ok(&c, &["delete", "deployment", "web", "--cascade=orphan"]).await;
    wait_for(&c, Duration::from_secs(30), "the Deployment gone", || async { deploys.get_opt("web").await.ok()?.is_none().then_some(()) })
        .await;
    let left_rs = rss.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    assert_eq!(left_rs.len(), 1, "the ReplicaSet stays\n{}", c.logs());
    assert!(left_rs[0].metadata.owner_references.clone().unwrap_or_default().is_empty(), "without its owner reference");
    assert_eq!(pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items.len()).unwrap_or(0), 2, "the pods stay");

    // Adopted again by a new Deployment, then deleted in the foreground: no pod outlives it.
    apply(&c, DEPLOY).await;
    ok(&c, &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let (s, v, d2, p2) = (stop.clone(), violations.clone(), deploys.clone(), pods.clone());
    let sampler = tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) {
            let gone = matches!(d2.get_opt("web").await, Ok(None));
            let left = p2.list(&ListParams::default().labels("app=web")).await.map(|l| l.items.len()).unwrap_or(0);
            if gone && left > 0 {
                v.lock().unwrap_or_else(|p| p.into_inner()).push(left);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The apiserver adds `foregroundDeletion` on this DELETE; pods go (through their kubelet's
    // final delete) before the ReplicaSet, the ReplicaSet before the Deployment.
    ok(&c, &["delete", "deployment", "web", "--cascade=foreground"]).await;
    wait_for(&c, Duration::from_secs(30), "the Deployment, ReplicaSet and pods gone", || async {
        let none = deploys.get_opt("web").await.ok()?.is_none()
            && rss.list(&ListParams::default().labels("app=web")).await.ok()?.items.is_empty()
            && pods.list(&ListParams::default().labels("app=web")).await.ok()?.items.is_empty();
        none.then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    assert!(violations.lock().unwrap_or_else(|p| p.into_inner()).is_empty(), "a pod outlived its foreground-deleted Deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_is_emptied_then_finalized_and_every_namespace_has_a_default_account() {
    let c = control_plane(&[], &[], 1);
    ready_nodes(&c, 1).await;
    let client = c.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let pp = PostParams::default();
    // The apiserver only marks a namespace with finalizers: the namespace controller empties it.
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": "doomed", "finalizers": ["example.com/hold"]}, "spec": {"finalizers": ["kubernetes"]}}),
    )
    .unwrap_or_default();
    nss.create(&pp, &ns).await.ok();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    wait_for(&c, Duration::from_secs(30), "the default ServiceAccount", || async { sas.get_opt("default").await.ok()?.map(|_| ()) }).await;
    sas.delete("default", &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(30), "the default ServiceAccount back", || async {
        let sa = sas.get_opt("default").await.ok()??;
        sa.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;
    Api::<ConfigMap>::namespaced(client.clone(), "doomed").create(&pp, &cm("data", json!([]), &[])).await.ok();
    apply(&c, &DEPLOY.replace("namespace: default", "namespace: doomed")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    wait_for(&c, Duration::from_secs(30), "pods in the namespace", || async {
        (pods.list(&ListParams::default()).await.ok()?.items.len() == 2).then_some(())
    })
    .await;

    nss.delete("doomed", &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(60), "the namespace emptied and finalized", || async {
        let n = nss.get_opt("doomed").await.ok()??;
        let st = n.status.clone()?;
        let remaining = st.conditions.iter().flatten().find(|c| c.type_ == "NamespaceContentRemaining").map(|c| c.status.clone());
        let finalized = !n.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default().iter().any(|f| f == "kubernetes");
        let empty = Api::<ConfigMap>::namespaced(client.clone(), "doomed").list(&ListParams::default()).await.ok()?.items.is_empty()
            && Api::<Deployment>::namespaced(client.clone(), "doomed").list(&ListParams::default()).await.ok()?.items.is_empty()
            && pods.list(&ListParams::default()).await.ok()?.items.is_empty();
        (st.phase.as_deref() == Some("Terminating") && remaining.as_deref() == Some("False") && finalized && empty).then_some(())
    })
    .await;
    // The hold released, the namespace goes.
    nss.patch("doomed", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.ok();
    wait_for(&c, Duration::from_secs(30), "the namespace gone", || async { nss.get_opt("doomed").await.ok()?.is_none().then_some(()) })
        .await;
}
