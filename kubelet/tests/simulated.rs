//! Simulated nodes: one keel-kubelet process hosting several nodes with their own Leases and
//! status; pods run by their annotations; eviction under memory pressure goes BestEffort first.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{jsonpath, wait_for};
use keel_testkit::Cluster;

#[test]
fn simulated_nodes_register_heartbeat_run_pods_and_evict_best_effort_first() {
    let mut c = Cluster::start();
    c.spawn(
        "keel-kubelet",
        true,
        &[
            "--simulated-nodes",
            "3",
            "--hostname-override",
            "hollow",
            "--simulated-memory",
            "1Gi",
            "--port",
            "0",
            "--root-dir",
            &c.path("sim-root").to_string_lossy(),
            "--sync-frequency",
            "500ms",
            "--node-status-update-frequency",
            "1s",
        ],
    );
    for n in ["hollow-0", "hollow-1", "hollow-2"] {
        wait_for(&c, 30, &format!("{n} Ready"), || {
            (jsonpath(&c, &["node", n], "{.status.conditions[?(@.type==\"Ready\")].status}") == "True").then_some(())
        });
        wait_for(&c, 30, &format!("{n}'s Lease"), || {
            (jsonpath(&c, &["lease", "-n", "kube-node-lease", n], "{.spec.holderIdentity}") == n).then_some(())
        });
    }
    assert_eq!(jsonpath(&c, &["node", "hollow-1"], "{.spec.podCIDR}"), "10.128.1.0/24");
    assert_eq!(jsonpath(&c, &["node", "hollow-1"], "{.status.capacity.memory}"), "1048576Ki");

    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: done, annotations: {sim.keel.dev/exit-after: 1s}}
spec: {nodeName: hollow-1, restartPolicy: Never, containers: [{name: c, image: img}]}
---
apiVersion: v1
kind: Pod
metadata: {name: unready, annotations: {sim.keel.dev/fail-readiness: "true"}}
spec:
  nodeName: hollow-1
  containers: [{name: c, image: img, readinessProbe: {exec: {command: [x]}, periodSeconds: 1}}]
---
apiVersion: v1
kind: Pod
metadata: {name: hog, annotations: {sim.keel.dev/memory: 700Mi}}
spec: {nodeName: hollow-2, containers: [{name: c, image: img}]}
---
apiVersion: v1
kind: Pod
metadata: {name: modest, annotations: {sim.keel.dev/memory: 300Mi}}
spec: {nodeName: hollow-2, containers: [{name: c, image: img, resources: {requests: {memory: 100Mi}}}]}
"#,
        &[],
    );
    wait_for(&c, 30, "pod done Succeeded", || (jsonpath(&c, &["pod", "done"], "{.status.phase}") == "Succeeded").then_some(()));
    assert_eq!(jsonpath(&c, &["pod", "done"], "{.status.containerStatuses[0].state.terminated.reason}"), "Completed");
    wait_for(&c, 30, "pod unready Running", || (jsonpath(&c, &["pod", "unready"], "{.status.phase}") == "Running").then_some(()));
    assert_eq!(jsonpath(&c, &["pod", "unready"], "{.status.conditions[?(@.type==\"Ready\")].status}"), "False");
    assert!(jsonpath(&c, &["pod", "unready"], "{.status.podIP}").starts_with("10.128.1."));

    // 700Mi + 300Mi on a 1Gi node leaves less than 100Mi: the BestEffort pod goes first.
    wait_for(&c, 40, "hog evicted", || (jsonpath(&c, &["pod", "hog"], "{.status.reason}") == "Evicted").then_some(()));
    assert_eq!(jsonpath(&c, &["pod", "hog"], "{.status.phase}"), "Failed");
    assert!(jsonpath(&c, &["pod", "hog"], "{.status.message}").starts_with("The node was low on resource: memory."));
    assert_eq!(jsonpath(&c, &["pod", "modest"], "{.status.phase}"), "Running");
    assert_eq!(jsonpath(&c, &["pod", "modest"], "{.status.qosClass}"), "Burstable");
}

/// What the node lifecycle controller writes while a kubelet is cut off (Ready Unknown on the
/// Node, Ready False on its pods) is put back by the kubelet once it looks again, as kube's
/// kubelet does (it compares with the apiserver's copy, not with what it last posted).
#[test]
fn readiness_the_controller_took_away_is_put_back_by_the_kubelet() {
    let mut c = Cluster::start();
    c.spawn(
        "keel-kubelet",
        true,
        &[
            "--simulated-nodes",
            "1",
            "--hostname-override",
            "back",
            "--port",
            "0",
            "--root-dir",
            &c.path("sim-root").to_string_lossy(),
            "--sync-frequency",
            "500ms",
            "--node-status-update-frequency",
            "1s",
        ],
    );
    let ready = |what: &[&str]| jsonpath(&c, what, "{.status.conditions[?(@.type==\"Ready\")].status}");
    wait_for(&c, 30, "back-0 Ready", || (ready(&["node", "back-0"]) == "True").then_some(()));
    c.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: back-0, containers: [{name: c, image: img}]}\n", &[]);
    wait_for(&c, 30, "pod p Ready", || (ready(&["pod", "p"]) == "True").then_some(()));

    // As the node lifecycle controller does after the grace period: the Node's conditions
    // replaced by Unknown ones, the pod's Ready condition alone set False (a strategic merge
    // by condition type keeps the others, as its status update does).
    let unknown = r#"{"status":{"conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status."}]}}"#;
    c.ok(&["patch", "node", "back-0", "--subresource=status", "--type=merge", "-p", unknown]);
    let not_ready = r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#;
    c.ok(&["patch", "pod", "p", "--subresource=status", "--type=strategic", "-p", not_ready]);
    assert_eq!(jsonpath(&c, &["pod", "p"], "{.status.conditions[?(@.type==\"PodScheduled\")].status}"), "True", "only Ready was patched");

    // Well inside the 5-minute report frequency: only a kubelet that compares with the
    // apiserver's copy writes again this soon.
    wait_for(&c, 30, "back-0 Ready again", || (ready(&["node", "back-0"]) == "True").then_some(()));
    wait_for(&c, 30, "pod p Ready again", || (ready(&["pod", "p"]) == "True").then_some(()));
}
