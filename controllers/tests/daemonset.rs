//! The DaemonSet controller through the real apiserver: one pod per node, a node added later
//! gets one, a tainted node does not, `kubectl rollout status` and a rolling image update.

mod common;

use common::{FakeKubelet, apply, cluster, kubectl, ok, wait_for};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use keel_controllers::daemonset::eligibility::REVISION_HASH;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: "agent:1"}]}
"#;

async fn by_node(pods: &Api<Pod>) -> BTreeMap<String, Vec<Pod>> {
    let mut m: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in pods.list(&ListParams::default().labels("app=agent")).await.map(|l| l.items).unwrap_or_default() {
        if p.metadata.deletion_timestamp.is_none() {
            m.entry(p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()).or_default().push(p);
        }
    }
    m
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_one_pod_per_eligible_node_and_rolls_updates() {
    let c = cluster(&[]);
    let kubelet = FakeKubelet::start(c.kubeconfig.clone(), &["node-1", "node-2"]);
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    wait_for(&c, Duration::from_secs(20), "two nodes", || async {
        (nodes.list(&ListParams::default()).await.ok()?.items.len() == 2).then_some(())
    })
    .await;
    apply(&c, DS).await;
    let out = kubectl(&c, &["rollout", "status", "daemonset/agent", "--timeout=60s"]).await;
    assert!(out.status.success(), "{}{}", keel_testkit::text(&out.stdout), keel_testkit::text(&out.stderr));
    let m = by_node(&pods).await;
    assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["node-1", "node-2"]);
    assert!(m.values().all(|v| v.len() == 1));
    let tolerations = m["node-1"][0].spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    assert!(tolerations.iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")), "daemon tolerations added");

    // A tainted node (created with its taint) gets no pod; a plain one added later does.
    let tainted: Node = serde_json::from_value(json!({
        "metadata": {"name": "node-4"},
        "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}
    }))
    .unwrap_or_default();
    nodes.create(&PostParams::default(), &tainted).await.ok();
    kubelet.add_node("node-4");
    kubelet.add_node("node-3");
    wait_for(&c, Duration::from_secs(30), "a pod on node-3, none on node-4", || async {
        let m = by_node(&pods).await;
        let ds = dss.get("agent").await.ok()?;
        let st = ds.status?;
        (m.contains_key("node-3") && !m.contains_key("node-4") && st.desired_number_scheduled == 3 && st.number_ready == 3).then_some(())
    })
    .await;

    // A new image rolls node by node (maxUnavailable 1) until every pod has the new revision.
    ok(&c, &["set", "image", "daemonset/agent", "c=agent:2"]).await;
    let out = kubectl(&c, &["rollout", "status", "daemonset/agent", "--timeout=60s"]).await;
    assert!(out.status.success(), "{}{}\n{}", keel_testkit::text(&out.stdout), keel_testkit::text(&out.stderr), c.logs());
    let m = by_node(&pods).await;
    assert_eq!(m.len(), 3);
    let hashes: std::collections::BTreeSet<String> =
        m.values().flatten().filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH).cloned()).collect();
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    assert!(m.values().flatten().all(|p| image(p) == "agent:2"));
}
