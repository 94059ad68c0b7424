//! NodeRestriction admission (kube's `plugin/pkg/admission/noderestriction`): the Node
//! authorizer lets every kubelet create and update Node objects, create mirror pods, update pod
//! status and evict pods; this keeps each kubelet to its own node and its own pods.
//!
//! Invariants (kube's, for requests from `system:node:<name>`):
//! - Node objects: only its own; on update it may not change taints; it may not set labels
//!   under `node-restriction.kubernetes.io/`, nor other `kubernetes.io`/`k8s.io` labels except
//!   the ones kubelets set themselves.
//! - Pods: it creates only mirror pods bound to itself, owned by its Node, referencing no
//!   service account, secret, configmap or claim; status updates, evictions and deletes only of
//!   pods bound to it.
//! - Service account tokens: only bound to a pod running on it.

use crate::error::Error;
use crate::node::Kind;
use crate::node::pod_references;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::BTreeMap;

/// The labels kubelets may set on their Node (kube's `kubeletapis.KubeletLabels`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn label_allowed(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else { return true };
    let domain = prefix.to_ascii_lowercase();
    if domain == "node-restriction.kubernetes.io" || domain.ends_with(".node-restriction.kubernetes.io") {
        return false;
    }
    let in_k8s = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
    if !(in_k8s("kubernetes.io") || in_k8s("k8s.io")) {
        return true;
    }
    KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|ns| domain == *ns || domain.ends_with(&format!(".{ns}")))
}

fn forbidden(resource: &str, name: &str, msg: String) -> Error {
    Error::forbidden("", resource, name, msg)
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    crate::admission::limit_ranger::object_name(meta)
}

fn pod_node(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// `node` creates (`old` None) or updates the Node `requested` (the request's name).
pub fn admit_node_write(node: &str, requested: &str, new: &Node, old: Option<&Node>) -> Result<(), Error> {
    if requested != node {
        return Err(forbidden("nodes", requested, format!("node \"{node}\" is not allowed to modify node \"{requested}\"")));
    }
    let empty = BTreeMap::new();
    let labels = new.metadata.labels.as_ref().unwrap_or(&empty);
    let old_labels = old.and_then(|o| o.metadata.labels.as_ref()).unwrap_or(&empty);
    let mut modified: Vec<&String> = labels.iter().filter(|(k, v)| old_labels.get(*k) != Some(v)).map(|(k, _)| k).collect();
    modified.extend(old_labels.keys().filter(|k| !labels.contains_key(*k)));
    modified.sort();
    let forbidden_labels: Vec<&str> = modified.iter().filter(|k| !label_allowed(k)).map(|k| k.as_str()).collect();
    match old {
        None if !forbidden_labels.is_empty() => Err(forbidden(
            "nodes",
            requested,
            format!("node \"{node}\" is not allowed to set the following labels: {}", forbidden_labels.join(", ")),
        )),
        Some(old) => {
            let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
            if taints(new) != taints(old) {
                return Err(forbidden("nodes", requested, format!("node \"{node}\" is not allowed to modify taints")));
            }
            if !forbidden_labels.is_empty() {
                return Err(forbidden("nodes", requested, format!("is not allowed to modify labels: {}", forbidden_labels.join(", "))));
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// `node` creates a pod (only mirror pods of its own).
pub fn admit_pod_create(node: &str, pod: &Pod) -> Result<(), Error> {
    let n = name(&pod.metadata);
    let deny = |msg: String| Err(forbidden("pods", &n, msg));
    let mirror =
        pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(crate::admission::service_account::MIRROR_POD_ANNOTATION));
    if !mirror {
        return deny(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"));
    }
    if pod_node(pod) != node {
        return deny(format!("node \"{node}\" can only create pods with spec.nodeName set to itself"));
    }
    let owners = pod.metadata.owner_references.as_deref().unwrap_or(&[]);
    match owners {
        [] => return deny(format!("node \"{node}\" can only create pods with an owner reference set to itself")),
        [o] => {
            if o.api_version != "v1" || o.kind != "Node" || o.name != node {
                return deny(format!("node \"{node}\" can only create pods with an owner reference set to itself"));
            }
            if o.controller != Some(true) {
                return deny(format!("node \"{node}\" can only create pods with a controller owner reference set to itself"));
            }
            if o.block_owner_deletion == Some(true) {
                return deny(format!("node \"{node}\" must not set blockOwnerDeletion on an owner reference"));
            }
        }
        _ => return deny(format!("node \"{node}\" can only create pods with a single owner reference set to itself")),
    }
    let refs = pod_references(pod);
    for (kind, what) in [
        (Kind::ServiceAccount, "a service account"),
        (Kind::Secret, "secrets"),
        (Kind::ConfigMap, "configmaps"),
        (Kind::PersistentVolumeClaim, "persistentvolumeclaims"),
    ] {
        if refs.iter().any(|(k, _)| *k == kind) {
            return deny(format!("node \"{node}\" can not create pods that reference {what}"));
        }
    }
    Ok(())
}

/// `node` deletes, updates the status of, or evicts the existing pod `existing`.
pub fn admit_pod_change(node: &str, subresource: &str, existing: &Pod) -> Result<(), Error> {
    if pod_node(existing) == node {
        return Ok(());
    }
    let what = match subresource {
        "status" => "update pod status for",
        "eviction" => "evict",
        _ => "delete",
    };
    Err(forbidden("pods", &name(&existing.metadata), format!("node \"{node}\" can only {what} pods with spec.nodeName set to itself")))
}

/// `node` asks for a token of the service account `sa`; `bound_pod` is the pod the request
/// binds it to (looked up by the apiserver).
pub fn admit_token_request(node: &str, sa: &str, request: &TokenRequest, bound_pod: Option<&Pod>) -> Result<(), Error> {
    let bound = request.spec.bound_object_ref.as_ref();
    if bound.and_then(|b| b.kind.as_deref()) != Some("Pod") {
        return Err(forbidden("serviceaccounts", sa, "node requested token not bound to a pod".into()));
    }
    let Some(pod) = bound_pod else {
        return Err(forbidden("serviceaccounts", sa, "node requested token bound to a pod that does not exist".into()));
    };
    if pod_node(pod) != node {
        return Err(forbidden("serviceaccounts", sa, "node requested token bound to a pod scheduled on a different node".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_obj(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})).unwrap()
    }

    fn mirror(extra: serde_json::Value) -> Pod {
        let mut spec = json!({"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "static-n1", "namespace": "kube-system",
            "annotations": {"kubernetes.io/config.mirror": "h"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u", "controller": true}]},
            "spec": spec}))
        .unwrap()
    }

    #[test]
    fn a_kubelet_writes_only_its_own_node() {
        let n = node_obj(json!({"kubernetes.io/hostname": "n1"}), json!([]));
        assert!(admit_node_write("n1", "n1", &n, None).is_ok());
        assert_eq!(
            admit_node_write("n1", "n2", &n, None).unwrap_err().to_string(),
            r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
        );
        let bad = node_obj(json!({"node-restriction.kubernetes.io/pool": "gpu", "kubernetes.io/hostname": "n1"}), json!([]));
        assert_eq!(
            admit_node_write("n1", "n1", &bad, None).unwrap_err().to_string(),
            r#"nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/pool"#
        );
        let custom = node_obj(json!({"example.com/rack": "r1", "node.kubernetes.io/exclude": "x"}), json!([]));
        assert!(admit_node_write("n1", "n1", &custom, None).is_ok());
        let tainted = node_obj(json!({}), json!([{"key": "k", "effect": "NoSchedule"}]));
        let plain = node_obj(json!({}), json!([]));
        assert_eq!(
            admit_node_write("n1", "n1", &plain, Some(&tainted)).unwrap_err().to_string(),
            r#"nodes "n1" is forbidden: node "n1" is not allowed to modify taints"#
        );
        let relabel = node_obj(json!({"node-role.kubernetes.io/master": ""}), json!([]));
        assert!(
            admit_node_write("n1", "n1", &relabel, Some(&plain))
                .unwrap_err()
                .to_string()
                .ends_with("is not allowed to modify labels: node-role.kubernetes.io/master")
        );
    }

    #[test]
    fn a_kubelet_creates_only_plain_mirror_pods_of_its_own() {
        assert!(admit_pod_create("n1", &mirror(json!({}))).is_ok());
        let mut not_mirror = mirror(json!({}));
        not_mirror.metadata.annotations = None;
        assert!(admit_pod_create("n1", &not_mirror).unwrap_err().to_string().contains("can only create mirror pods"));
        assert!(admit_pod_create("n2", &mirror(json!({}))).unwrap_err().to_string().contains("spec.nodeName set to itself"));
        let secret = mirror(json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}));
        assert_eq!(
            admit_pod_create("n1", &secret).unwrap_err().to_string(),
            r#"pods "static-n1" is forbidden: node "n1" can not create pods that reference secrets"#
        );
        let sa = mirror(json!({"serviceAccountName": "default"}));
        assert!(admit_pod_create("n1", &sa).unwrap_err().to_string().ends_with("reference a service account"));
    }

    #[test]
    fn pod_changes_and_tokens_stay_on_the_node() {
        let p = mirror(json!({}));
        assert!(admit_pod_change("n1", "status", &p).is_ok());
        assert_eq!(
            admit_pod_change("n2", "status", &p).unwrap_err().to_string(),
            r#"pods "static-n1" is forbidden: node "n2" can only update pod status for pods with spec.nodeName set to itself"#
        );
        assert!(admit_pod_change("n2", "eviction", &p).unwrap_err().to_string().contains("can only evict pods"));
        let req: TokenRequest = serde_json::from_value(
            json!({"spec": {"audiences": [], "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "static-n1"}}}),
        )
        .unwrap();
        assert!(admit_token_request("n1", "default", &req, Some(&p)).is_ok());
        assert!(
            admit_token_request("n2", "default", &req, Some(&p))
                .unwrap_err()
                .to_string()
                .ends_with("bound to a pod scheduled on a different node")
        );
        let unbound: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
        assert!(admit_token_request("n1", "default", &unbound, Some(&p)).unwrap_err().to_string().ends_with("not bound to a pod"));
    }
}
