//! Deletion as Kubernetes splits it between the apiserver and the controller-manager: a DELETE
//! leaves the `orphan` / `foregroundDeletion` finalizers its
//! propagation asks for, a namespace goes Terminating until `namespaces/<name>/finalize` takes
//! its last finalizer, nothing is created in a terminating namespace, and the built-in
//! namespaces cannot be deleted.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_leaves_the_finalizers_its_propagation_asks_for() {
    let s = support::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    let finalizers = |c: &ConfigMap| c.metadata.finalizers.clone().unwrap_or_default();
    for (name, policy, want) in [("o", PropagationPolicy::Orphan, "orphan"), ("f", PropagationPolicy::Foreground, "foregroundDeletion")] {
        cms.create(&PostParams::default(), &cm(name)).await.expect("create");
        let dp = DeleteParams { propagation_policy: Some(policy), ..Default::default() };
        let kept = cms.delete(name, &dp).await.expect("delete").left().expect("still there, for the collector");
        assert_eq!(finalizers(&kept), vec![want.to_string()]);
        assert!(kept.metadata.deletion_timestamp.is_some());
    }
    // The collector's last step: removing the finalizer deletes the object.
    let done = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    cms.patch("o", &PatchParams::default(), &done).await.expect("finalized");
    assert_eq!(api_error(cms.get("o").await).code, 404);
    // A second DELETE with the other policy swaps the finalizers.
    let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() };
    let swapped = cms.delete("f", &orphan).await.expect("again").left().expect("still there");
    assert_eq!(finalizers(&swapped), vec!["orphan".to_string()]);
    cms.create(&PostParams::default(), &cm("b")).await.expect("create b");
    cms.delete("b", &DeleteParams::background()).await.expect("delete b");
    assert_eq!(api_error(cms.get("b").await).code, 404, "Background: gone now, the collector follows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_terminates_until_its_finalizers_go_and_refuses_new_content() {
    let s = support::start().await;
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("shop".into());
    namespaces.create(&PostParams::default(), &ns).await.expect("namespace");
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "shop");
    cms.create(&PostParams::default(), &cm("kept")).await.expect("content");
    let terminating = namespaces.delete("shop", &DeleteParams::default()).await.expect("delete").left().expect("terminating");
    assert_eq!(terminating.status.and_then(|st| st.phase).as_deref(), Some("Terminating"));
    assert!(cms.get("kept").await.is_ok(), "its content is the namespace controller's to delete");
    let refused = api_error(cms.create(&PostParams::default(), &cm("new")).await);
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        refused.message,
        "configmaps \"new\" is forbidden: unable to create new content in namespace shop because it is being terminated"
    );
    let cause = refused.details.and_then(|d| d.causes.into_iter().next()).map(|c| c.reason);
    assert_eq!(cause.as_deref(), Some("NamespaceTerminating"));
    // An update keeps spec.finalizers; only finalize changes them, and the last one deletes it.
    let keep = Patch::Merge(json!({"spec": {"finalizers": []}}));
    let still = namespaces.patch("shop", &PatchParams::default(), &keep).await.expect("patch");
    assert_eq!(still.spec.and_then(|sp| sp.finalizers), Some(vec!["kubernetes".to_string()]));
    let finalize = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}, "spec": {"finalizers": []}});
    let req = http::Request::put("/api/v1/namespaces/shop/finalize")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&finalize).expect("json"))
        .expect("request");
    let _: serde_json::Value = s.client.request(req).await.expect("finalize");
    assert_eq!(api_error(namespaces.get("shop").await).code, 404, "gone with its last finalizer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_namespaces_cannot_be_deleted() {
    let s = support::start().await;
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    for name in ["default", "kube-system", "kube-public"] {
        let e = api_error(namespaces.delete(name, &DeleteParams::default()).await);
        assert_eq!((e.code, e.message), (403, format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")));
    }
    assert!(namespaces.get("kube-node-lease").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_is_reported_before_other_admission() {
    let s = support::start().await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.client.clone(), "nowhere");
    // The PriorityClass does not exist either: NamespaceLifecycle runs first, as in kube.
    let pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"priorityClassName": "gold", "containers": [{"name": "c", "image": "busybox"}]}}))
    .expect("pod");
    let e = api_error(pods.create(&PostParams::default(), &pod).await);
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (404, "NotFound", "namespaces \"nowhere\" not found"));
}
