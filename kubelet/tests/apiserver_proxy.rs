//! kubectl through the apiserver's client to kubelets, end to end: real store, apiserver and
//! kubelet processes, the apiserver started with kube's `--kubelet-client-certificate`,
//! `--kubelet-client-key` and `--kubelet-certificate-authority`, the kubelet with
//! `--client-ca-file` (so every request below went through the apiserver's client certificate).
//! `kubectl logs [-f]`, `kubectl exec` (WebSocket v5 passed through), `nodes/proxy`,
//! `kubectl top`, and graceful deletion from `kubectl delete pod` to the kubelet's final delete.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Certs, Host, free_port, jsonpath, wait_for};
use keel_testkit::{Cluster, text};

/// A cluster whose apiserver reaches kubelets with `certs`' client certificate, and one
/// kubelet `n1` on `host`, Ready.
fn cluster_with_kubelet(host: &Host, certs: &Certs) -> Cluster {
    let (cert, key, ca) = (certs.client_cert.to_string_lossy(), certs.client_key.to_string_lossy(), certs.ca_cert.to_string_lossy());
    let mut c =
        Cluster::start_with(&["--kubelet-client-certificate", &cert, "--kubelet-client-key", &key, "--kubelet-certificate-authority", &ca]);
    let manifests = host.path("manifests");
    let flags = host.flags("n1", free_port(), certs, &manifests);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    c.spawn("keel-kubelet", true, &flags);
    wait_for(&c, 30, "node Ready", || {
        (jsonpath(&c, &["node", "n1"], "{.status.conditions[?(@.type==\"Ready\")].status}") == "True").then_some(())
    });
    c
}

fn running(c: &Cluster, pod: &str) {
    wait_for(c, 45, &format!("{pod} running"), || {
        (!jsonpath(c, &["pod", pod], "{.status.containerStatuses[0].state.running.startedAt}").is_empty()).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_follow_exec_top_and_node_proxy_go_through_the_apiserver_to_the_kubelet() {
    let host = Host::new(3);
    let certs = Certs::new(&host.path("certs"));
    let c = cluster_with_kubelet(&host, &certs);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  nodeName: n1
  containers:
  - name: talker
    image: busybox
    command: [sh, -c, 'echo started; until [ -f /tmp/go ]; do sleep 0.2; done; echo after-follow; sleep 3600']
---
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  nodeName: n1
  containers:
  - {name: a, image: busybox, command: [sleep, "3600"]}
  - {name: b, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: unscheduled}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"]}
"#,
        &[],
    );
    running(&c, "talker");

    // kubectl logs -f keeps streaming: it sees a line the container writes after it started.
    let followed = c.path("follow.out");
    let mut follow = c.spawn_kubectl(&["logs", "-f", "talker"], &followed);
    let read = || std::fs::read_to_string(&followed).unwrap_or_default();
    wait_for(&c, 30, "logs -f shows the first line", || read().contains("started\n").then_some(()));
    assert!(!read().contains("after-follow"), "the second line is not written yet: {}", read());
    c.ok(&["exec", "talker", "--", "touch", "/tmp/go"]);
    wait_for(&c, 30, "logs -f shows the line written after it started", || read().contains("after-follow\n").then_some(()));
    assert!(follow.try_wait().ok().flatten().is_none(), "logs -f is still following");
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(c.ok(&["logs", "talker"]), "started\nafter-follow\n");
    assert_eq!(c.ok(&["logs", "talker", "--tail=1"]), "after-follow\n");

    // exec: output, stderr and the exit code; the container's own PID namespace.
    let out = c.kubectl(&["exec", "talker", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "the exit code comes back: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "to-out\n");
    assert!(text(&out.stderr).contains("to-err"), "{}", text(&out.stderr));
    let pid1 = c.ok(&["exec", "talker", "--", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]);
    assert!(pid1.starts_with("sh -c echo started"), "PID 1 is the container's command: {pid1}");
    let procs = c.ok(&["exec", "talker", "--", "sh", "-c", "ls /proc | grep -c '^[0-9]'"]);
    assert!(procs.trim().parse::<u32>().is_ok_and(|n| n < 10), "only the container's processes: {procs}");
    let with_c = c.ok(&["exec", "two", "-c", "b", "--", "hostname"]);
    assert_eq!(with_c, "two\n");

    // The 400s kube answers: several containers and none named, an unknown container, no node.
    let (code, body) = c.http("GET", "/api/v1/namespaces/default/pods/two/log", "application/json", b"");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("a container name must be specified for pod two, choose one of: [a b]"), "{body}");
    let (code, body) = c.http("GET", "/api/v1/namespaces/default/pods/two/log?container=z", "application/json", b"");
    assert_eq!((code, body.contains("container z is not valid for pod two")), (400, true), "{body}");
    let err = c.fails(&["exec", "unscheduled", "--", "true"]);
    assert!(err.contains("pod unscheduled does not have a host assigned"), "{err}");
    let (code, body) = c.http("GET", "/api/v1/namespaces/default/pods/unscheduled/log", "application/json", b"");
    assert_eq!((code, body.as_str()), (200, ""), "no node, no logs yet");
    let (code, body) = c.http("GET", "/api/v1/namespaces/default/pods/talker/exec?command=true&stdout=1", "application/json", b"");
    assert_eq!((code, body.contains("Upgrade request required")), (400, true), "{body}");

    // nodes/proxy reaches the kubelet's own endpoints.
    assert_eq!(c.ok(&["get", "--raw", "/api/v1/nodes/n1/proxy/healthz"]), "ok");
    let pods = c.ok(&["get", "--raw", "/api/v1/nodes/n1/proxy/pods"]);
    assert!(pods.contains("\"talker\"") && pods.contains("\"two\""), "{pods}");
    let summary = c.ok(&["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"]);
    assert!(summary.contains("\"nodeName\":\"n1\""), "{summary}");

    // kubectl top, from the kubelet's summary through metrics.k8s.io.
    let top = c.ok(&["top", "node"]);
    assert!(top.lines().nth(1).is_some_and(|l| l.starts_with("n1 ")), "{top}");
    let top = c.ok(&["top", "pod", "talker", "--containers"]);
    assert!(top.lines().nth(1).is_some_and(|l| l.starts_with("talker ") && l.contains(" talker ")), "{top}");
    let (code, body) = c.http("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/unscheduled", "application/json", b"");
    assert_eq!(code, 404, "an unscheduled pod has no metrics: {body}");
}

/// The objects a `kubectl get -w -o json` wrote.
fn watched(path: &std::path::Path) -> Vec<serde_json::Value> {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    serde_json::Deserializer::from_str(&s).into_iter::<serde_json::Value>().flatten().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_delete_pod_terminates_gracefully_and_the_kubelets_final_delete_removes_it() {
    let host = Host::new(4);
    let certs = Certs::new(&host.path("certs"));
    let c = cluster_with_kubelet(&host, &certs);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: polite}
spec:
  nodeName: n1
  terminationGracePeriodSeconds: 60
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap "echo got-term; exit 0" TERM; echo up; while true; do sleep 0.2; done']
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  nodeName: n1
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap "" TERM; echo up; while true; do sleep 0.2; done']
"#,
        &[],
    );
    running(&c, "polite");
    running(&c, "stubborn");
    wait_for(&c, 30, "both traps set", || {
        (c.ok(&["logs", "polite"]).contains("up") && c.ok(&["logs", "stubborn"]).contains("up")).then_some(())
    });
    let mut watches = Vec::new();
    for pod in ["polite", "stubborn"] {
        let out = c.path(&format!("{pod}.watch"));
        watches.push((pod, out.clone(), c.spawn_kubectl(&["get", "pod", pod, "-w", "-o", "json"], &out)));
    }
    wait_for(&c, 30, "the watches started", || watches.iter().all(|(_, out, _)| !watched(out).is_empty()).then_some(()));

    c.ok(&["delete", "pod", "polite", "stubborn", "--wait=false"]);
    for pod in ["polite", "stubborn"] {
        wait_for(&c, 60, &format!("{pod} removed by its kubelet"), || {
            let out = c.kubectl(&["get", "pod", pod]);
            text(&out.stderr).contains("NotFound").then_some(())
        });
    }
    for (pod, out, mut child) in watches {
        let _ = child.kill();
        let _ = child.wait();
        let seen = watched(&out);
        let deleting: Vec<&serde_json::Value> = seen.iter().filter(|o| o.pointer("/metadata/deletionTimestamp").is_some()).collect();
        let grace = if pod == "polite" { 60 } else { 2 };
        assert!(
            deleting.iter().any(|o| o.pointer("/metadata/deletionGracePeriodSeconds").and_then(|v| v.as_i64()) == Some(grace)),
            "{pod}: the DELETE set deletionTimestamp and the pod's grace period: {seen:?}"
        );
        let exit =
            deleting.iter().find_map(|o| o.pointer("/status/containerStatuses/0/state/terminated/exitCode").and_then(|v| v.as_i64()));
        // polite handles SIGTERM and exits 0; stubborn ignores it and is SIGKILLed (128 + 9).
        let want = if pod == "polite" { 0 } else { 137 };
        assert_eq!(exit, Some(want), "{pod}: the kubelet reported how the container ended before its final delete: {seen:?}");
    }
    let events = c.ok(&["get", "events", "--field-selector", "reason=Killing", "-o", "jsonpath={.items[*].involvedObject.name}"]);
    assert!(events.contains("polite") && events.contains("stubborn"), "{events}");
}
