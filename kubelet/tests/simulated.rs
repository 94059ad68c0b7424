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
