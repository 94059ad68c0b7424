//! Pod lifecycle on the Linux runtime: init containers, restart back-off into CrashLoopBackOff,
//! liveness restarts, deletion with SIGTERM then SIGKILL after the grace period, static pods
//! and their mirror pods.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Certs, Host, free_port, jsonpath, wait_for};
use keel_testkit::Cluster;
use std::collections::BTreeSet;

#[test]
fn crash_loops_back_off_liveness_restarts_deletion_is_graceful_and_static_pods_are_mirrored() {
    let host = Host::new(2);
    let certs = Certs::new(&host.path("certs"));
    let manifests = host.path("manifests");
    let markers = host.path("markers");
    let mut c = Cluster::start();
    let port = free_port();
    let flags = host.flags("n2", port, &certs, &manifests);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    c.spawn("keel-kubelet", true, &flags);
    wait_for(&c, 30, "node Ready", || {
        (jsonpath(&c, &["node", "n2"], "{.status.conditions[?(@.type==\"Ready\")].status}") == "True").then_some(())
    });

    let pods = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  nodeName: n2
  containers: [{{name: c, image: busybox, command: [sh, -c, 'echo crashing; exit 3']}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  nodeName: n2
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600']
    livenessProbe: {{exec: {{command: [test, -f, /tmp/healthy]}}, periodSeconds: 1, failureThreshold: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: init}}
spec:
  nodeName: n2
  initContainers:
  - {{name: first, image: busybox, command: [sh, -c, 'echo one > /work/log'], volumeMounts: [{{name: w, mountPath: /work}}]}}
  - {{name: second, image: busybox, command: [sh, -c, 'echo two >> /work/log'], volumeMounts: [{{name: w, mountPath: /work}}]}}
  containers:
  - {{name: main, image: busybox, command: [sh, -c, 'cat /work/log; sleep 3600'], volumeMounts: [{{name: w, mountPath: /work}}]}}
  volumes: [{{name: w, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: missing}}
spec:
  nodeName: n2
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
    env: [{{name: X, valueFrom: {{configMapKeyRef: {{name: nope, key: k}}}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: polite}}
spec:
  nodeName: n2
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap "echo TERM > /markers/polite; exit 0" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{{name: m, mountPath: /markers}}]
  volumes: [{{name: m, hostPath: {{path: {markers}}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  nodeName: n2
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap "echo TERM > /markers/stubborn" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{{name: m, mountPath: /markers}}]
  volumes: [{{name: m, hostPath: {{path: {markers}}}}}]
"#,
        markers = markers.display()
    );
    c.apply(&pods, &[]);

    // Crash loop: restarts with growing back-off windows, then CrashLoopBackOff.
    let mut windows = BTreeSet::new();
    wait_for(&c, 50, "growing back-off windows", || {
        let msg = jsonpath(&c, &["pod", "crash"], "{.status.containerStatuses[0].state.waiting.message}");
        if let Some(w) = msg
            .strip_prefix("back-off ")
            .and_then(|m| m.split_whitespace().next())
            .and_then(|w| w.strip_suffix('s'))
            .and_then(|w| w.parse::<u32>().ok())
        {
            windows.insert(w);
        }
        (windows.len() >= 3).then_some(())
    });
    let w: Vec<u32> = windows.iter().copied().collect();
    assert!(w.windows(2).all(|p| p[1] == 2 * p[0]), "each window doubles: {w:?}");
    assert_eq!(jsonpath(&c, &["pod", "crash"], "{.status.containerStatuses[0].state.waiting.reason}"), "CrashLoopBackOff");
    assert_eq!(jsonpath(&c, &["pod", "crash"], "{.status.containerStatuses[0].lastState.terminated.exitCode}"), "3");
    assert!(jsonpath(&c, &["pod", "crash"], "{.status.containerStatuses[0].restartCount}").parse::<u32>().unwrap_or(0) >= 3);
    let (_, prev) = certs.curl(port, "/containerLogs/default/crash/c?previous=true", &[]);
    assert_eq!(prev, "crashing\n");

    // Liveness: a failing probe restarts the container.
    wait_for(&c, 40, "live restarted", || {
        (jsonpath(&c, &["pod", "live"], "{.status.containerStatuses[0].restartCount}").parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=live", "-o", "jsonpath={.items[*].message}"]);
    assert!(events.contains("failed liveness probe, will be restarted"), "{events}");

    // Init containers ran in order before the main container.
    wait_for(&c, 30, "init main logs", || (certs.curl(port, "/containerLogs/default/init/main", &[]).1 == "one\ntwo\n").then_some(()));
    assert_eq!(jsonpath(&c, &["pod", "init"], "{.status.conditions[?(@.type==\"Initialized\")].status}"), "True");
    assert_eq!(jsonpath(&c, &["pod", "init"], "{.status.initContainerStatuses[1].state.terminated.reason}"), "Completed");

    // A configMap that does not exist: a clear waiting reason.
    wait_for(&c, 30, "missing waits", || {
        (jsonpath(&c, &["pod", "missing"], "{.status.containerStatuses[0].state.waiting.reason}") == "CreateContainerConfigError")
            .then_some(())
    });
    assert_eq!(jsonpath(&c, &["pod", "missing"], "{.status.containerStatuses[0].state.waiting.message}"), "configmap \"nope\" not found");

    // Deletion: SIGTERM; the polite process exits on it, the stubborn one is SIGKILLed after its
    // 2 s grace period.
    for p in ["polite", "stubborn"] {
        wait_for(&c, 30, &format!("{p} Running"), || (jsonpath(&c, &["pod", p], "{.status.phase}") == "Running").then_some(()));
    }
    let uids: Vec<String> = ["polite", "stubborn"].iter().map(|p| jsonpath(&c, &["pod", p], "{.metadata.uid}")).collect();
    c.ok(&["delete", "pod", "polite", "stubborn", "--wait=false"]);
    wait_for(&c, 30, "both stopped and cleaned up", || uids.iter().all(|u| !host.root.join("pods").join(u).exists()).then_some(()));
    assert_eq!(std::fs::read_to_string(markers.join("polite")).unwrap_or_default(), "TERM\n");
    assert_eq!(std::fs::read_to_string(markers.join("stubborn")).unwrap_or_default(), "TERM\n", "it got SIGTERM first and ignored it");

    // Static pods: a manifest becomes a mirror pod; deleting the mirror brings it back;
    // removing the file removes it.
    std::fs::write(
        manifests.join("static-web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '3600']\n",
    )
    .expect("write manifest");
    wait_for(&c, 30, "mirror pod Running", || (jsonpath(&c, &["pod", "static-web-n2"], "{.status.phase}") == "Running").then_some(()));
    assert_eq!(jsonpath(&c, &["pod", "static-web-n2"], "{.metadata.ownerReferences[0].kind}"), "Node");
    assert!(!jsonpath(&c, &["pod", "static-web-n2"], "{.metadata.annotations.kubernetes\\.io/config\\.mirror}").is_empty());
    let first_uid = jsonpath(&c, &["pod", "static-web-n2"], "{.metadata.uid}");
    c.ok(&["delete", "pod", "static-web-n2", "--wait=false"]);
    wait_for(&c, 30, "mirror pod recreated", || {
        let uid = jsonpath(&c, &["pod", "static-web-n2"], "{.metadata.uid}");
        (!uid.is_empty() && uid != first_uid).then_some(())
    });
    std::fs::remove_file(manifests.join("static-web.yaml")).expect("remove manifest");
    wait_for(&c, 30, "mirror pod gone", || jsonpath(&c, &["pod", "static-web-n2"], "{.metadata.name}").is_empty().then_some(()));
}
