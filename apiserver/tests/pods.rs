//! Pods as Kubernetes treats them, through kube-rs: binding sets `PodScheduled` and honours a uid
//! precondition, the spec is immutable but for what kube allows, and deletion is graceful for a
//! bound pod until its kubelet's final delete (grace 0, uid precondition); eviction and
//! deletecollection delete the same way.

mod support;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

fn pod(name: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.spec = Some(PodSpec {
        containers: vec![Container { name: "c".into(), image: Some("busybox:1".into()), ..Default::default() }],
        ..Default::default()
    });
    p
}

async fn bind(pods: &Api<Pod>, name: &str, node: &str, uid: Option<&str>) -> Result<serde_json::Value, kube::Error> {
    let mut b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": node}});
    if let Some(u) = uid {
        b["metadata"]["uid"] = json!(u);
    }
    pods.create_subresource("binding", name, &PostParams::default(), &b).await
}

fn code(r: &Result<impl std::fmt::Debug, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_sets_pod_scheduled_and_honours_a_uid_precondition() {
    let s = support::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let p = pods.create(&PostParams::default(), &pod("p")).await.expect("create");
    assert_eq!(code(&bind(&pods, "p", "n1", Some("not-its-uid")).await), 409, "another pod's binding");
    bind(&pods, "p", "n1", p.metadata.uid.as_deref()).await.expect("bind");
    let bound = pods.get("p").await.expect("get");
    assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
    let cond = bound.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "PodScheduled");
    assert_eq!(cond.map(|c| (c.status, c.last_transition_time.is_some())), Some(("True".to_string(), true)));
    let again = bind(&pods, "p", "n2", None).await;
    assert!(
        matches!(&again, Err(kube::Error::Api(e)) if e.code == 409 && e.message.contains("already assigned to node \"n1\"")),
        "{again:?}"
    );
    let bad = bind(&pods, "p", "", None).await;
    assert_eq!(code(&bad), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_spec_is_immutable_except_what_kubernetes_allows_and_create_resets_status() {
    let s = support::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let mut sent = pod("p");
    sent.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.0.0.9".into()),
        ..Default::default()
    });
    let created = pods.create(&PostParams::default(), &sent).await.expect("create");
    let status = created.status.clone().unwrap_or_default();
    assert_eq!((status.phase.as_deref(), status.pod_ip, status.qos_class.as_deref()), (Some("Pending"), None, Some("BestEffort")));
    let image = Patch::Strategic(json!({"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}));
    let patched = pods.patch("p", &PatchParams::default(), &image).await.expect("images change");
    assert_eq!(patched.spec.and_then(|s| s.containers[0].image.clone()).as_deref(), Some("busybox:2"));
    let node = Patch::Merge(json!({"spec": {"nodeName": "n1"}}));
    let refused = pods.patch("p", &PatchParams::default(), &node).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains("pod updates may not change fields other than")),
        "{refused:?}"
    );
    let restart = Patch::Merge(json!({"spec": {"restartPolicy": "Never"}}));
    assert_eq!(code(&pods.patch("p", &PatchParams::default(), &restart).await), 422);
    // The status subresource writes status, and the spec stays.
    let running = Patch::Merge(json!({"status": {"phase": "Running"}}));
    let st = pods.patch_status("p", &PatchParams::default(), &running).await.expect("status");
    assert_eq!(st.status.and_then(|s| s.phase).as_deref(), Some("Running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_pod_terminates_gracefully_until_its_kubelets_final_delete() {
    let s = support::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let p = pods.create(&PostParams::default(), &pod("p")).await.expect("create");
    bind(&pods, "p", "n1", None).await.expect("bind");
    let deleting = pods.delete("p", &DeleteParams::default()).await.expect("delete").left().expect("the pod, still there");
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(30), "the pod's terminationGracePeriodSeconds");
    let at = deleting.metadata.deletion_timestamp.clone().expect("a deletionTimestamp").0;
    // The kubelet reports status while the pod terminates: an update does not delete it.
    let stopping = Patch::Merge(json!({"status": {"phase": "Running", "message": "stopping"}}));
    pods.patch_status("p", &PatchParams::default(), &stopping).await.expect("status while terminating");
    assert!(pods.get("p").await.is_ok(), "still there after an update");
    // Deleting again does not move the deadline; a shorter grace does.
    let again = pods.delete("p", &DeleteParams::default()).await.expect("again").left().expect("still there");
    assert_eq!(again.metadata.deletion_timestamp.map(|t| t.0), Some(at));
    let shorter = pods.delete("p", &DeleteParams::default().grace_period(10)).await.expect("shorter").left().expect("still there");
    assert_eq!(shorter.metadata.deletion_grace_period_seconds, Some(10));
    // The kubelet's final delete: grace 0 with the pod's uid as precondition.
    let wrong = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some("other".into()), resource_version: None }),
        ..Default::default()
    };
    assert_eq!(code(&pods.delete("p", &wrong).await), 409);
    let last = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: p.metadata.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    pods.delete("p", &last).await.expect("final delete");
    assert_eq!(code(&pods.get("p").await), 404);
    // A pod no node runs is deleted at once.
    pods.create(&PostParams::default(), &pod("q")).await.expect("create q");
    pods.delete("q", &DeleteParams::default()).await.expect("delete q");
    assert_eq!(code(&pods.get("q").await), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_and_deletecollection_delete_bound_pods_gracefully() {
    let s = support::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    for n in ["a", "b", "c"] {
        pods.create(&PostParams::default(), &pod(n)).await.expect("create");
    }
    bind(&pods, "a", "n1", None).await.expect("bind a");
    bind(&pods, "b", "n1", None).await.expect("bind b");
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "a"}});
    let _: serde_json::Value = pods.create_subresource("eviction", "a", &PostParams::default(), &eviction).await.expect("evict");
    let a = pods.get("a").await.expect("a is terminating");
    assert_eq!(a.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete_collection(&DeleteParams::default(), &ListParams::default()).await.expect("deletecollection");
    let left: Vec<(String, bool)> = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|p| (p.metadata.name.unwrap_or_default(), p.metadata.deletion_timestamp.is_some()))
        .collect();
    assert_eq!(left, vec![("a".to_string(), true), ("b".to_string(), true)], "the unbound pod went at once, the bound ones terminate");
    let now = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "b"}, "deleteOptions": {"gracePeriodSeconds": 0}});
    let _: serde_json::Value = pods.create_subresource("eviction", "b", &PostParams::default(), &now).await.expect("evict b now");
    assert_eq!(code(&pods.get("b").await), 404);
}
