//! Secrets are encrypted at rest: etcdctl sees ciphertext under Kubernetes' prefix, the API
//! (and kubectl) sees the Secret.

use keel_testkit as common;

use common::{Cluster, text};

#[test]
fn secrets_are_ciphertext_in_the_store_and_plain_through_the_api() {
    let c = Cluster::start();
    c.ok(&["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    assert_eq!(c.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]), "aHVudGVyMg==");
    let raw = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &c.store_addr.to_string(), "get", "/registry/secrets/default/db", "--print-value-only"])
        .output()
        .expect("etcdctl");
    let stored = text(&raw.stdout);
    assert!(stored.starts_with("k8s:enc:aesgcm:v1:key1:"), "{stored}");
    assert!(!stored.contains("aHVudGVyMg") && !stored.contains("hunter2") && !stored.contains("password"), "{stored}");
    // Other kinds stay readable JSON.
    c.ok(&["create", "configmap", "plain", "--from-literal=k=v"]);
    let cm = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &c.store_addr.to_string(), "get", "/registry/configmaps/default/plain", "--print-value-only"])
        .output()
        .expect("etcdctl");
    assert!(text(&cm.stdout).starts_with('{'), "{}", text(&cm.stdout));
    // Watches and lists decrypt too.
    assert!(c.ok(&["get", "secrets", "-o", "name"]).contains("secret/db"));
}
