//! The DaemonSet controller with the real scheduler and kubelets: one pod per node, a node whose
//! kubelet starts later gets one, a node registered with a taint does not, `kubectl rollout
//! status` and a rolling image update.

mod common;

use common::{apply, control_plane, kubectl, ok, ready_nodes, spawn_kubelet_named, wait_for};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use keel_controllers::daemonset::eligibility::REVISION_HASH;
use kube::api::{Api, ListParams};
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
    let mut c = control_plane(&[], &[], 2);
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    ready_nodes(&c, 2).await;
    apply(&c, DS).await;
    let out = kubectl(&c, &["rollout", "status", "daemonset/agent", "--timeout=60s"]).await;
    assert!(out.status.success(), "{}{}", keel_testkit::text(&out.stdout), keel_testkit::text(&out.stderr));
    let m = by_node(&pods).await;
    assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["node-0", "node-1"]);
    assert!(m.values().all(|v| v.len() == 1));
    let tolerations = m["node-0"][0].spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    assert!(tolerations.iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")), "daemon tolerations added");

    // A kubelet that registers its node with a taint gets no pod; a plain one started later does.
    spawn_kubelet_named(&mut c, "tainted", 1, &["--register-with-taints", "dedicated=db:NoSchedule"]);
    spawn_kubelet_named(&mut c, "late", 1, &[]);
    ready_nodes(&c, 4).await;
    let taints = nodes.get("tainted-0").await.ok().and_then(|n| n.spec?.taints).unwrap_or_default();
    assert!(taints.iter().any(|t| t.key == "dedicated" && t.effect == "NoSchedule"), "{taints:?}");
    wait_for(&c, Duration::from_secs(30), "a pod on late-0, none on tainted-0", || async {
        let m = by_node(&pods).await;
        let ds = dss.get("agent").await.ok()?;
        let st = ds.status?;
        (m.contains_key("late-0") && !m.contains_key("tainted-0") && st.desired_number_scheduled == 3 && st.number_ready == 3).then_some(())
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
