//! Black-box: keel-store, keel-apiserver and keel-scheduler as processes, nodes created
//! through the API. Every placement rule users rely on, the explanation of a refusal in
//! `kubectl describe pod`, and a pending pod scheduling by itself once a fitting node appears.

mod common;

use common::*;
use keel_testkit::Cluster;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_only_where_their_constraints_allow_and_refusals_are_explained() {
    let mut cluster = Cluster::start();
    let client = cluster.client().await;
    for n in [
        node("small", "1", "2Gi", json!({"size": "small"}), json!({})),
        node("big", "8", "16Gi", json!({"zone": "a", "disk": "ssd", "cores": "8"}), json!({})),
        node("cordoned", "64", "64Gi", json!({}), json!({"unschedulable": true})),
        node(
            "gpu",
            "64",
            "64Gi",
            json!({"gpu": "true"}),
            json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
        ),
        node("notready", "64", "64Gi", json!({}), json!({"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]})),
    ] {
        create_node(&client, &n).await;
    }
    let (i, base) = start_scheduler(&mut cluster, &["--seed", "1"]);

    // Requests: 4 cores fit only on big (small is too small; the others are closed to plain pods).
    create_pod(&client, &pod("needs-4-cores", "4", json!({}))).await;
    // A pod naming its node is left alone and counted there, even on a cordoned node.
    create_pod(&client, &pod("named", "1", json!({"nodeName": "cordoned"}))).await;
    // Tolerations open the tainted node; nodeSelector then requires it.
    create_pod(&client, &pod("tolerates-gpu", "1", json!({"nodeSelector": {"gpu": "true"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}))).await;
    create_pod(&client, &pod("selector-ssd", "100m", json!({"nodeSelector": {"disk": "ssd"}}))).await;
    create_pod(
        &client,
        &pod(
            "affinity-gt",
            "100m",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}),
        ),
    )
    .await;
    create_pod(
        &client,
        &pod(
            "prefers-small",
            "100m",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [{"key": "size", "operator": "In", "values": ["small"]}]}}]}}}),
        ),
    )
    .await;
    for (pod, want) in [
        ("needs-4-cores", "big"),
        ("named", "cordoned"),
        ("tolerates-gpu", "gpu"),
        ("selector-ssd", "big"),
        ("affinity-gt", "big"),
        ("prefers-small", "small"),
    ] {
        let got = wait_bound(&client, pod, WAIT).await;
        assert_eq!(got.as_deref(), Some(want), "{pod}\n{}", cluster.logs());
    }

    // Requests fit or not: small has 1 core, prefers-small holds 100m of it.
    create_pod(&client, &pod("small-900m", "900m", json!({"nodeSelector": {"size": "small"}}))).await;
    create_pod(&client, &pod("small-200m", "200m", json!({"nodeSelector": {"size": "small"}}))).await;
    assert_eq!(wait_bound(&client, "small-900m", WAIT).await.as_deref(), Some("small"));

    // Fits nowhere: explained per node, the kube-scheduler way.
    create_pod(&client, &pod("huge", "100", json!({}))).await;
    let want = "0/5 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/5 nodes are available: 2 No preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling..";
    let described = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["describe", "pod", "huge"]);
        out.contains("FailedScheduling").then_some(out)
    })
    .unwrap_or_else(|| panic!("no FailedScheduling event\n{}", cluster.logs()));
    assert!(described.contains(want), "describe shows the reasons:\n{described}");
    assert!(described.contains("default-scheduler"), "the event is from default-scheduler:\n{described}");
    let condition = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["get", "pod", "huge", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}"]);
        (out == "Unschedulable").then_some(out)
    });
    assert!(condition.is_some(), "PodScheduled=False, reason Unschedulable");
    let still = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["describe", "pod", "small-200m"]);
        out.contains("Insufficient cpu").then_some(out)
    });
    assert!(still.is_some(), "the second pod on small does not fit next to the first");
    assert_eq!(node_of(&client, "small-200m").await, None);

    // A pod with an affinity the apiserver let through but no node can be judged by: an event,
    // no crash.
    create_pod(
        &client,
        &pod(
            "bad-affinity",
            "",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["many"]}]}]}}}}),
        ),
    )
    .await;
    let bad = keel_testkit::eventually(WAIT, || {
        let out = cluster.ok(&["describe", "pod", "bad-affinity"]);
        out.contains("must be an integer").then_some(out)
    });
    assert!(bad.is_some(), "the malformed affinity is explained in an event\n{}", cluster.logs());

    // A fitting node appears: the pending pod schedules by itself.
    create_node(&client, &node("huge-node", "128", "256Gi", json!({}), json!({}))).await;
    assert_eq!(wait_bound(&client, "huge", WAIT).await.as_deref(), Some("huge-node"), "{}", cluster.logs());
    let described = cluster.ok(&["describe", "pod", "huge"]);
    assert!(described.contains("Successfully assigned default/huge to huge-node"), "{described}");

    // Nothing landed where it should not: only tolerating pods on the tainted nodes, only the
    // named pod on the cordoned one.
    let placed = cluster.ok(&["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName} {end}"]);
    for pair in placed.split_whitespace() {
        let (pod, node) = pair.split_once('=').unwrap_or((pair, ""));
        match node {
            "gpu" => assert_eq!(pod, "tolerates-gpu"),
            "cordoned" => assert_eq!(pod, "named"),
            "notready" => panic!("{pod} landed on the not-ready node"),
            _ => {}
        }
    }

    // The process is healthy and counts what it did.
    assert_eq!(curl(&format!("{base}/healthz")), "ok");
    assert_eq!(curl(&format!("{base}/readyz")), "ok");
    let metrics = curl(&format!("{base}/metrics"));
    for want in [
        "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"}",
        "scheduler_pending_pods{queue=\"unschedulable\"}",
        "scheduler_e2e_scheduling_duration_seconds_count",
        "scheduler_binds_total{holder=",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
    assert!(cluster.components[i].running(), "the scheduler is still running");
}
