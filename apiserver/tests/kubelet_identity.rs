//! A real keel-kubelet (simulated runtime) under its own identity, as `keel up` runs it:
//! `system:node:keel-1-0` in `system:nodes`, against an apiserver with `--authorization-mode
//! Node,RBAC` and NodeRestriction. It registers its Node, heartbeats its Lease, and starts a
//! pod bound to it whose volume is a Secret and whose env comes from a ConfigMap: the Node
//! authorizer's graph lets it read exactly those.

use keel_testkit::{Cluster, eventually};
use std::time::Duration;

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend(["-o", &p]);
    keel_testkit::text(&c.kubectl(&args).stdout)
}

#[test]
fn a_kubelet_with_its_own_identity_runs_a_pod_that_mounts_a_secret() {
    let mut c = Cluster::builder().secure(true).apiserver_flags(&["--enable-admission-plugins", "NodeRestriction"]).start();
    let kubeconfig = c.kubeconfig_for("system:node:keel-1-0", &["system:nodes"]);
    let root = c.path("kubelet-root");
    c.spawn(
        "keel-kubelet",
        false,
        &[
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--runtime",
            "simulated",
            // A simulated kubelet names its one node <hostname>-0.
            "--hostname-override",
            "keel-1",
            "--port",
            "0",
            "--root-dir",
            &root.to_string_lossy(),
            "--sync-frequency",
            "500ms",
            "--node-status-update-frequency",
            "1s",
        ],
    );
    let ready = eventually(Duration::from_secs(30), || {
        (jsonpath(&c, &["node", "keel-1-0"], "{.status.conditions[?(@.type==\"Ready\")].status}") == "True").then_some(())
    });
    assert!(ready.is_some(), "the kubelet registers its own Node: {}", c.logs());
    let leased = eventually(Duration::from_secs(30), || {
        (jsonpath(&c, &["lease", "-n", "kube-node-lease", "keel-1-0"], "{.spec.holderIdentity}") == "keel-1-0").then_some(())
    });
    assert!(leased.is_some(), "and heartbeats its own Lease");
    c.apply(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: default}
stringData: {password: s3cret}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {MODE: fast}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: keel-1-0
  containers:
  - name: c
    image: img
    envFrom: [{configMapRef: {name: settings}}]
    volumeMounts: [{name: creds, mountPath: /creds}]
  volumes: [{name: creds, secret: {secretName: creds}}]
"#,
        &[],
    );
    let running = eventually(Duration::from_secs(30), || (jsonpath(&c, &["pod", "web"], "{.status.phase}") == "Running").then_some(()));
    assert!(running.is_some(), "the pod runs: {} {}", jsonpath(&c, &["pod", "web"], "{.status}"), c.logs());
}
