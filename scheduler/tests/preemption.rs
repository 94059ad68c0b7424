//! Black-box: a higher-priority pod that fits nowhere evicts a lower-priority one and takes
//! its place; a pod of equal priority or with `preemptionPolicy: Never` evicts nothing.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
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
    start_scheduler(&mut cluster, &[]);
    create_pod(&client, &pod("low", "1500m", json!({"priority": 10}))).await;
    assert_eq!(wait_bound(&client, "low", WAIT).await.as_deref(), Some("only"), "{}", cluster.logs());

    // Same priority: nothing to evict, the pod waits and says why.
    create_pod(&client, &pod("peer", "1500m", json!({"priority": 10}))).await;
    let out = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["describe", "pod", "peer"]);
        out.contains("No preemption victims found for incoming pod").then_some(out)
    });
    assert!(out.is_some(), "{}", cluster.logs());
    // Higher priority but preemptionPolicy Never: not eligible.
    create_pod(&client, &pod("polite", "1500m", json!({"priority": 1000, "preemptionPolicy": "Never"}))).await;
    let out = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["describe", "pod", "polite"]);
        out.contains("preemption: not eligible due to preemptionPolicy=Never.").then_some(out)
    });
    assert!(out.is_some(), "{}", cluster.logs());
    assert_eq!(node_of(&client, "low").await.as_deref(), Some("only"), "nobody evicted low yet");
    cluster.ok(&["delete", "pod", "polite", "peer"]);

    // Higher priority: low is evicted, the preemptor is nominated and then bound there.
    create_pod(&client, &pod("urgent", "1500m", json!({"priority": 1000}))).await;
    assert_eq!(wait_bound(&client, "urgent", WAIT).await.as_deref(), Some("only"), "{}", cluster.logs());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let gone = keel_testkit::eventually_async(WAIT, || {
        let pods = pods.clone();
        async move { pods.get_opt("low").await.ok().map(|p| p.is_none()).filter(|gone| *gone) }
    })
    .await;
    assert!(gone.is_some(), "the victim was deleted");
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
