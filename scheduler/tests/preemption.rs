//! Black-box: a higher-priority pod that fits nowhere evicts a lower-priority one and takes
//! its place; a pod of equal priority or with `preemptionPolicy: Never` evicts nothing.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use keel_testkit::Cluster;
use kube::Api;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_priority_one() {
    let mut cluster = Cluster::start();
    let client = cluster.client().await;
    create_node(&client, &node("only", "2", "4Gi", json!({}), json!({}))).await;
    // Priorities come from PriorityClasses (the apiserver's Priority admission fills spec.priority).
    let classes = Api::<PriorityClass>::all(client.clone());
    for (name, value, policy) in
        [("low", 10, "PreemptLowerPriority"), ("high", 1000, "PreemptLowerPriority"), ("high-never", 1000, "Never")]
    {
        let class =
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value, "preemptionPolicy": policy})).expect("a class");
        classes.create(&Default::default(), &class).await.expect("create priorityclass");
    }
    start_scheduler(&mut cluster, &[]);
    create_pod(&client, &pod("low", "1500m", json!({"priorityClassName": "low"}))).await;
    assert_eq!(wait_bound(&client, "low", WAIT).await.as_deref(), Some("only"), "{}", cluster.logs());

    // Same priority: nothing to evict, the pod waits and says why.
    create_pod(&client, &pod("peer", "1500m", json!({"priorityClassName": "low"}))).await;
    let out = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["describe", "pod", "peer"]);
        out.contains("No preemption victims found for incoming pod").then_some(out)
    });
    assert!(out.is_some(), "{}", cluster.logs());
    // Higher priority but preemptionPolicy Never: not eligible.
    create_pod(&client, &pod("polite", "1500m", json!({"priorityClassName": "high-never"}))).await;
    let out = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["describe", "pod", "polite"]);
        out.contains("preemption: not eligible due to preemptionPolicy=Never.").then_some(out)
    });
    assert!(out.is_some(), "{}", cluster.logs());
    assert_eq!(node_of(&client, "low").await.as_deref(), Some("only"), "nobody evicted low yet");
    cluster.ok(&["delete", "pod", "polite", "peer"]);

    // Higher priority: low is evicted (gracefully: it terminates until its kubelet's final
    // delete, which this test, having no kubelet, makes), then the preemptor binds there.
    create_pod(&client, &pod("urgent", "1500m", json!({"priorityClassName": "high"}))).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let terminating = keel_testkit::eventually_async(WAIT, || {
        let pods = pods.clone();
        async move { pods.get_opt("low").await.ok().flatten().filter(|p| p.metadata.deletion_timestamp.is_some()).map(|_| ()) }
    })
    .await;
    assert!(terminating.is_some(), "the victim was deleted\n{}", cluster.logs());
    assert_eq!(node_of(&client, "urgent").await, None, "urgent waits while its victim terminates");
    cluster.ok(&["delete", "pod", "low", "--grace-period=0", "--force"]);
    assert_eq!(wait_bound(&client, "urgent", WAIT).await.as_deref(), Some("only"), "{}", cluster.logs());
    let events = cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=low",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(events.contains("Preempted: Preempted by pod"), "the victim's event says why:\n{events}");
    let described = cluster.ok(&["describe", "pod", "urgent"]);
    assert!(described.contains("Successfully assigned default/urgent to only"), "{described}");
}
