//! The Node authorizer fed from the apiserver's watch of pods, and NodeRestriction admission,
//! through a real apiserver process with x509 kubelet identities (`system:node:<name>` in
//! `system:nodes`, as keel up issues them) and curl: a kubelet reads the secrets and configmaps
//! of the pods bound to it, and nothing else, with kube's messages; it writes only its own Node
//! and the status of its own pods.

mod secured;

use keel_access::pki::ClientIdentity;
use keel_testkit::{Cluster, eventually};
use secured::{Pki, curl, message};
use std::time::Duration;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Secret
metadata: {name: s1, namespace: dev}
stringData: {password: one}
---
apiVersion: v1
kind: Secret
metadata: {name: s2, namespace: dev}
stringData: {password: two}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c1, namespace: dev}
data: {mode: fast}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: dev}
spec:
  nodeName: keel-1
  containers:
  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: c1}}]
  volumes: [{name: v, secret: {secretName: s1}}]
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: dev}
spec:
  nodeName: keel-2
  containers:
  - name: c
    image: busybox
    env: [{name: P, valueFrom: {secretKeyRef: {name: s2, key: password}}}]
"#;

fn forbidden_get(node: &str, resource: &str, name: &str) -> String {
    format!(
        "{resource} \"{name}\" is forbidden: User \"system:node:{node}\" cannot get resource \"{resource}\" in API group \"\" in the namespace \"dev\": no relationship found between node '{node}' and this object"
    )
}

#[test]
fn a_kubelet_reads_only_what_its_own_pods_reference() {
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &[]));
    let k1 = pki.identity("keel-1", ClientIdentity::kubelet("keel-1"));
    let k2 = pki.identity("keel-2", ClientIdentity::kubelet("keel-2"));
    c.apply(OBJECTS, &[]);

    // keel-1 runs p1, which mounts s1 and reads c1: it may get both, once the graph has p1.
    let read = eventually(Duration::from_secs(20), || (curl(&c, &k1.args(), "/api/v1/namespaces/dev/secrets/s1").0 == 200).then_some(()));
    assert!(read.is_some(), "keel-1 reads the secret its pod mounts");
    let (code, body) = curl(&c, &k1.args(), "/api/v1/namespaces/dev/configmaps/c1");
    assert_eq!((code, body.contains("\"mode\":\"fast\"")), (200, true), "{body}");
    // s2 belongs to keel-2's pod: refused with kube's message; keel-2 may read it.
    let (code, body) = curl(&c, &k1.args(), "/api/v1/namespaces/dev/secrets/s2");
    assert_eq!((code, message(&body)), (403, forbidden_get("keel-1", "secrets", "s2")), "{body}");
    let (code, body) = curl(&c, &k2.args(), "/api/v1/namespaces/dev/secrets/s2");
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&c, &k2.args(), "/api/v1/namespaces/dev/configmaps/c1");
    assert_eq!((code, message(&body)), (403, forbidden_get("keel-2", "configmaps", "c1")), "{body}");
    // Pods: one bound to it, and lists only of its own.
    assert_eq!(curl(&c, &k1.args(), "/api/v1/namespaces/dev/pods/p1").0, 200);
    let (code, body) = curl(&c, &k1.args(), "/api/v1/namespaces/dev/pods/p2");
    assert_eq!((code, message(&body)), (403, forbidden_get("keel-1", "pods", "p2")), "{body}");
    let (code, body) = curl(&c, &k1.args(), "/api/v1/pods?fieldSelector=spec.nodeName%3Dkeel-1");
    assert_eq!((code, body.contains("\"p1\""), body.contains("\"p2\"")), (200, true, false), "{body}");
    let (code, body) = curl(&c, &k1.args(), "/api/v1/pods");
    assert_eq!(code, 403, "{body}");
    assert!(message(&body).ends_with(": can only list/watch pods with spec.nodeName field selector"), "{body}");
    // A secret no pod references is nobody's.
    c.ok(&["create", "secret", "generic", "s3", "-n", "dev", "--from-literal=k=v"]);
    assert_eq!(curl(&c, &k1.args(), "/api/v1/namespaces/dev/secrets/s3").0, 403);

    // Once p1 is gone, so is keel-1's access to what it referenced.
    c.ok(&["delete", "pod", "p1", "-n", "dev", "--grace-period=0", "--force"]);
    let revoked =
        eventually(Duration::from_secs(20), || (curl(&c, &k1.args(), "/api/v1/namespaces/dev/secrets/s1").0 == 403).then_some(()));
    assert!(revoked.is_some(), "a deleted pod links nothing");
    let (_, body) = curl(&c, &k1.args(), "/api/v1/namespaces/dev/secrets/s1");
    assert_eq!(message(&body), forbidden_get("keel-1", "secrets", "s1"));
}

#[test]
fn node_restriction_keeps_a_kubelet_to_its_own_node_and_pods() {
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &["--enable-admission-plugins", "NodeRestriction"]));
    let k1 = pki.identity("keel-1", ClientIdentity::kubelet("keel-1"));
    c.apply(OBJECTS, &[]);
    let as_k1 = |extra: &[&str], path: &str| {
        let args: Vec<&str> = k1.args().into_iter().chain(extra.iter().copied()).collect();
        curl(&c, &args, path)
    };
    let post = |body: &str, path: &str| as_k1(&["-H", "Content-Type: application/json", "-d", body], path);
    let patch = |body: &str, path: &str| as_k1(&["-X", "PATCH", "-H", "Content-Type: application/merge-patch+json", "-d", body], path);

    // Its own Node: created; another's: refused by admission (the Node authorizer lets nodes create).
    let node = |name: &str| format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}"}}}}"#);
    let (code, body) = post(&node("keel-1"), "/api/v1/nodes");
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(&node("keel-2"), "/api/v1/nodes");
    assert_eq!(
        (code, message(&body)),
        (403, "nodes \"keel-2\" is forbidden: node \"keel-1\" is not allowed to modify node \"keel-2\"".to_string()),
        "{body}"
    );

    // Pod status: of its own pod only.
    let status = r#"{"status":{"phase":"Running"}}"#;
    let (code, body) = patch(status, "/api/v1/namespaces/dev/pods/p1/status");
    assert_eq!(code, 200, "{body}");
    let (code, body) = patch(status, "/api/v1/namespaces/dev/pods/p2/status");
    assert_eq!(
        (code, message(&body)),
        (403, "pods \"p2\" is forbidden: node \"keel-1\" can only update pod status for pods with spec.nodeName set to itself".to_string()),
        "{body}"
    );
    // Deletes: of its own pods only.
    let (code, body) = as_k1(&["-X", "DELETE"], "/api/v1/namespaces/dev/pods/p2");
    assert_eq!(
        (code, message(&body)),
        (403, "pods \"p2\" is forbidden: node \"keel-1\" can only delete pods with spec.nodeName set to itself".to_string()),
        "{body}"
    );
    assert!(c.ok(&["get", "pod", "p2", "-n", "dev"]).contains("p2"), "p2 is still there");
    // Creates: only mirror pods.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p3"},"spec":{"nodeName":"keel-1","containers":[{"name":"c","image":"busybox"}]}}"#;
    let (code, body) = post(pod, "/api/v1/namespaces/dev/pods");
    assert_eq!(
        (code, message(&body)),
        (403, "pods \"p3\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"keel-1\" can only create mirror pods".to_string()),
        "{body}"
    );
    let (code, body) = as_k1(&["-X", "DELETE"], "/api/v1/namespaces/dev/pods/p1");
    assert_eq!(code, 200, "its own pod: {body}");
}
