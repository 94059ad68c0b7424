//! The Linux runtime end to end: real store, apiserver and kubelet processes, pods with
//! `spec.nodeName` set, host programs in namespaces and cgroups.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Certs, Host, free_port, jsonpath, wait_for};
use keel_testkit::Cluster;

fn cond(c: &Cluster, pod: &str, kind: &str) -> String {
    jsonpath(c, &["pod", pod], &format!("{{.status.conditions[?(@.type==\"{kind}\")].status}}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_run_isolated_ready_reachable_logged_exec_oom_and_are_adopted_after_kill9() {
    let host = Host::new(1);
    let certs = Certs::new(&host.path("certs"));
    let manifests = host.path("manifests");
    let mut c = Cluster::start();
    let port = free_port();
    let flags = host.flags("n1", port, &certs, &manifests);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let k = c.spawn("keel-kubelet", true, &flags);
    wait_for(&c, 30, "node Ready", || {
        (jsonpath(&c, &["node", "n1"], "{.status.conditions[?(@.type==\"Ready\")].status}") == "True").then_some(())
    });
    wait_for(&c, 30, "the node Lease", || {
        (jsonpath(&c, &["lease", "-n", "kube-node-lease", "n1"], "{.spec.holderIdentity}") == "n1").then_some(())
    });
    assert_eq!(jsonpath(&c, &["node", "n1"], "{.spec.podCIDR}"), host.cidr);

    c.apply(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {greeting: hello, file.txt: from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: n1
  containers:
  - name: web
    image: python:3
    command: [python3, -u, -m, http.server, "8080"]
    readinessProbe: {httpGet: {port: 8080, path: /}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: cfg}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo "env $GREETING $PASSWORD $POD_NAME"; stat -c "%a %n" /etc/keel-cfg/file.txt /etc/keel-sec/password; cat /etc/keel-cfg/file.txt; echo; cat /etc/keel-sec/password; echo; sleep 3600']
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: sec, key: password}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/keel-cfg}
    - {name: sec, mountPath: /etc/keel-sec}
  volumes:
  - {name: cfg, configMap: {name: cfg, defaultMode: 0640}}
  - {name: sec, secret: {secretName: sec, items: [{key: password, path: password, mode: 0400}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  nodeName: n1
  restartPolicy: Never
  containers:
  - name: hog
    image: python:3
    command: [python3, -c, "import time; a = bytearray(256 * 1024 * 1024); time.sleep(60)"]
    resources: {limits: {memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: nocommand}
spec: {nodeName: n1, containers: [{name: c, image: nginx}]}
"#,
        &[],
    );
    wait_for(&c, 45, "web Ready", || (cond(&c, "web", "Ready") == "True").then_some(()));
    let web_ip = jsonpath(&c, &["pod", "web"], "{.status.podIP}");
    assert!(web_ip.starts_with(&format!("{}.", host.prefix)), "pod IP {web_ip} from {}", host.cidr);

    // Another pod reaches the web pod on its pod IP, over the bridge.
    let client = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: n1
  containers:
  - name: client
    image: python:3
    command: [sh, -c, 'until python3 -c "import urllib.request; print(\"status\", urllib.request.urlopen(\"http://{web_ip}:8080/\").status)"; do sleep 1; done; sleep 3600']
"#
    );
    c.apply(&client, &[]);
    wait_for(&c, 45, "client reached web", || {
        let (code, body) = certs.curl(port, "/containerLogs/default/client/client", &[]);
        (code == 200 && body.contains("status 200")).then_some(())
    });

    // Logs, with tailLines, timestamps and follow.
    let (code, body) = certs.curl(port, "/containerLogs/default/web/web?tailLines=1", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(body.contains("\"GET / HTTP/1.1\" 200"), "{body}");
    let (_, stamped) = certs.curl(port, "/containerLogs/default/web/web?tailLines=1&timestamps=true", &[]);
    assert!(stamped.starts_with("20") && stamped.contains("Z "), "{stamped}");
    let (_, followed) = certs.curl(port, "/containerLogs/default/web/web?follow=true&sinceSeconds=1", &["--max-time", "3"]);
    assert!(followed.lines().filter(|l| l.contains("GET / HTTP/1.1")).count() >= 2, "follow streams new probe lines: {followed}");

    // Exec runs inside the container and sees only its own PID namespace.
    let (out, _, status) = certs
        .exec(
            port,
            "default",
            "client",
            "client",
            &["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'; hostname"],
        )
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("sh -c until")), "PID 1 is the container's command: {out}");
    assert!(lines.get(1).and_then(|n| n.trim().parse::<u32>().ok()).is_some_and(|n| n < 10), "a handful of processes: {out}");
    assert_eq!(lines.get(2).copied(), Some("client"));
    assert!(status.contains("\"Success\""), "{status}");
    let (_, _, failed) = certs.exec(port, "default", "web", "web", &["sh", "-c", "exit 3"]).await;
    assert!(failed.contains("NonZeroExitCode") && failed.contains("\"3\""), "{failed}");
    assert_ne!(certs.curl_anonymous(port, "/healthz"), 0, "no client certificate, no service");
    let (code, _) = certs.curl(port, "/healthz", &[]);
    assert_eq!(code, 200);
    let (_, metrics) = certs.curl(port, "/metrics", &[]);
    assert!(metrics.lines().any(|l| l.starts_with("kubelet_started_containers_total ") && !l.ends_with(" 0")), "{metrics}");
    assert!(metrics.contains("kubelet_running_pods "), "{metrics}");

    // configMap/secret env and files.
    wait_for(&c, 30, "cfg logs", || {
        let (_, body) = certs.curl(port, "/containerLogs/default/cfg/c", &[]);
        body.contains("s3cr3t\n").then_some(())
    });
    let (_, body) = certs.curl(port, "/containerLogs/default/cfg/c", &[]);
    assert_eq!(body, "env hello s3cr3t cfg\n640 /etc/keel-cfg/file.txt\n400 /etc/keel-sec/password\nfrom-configmap\ns3cr3t\n");

    // Over its memory limit: OOMKilled.
    wait_for(&c, 30, "hog OOMKilled", || {
        (jsonpath(&c, &["pod", "hog"], "{.status.containerStatuses[0].state.terminated.reason}") == "OOMKilled").then_some(())
    });
    assert_eq!(jsonpath(&c, &["pod", "hog"], "{.status.phase}"), "Failed");
    assert_eq!(jsonpath(&c, &["pod", "hog"], "{.status.containerStatuses[0].state.terminated.exitCode}"), "137");

    // No command: a clear waiting reason, no crash.
    wait_for(&c, 30, "nocommand waits", || {
        (jsonpath(&c, &["pod", "nocommand"], "{.status.containerStatuses[0].state.waiting.reason}") == "CreateContainerConfigError")
            .then_some(())
    });
    assert!(jsonpath(&c, &["pod", "nocommand"], "{.status.containerStatuses[0].state.waiting.message}").contains("ENTRYPOINT"));

    // Stats.
    let (_, stats) = certs.curl(port, "/stats/summary", &[]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
    let web_mem = stats["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["podRef"]["name"] == "web")
        .map(|p| p["memory"]["workingSetBytes"].as_u64().unwrap_or(0));
    assert!(web_mem.is_some_and(|m| m > 0), "{stats}");

    // kill -9 of the kubelet: the running containers are adopted, not started twice.
    let id_before = jsonpath(&c, &["pod", "web"], "{.status.containerStatuses[0].containerID}");
    let started_before = jsonpath(&c, &["pod", "web"], "{.status.containerStatuses[0].state.running.startedAt}");
    c.components[k].kill9();
    c.components[k].restart();
    wait_for(&c, 30, "the restarted kubelet serves", || (certs.curl(port, "/healthz", &[]).0 == 200).then_some(()));
    wait_for(&c, 30, "web Ready after the restart", || (cond(&c, "web", "Ready") == "True").then_some(()));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(jsonpath(&c, &["pod", "web"], "{.status.containerStatuses[0].containerID}"), id_before);
    assert_eq!(jsonpath(&c, &["pod", "web"], "{.status.containerStatuses[0].state.running.startedAt}"), started_before);
    assert_eq!(jsonpath(&c, &["pod", "web"], "{.status.containerStatuses[0].restartCount}"), "0");
    let uid = jsonpath(&c, &["pod", "web"], "{.metadata.uid}");
    let runs: Vec<_> = std::fs::read_dir(host.root.join("pods").join(&uid).join("containers"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(runs.len(), 1, "one run of web, not two: {runs:?}");
}
