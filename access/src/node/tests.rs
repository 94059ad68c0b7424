//! Cases after kube's `node_authorizer_test.go`: a node reads what its pods use and nothing of
//! other nodes' pods.

use super::*;
use crate::attributes::parse_field_selector;
use crate::authz::Decision;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use serde_json::json;

fn pod(ns: &str, name: &str, node: &str, extra_spec: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
    if !node.is_empty() {
        spec["nodeName"] = json!(node);
    }
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})).unwrap()
}

fn node_user(n: &str) -> UserInfo {
    UserInfo::new(format!("system:node:{n}"), &["system:nodes", "system:authenticated"])
}

fn setup() -> NodeAuthorizer {
    let graph = SharedGraph::default();
    graph.update(|g| {
        g.set_pod(&pod(
            "ns0",
            "pod0-node0",
            "node0",
            json!({
                "serviceAccountName": "sa0",
                "imagePullSecrets": [{"name": "pull0"}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "secret0"}},
                    {"name": "c", "configMap": {"name": "cm0"}},
                    {"name": "p", "persistentVolumeClaim": {"claimName": "pvc0"}},
                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "proj", "projected": {"sources": [{"secret": {"name": "psecret0"}}, {"configMap": {"name": "pcm0"}}]}}
                ],
                "initContainers": [{"name": "i", "image": "i", "envFrom": [{"secretRef": {"name": "initenv0"}}]}],
                "containers": [{"name": "c", "image": "i", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "envcm0", "key": "k"}}}]}]
            }),
        ));
        g.set_pod(&pod("ns0", "pod1-node1", "node1", json!({"volumes": [{"name": "s", "secret": {"secretName": "secret1"}}]})));
        g.set_pod(&pod("ns0", "unscheduled", "", json!({"volumes": [{"name": "s", "secret": {"secretName": "secret-unscheduled"}}]})));
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv0"},
            "spec": {"claimRef": {"namespace": "ns0", "name": "pvc0"},
                     "csi": {"driver": "d", "volumeHandle": "h", "nodePublishSecretRef": {"namespace": "ns0", "name": "pvsecret0"}}}
        }))
        .unwrap();
        g.set_persistent_volume(&pv);
    });
    NodeAuthorizer::new(graph)
}

fn req(node: &str, verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    Attributes::resource(node_user(node), verb, group, resource, ns, name)
}

fn allowed(a: &NodeAuthorizer, r: &Attributes) -> bool {
    a.authorize(r).decision == Decision::Allow
}

#[test]
fn a_node_reads_what_its_pods_reference() {
    let a = setup();
    for (res, name) in [
        ("secrets", "secret0"),
        ("secrets", "pull0"),
        ("secrets", "psecret0"),
        ("secrets", "initenv0"),
        ("secrets", "pvsecret0"),
        ("configmaps", "cm0"),
        ("configmaps", "pcm0"),
        ("configmaps", "envcm0"),
    ] {
        for verb in ["get", "list", "watch"] {
            assert!(allowed(&a, &req("node0", verb, "", res, "ns0", name)), "{verb} {res}/{name}");
        }
    }
    assert!(allowed(&a, &req("node0", "get", "", "persistentvolumeclaims", "ns0", "pvc0")));
    assert!(allowed(&a, &req("node0", "get", "", "persistentvolumeclaims", "ns0", "pod0-node0-e")));
    assert!(allowed(&a, &req("node0", "get", "", "persistentvolumes", "", "pv0")));
    assert!(allowed(&a, &req("node0", "create", "", "serviceaccounts", "ns0", "sa0").with_subresource("token")));
    assert!(allowed(&a, &req("node0", "get", "", "pods", "ns0", "pod0-node0")));
}

#[test]
fn a_node_cannot_read_another_nodes_pod_secret() {
    let a = setup();
    let v = a.authorize(&req("node0", "get", "", "secrets", "ns0", "secret1"));
    assert_eq!(v.decision, Decision::NoOpinion);
    assert_eq!(v.reason, "no relationship found between node 'node0' and this object");
    assert!(allowed(&a, &req("node1", "get", "", "secrets", "ns0", "secret1")));
    assert!(!allowed(&a, &req("node1", "get", "", "secrets", "ns0", "secret0")));
    assert!(!allowed(&a, &req("node0", "get", "", "secrets", "ns0", "secret-unscheduled")));
    assert!(!allowed(&a, &req("node0", "get", "", "pods", "ns0", "pod1-node1")));
    assert!(!allowed(&a, &req("node1", "get", "", "persistentvolumes", "", "pv0")));
    assert!(!allowed(&a, &req("node1", "create", "", "serviceaccounts", "ns0", "sa0").with_subresource("token")));
}

#[test]
fn writes_and_collections_of_referenced_kinds_are_refused() {
    let a = setup();
    let cases = [
        (req("node0", "update", "", "secrets", "ns0", "secret0"), "can only read resources of this type"),
        (req("node0", "list", "", "secrets", "ns0", ""), "No Object name found"),
        (req("node0", "get", "", "secrets", "", "secret0"), "can only read namespaced object of this type"),
        (req("node0", "get", "", "configmaps", "ns0", "cm0").with_subresource("x"), "cannot read subresource"),
        (req("node0", "update", "", "persistentvolumeclaims", "ns0", "pvc0"), "can only get individual resources of this type"),
        (req("node0", "get", "", "serviceaccounts", "ns0", "sa0"), "can only create tokens for individual service accounts"),
        (req("node0", "list", "", "pods", "", ""), "can only list/watch pods with spec.nodeName field selector"),
        (req("node0", "list", "", "nodes", "", ""), "node 'node0' cannot read all nodes, only its own Node object"),
        (req("node0", "get", "", "nodes", "", "node1"), "node 'node0' cannot read 'node1', only its own Node object"),
        (
            req("node0", "update", "coordination.k8s.io", "leases", "kube-node-lease", "node1"),
            "can only access node lease with the same name as the requesting node",
        ),
        (
            req("node0", "get", "coordination.k8s.io", "leases", "default", "node0"),
            "can only access leases in the \"kube-node-lease\" system namespace",
        ),
    ];
    for (r, reason) in cases {
        let v = a.authorize(&r);
        assert_eq!((v.decision, v.reason.as_str()), (Decision::NoOpinion, reason), "{r:?}");
    }
}

#[test]
fn node_objects_pods_leases_and_static_rules() {
    let a = setup();
    let mut list = req("node0", "watch", "", "pods", "", "");
    list.field_selector = parse_field_selector("spec.nodeName=node0");
    assert!(allowed(&a, &list));
    list.field_selector = parse_field_selector("spec.nodeName=node1");
    assert!(!allowed(&a, &list));
    assert!(allowed(&a, &req("node0", "get", "", "nodes", "", "node0")));
    assert!(allowed(&a, &req("node0", "create", "", "nodes", "", "")));
    assert!(allowed(&a, &req("node0", "patch", "", "nodes", "", "node0").with_subresource("status")));
    assert!(allowed(&a, &req("node0", "update", "", "pods", "ns0", "pod0-node0").with_subresource("status")));
    assert!(allowed(&a, &req("node0", "create", "coordination.k8s.io", "leases", "kube-node-lease", "")));
    assert!(allowed(&a, &req("node0", "update", "coordination.k8s.io", "leases", "kube-node-lease", "node0")));
    // Static node rules: events and services.
    assert!(allowed(&a, &req("node0", "create", "", "events", "ns0", "")));
    assert!(allowed(&a, &req("node0", "watch", "", "services", "", "")));
    assert!(!allowed(&a, &req("node0", "create", "apps", "deployments", "ns0", "")));
    // Not a node: no opinion.
    let jane = Attributes::resource(UserInfo::new("jane", &[]), "get", "", "secrets", "ns0", "secret0");
    assert_eq!(a.authorize(&jane), Verdict::no_opinion(""));
    let nameless = Attributes::resource(UserInfo::new("system:node:", &["system:nodes"]), "get", "", "secrets", "ns0", "x");
    assert_eq!(a.authorize(&nameless).reason, "unknown node for user \"system:node:\"");
}

#[test]
fn graph_follows_pod_updates_and_deletes() {
    let a = setup();
    a.graph
        .update(|g| g.set_pod(&pod("ns0", "pod0-node0", "node0", json!({"volumes": [{"name": "s", "secret": {"secretName": "other"}}]}))));
    assert!(!allowed(&a, &req("node0", "get", "", "secrets", "ns0", "secret0")));
    assert!(allowed(&a, &req("node0", "get", "", "secrets", "ns0", "other")));
    a.graph.update(|g| g.remove_pod("ns0", "pod0-node0"));
    assert!(!allowed(&a, &req("node0", "get", "", "secrets", "ns0", "other")));
    assert_eq!(a.graph.read(NodeGraph::pod_count), 1);
    let rules = a.rules_for(&node_user("node0"), "ns0");
    assert!(rules.incomplete);
}
