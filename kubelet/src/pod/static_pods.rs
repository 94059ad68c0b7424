//! Static pods from `--pod-manifest-path`, as kubelet's file source and mirror client do: each
//! `.yaml`/`.yml`/`.json` file holds one Pod; it runs as `<name>-<node>` in its namespace
//! (`default` when unset), with a uid hashed from the node, the file and its content (so an edit
//! restarts it) and the annotations `kubernetes.io/config.hash`, `kubernetes.io/config.source:
//! file`, `kubernetes.io/config.seen`. Its mirror pod in the apiserver carries
//! `kubernetes.io/config.mirror: <hash>` and an ownerReference to the Node; a mirror deleted by
//! a user comes back, one with a stale hash is replaced, one without a file is deleted.
//!
//! Invariant: the folder is re-read whole every `--file-check-frequency`; a file that does not
//! parse is logged (once per content) and skipped, never a crash.

use crate::pod::Node;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node as ApiNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The annotation holding a mirror pod's static pod hash.
pub const MIRROR: &str = "kubernetes.io/config.mirror";
/// The annotation holding a static pod's hash.
pub const HASH: &str = "kubernetes.io/config.hash";

/// Turns one manifest into the static pod this node runs.
pub fn from_manifest(file: &str, content: &[u8], node: &str, seen: Timestamp) -> Result<Pod, String> {
    let text = std::str::from_utf8(content).map_err(|e| format!("{file}: not UTF-8: {e}"))?;
    let mut pod: Pod = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))?
    };
    let name = pod.metadata.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| format!("{file}: the pod has no metadata.name"))?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err(format!("{file}: the pod has no containers"));
    }
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(file.as_bytes());
    h.update(content);
    let hex: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let uid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace = Some(pod.metadata.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into()));
    pod.metadata.uid = Some(uid.clone());
    let ann = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(HASH.into(), uid);
    ann.insert("kubernetes.io/config.source".into(), "file".into());
    ann.insert("kubernetes.io/config.seen".into(), seen.to_string());
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_string());
        spec.restart_policy.get_or_insert_with(|| "Always".into());
    }
    Ok(pod)
}

/// Reads every manifest in `dir`: file name → pod, and the errors met.
pub fn read_dir(dir: &Path, node: &str, seen: Timestamp) -> (BTreeMap<String, Arc<Pod>>, Vec<String>) {
    let mut pods = BTreeMap::new();
    let mut errors = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return (pods, errors) };
    let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            continue;
        }
        match std::fs::read(&p).map_err(|e| e.to_string()).and_then(|c| from_manifest(&name, &c, node, seen)) {
            Ok(pod) => {
                pods.insert(name, Arc::new(pod));
            }
            Err(e) => errors.push(e),
        }
    }
    (pods, errors)
}

/// The mirror pod of static pod `p`.
fn mirror_of(p: &Pod, node: &ApiNode) -> Pod {
    let mut m = Pod { metadata: p.metadata.clone(), spec: p.spec.clone(), status: None };
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    let hash = p.metadata.uid.clone().unwrap_or_default();
    m.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    m
}

/// Makes the apiserver's mirror pods match the static pods: creates missing ones, replaces stale
/// or deleted-by-a-user ones, deletes those without a static pod.
pub async fn reconcile_mirrors(node: &Node, statics: &BTreeMap<String, Arc<Pod>>, api_pods: &BTreeMap<String, Arc<Pod>>) {
    let nodes: Api<ApiNode> = Api::all(node.client.clone());
    let mut wanted: BTreeMap<(String, String), &Pod> = BTreeMap::new();
    for p in statics.values() {
        wanted.insert((p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default()), p);
    }
    let mut have: BTreeMap<(String, String), &Pod> = BTreeMap::new();
    for p in api_pods.values() {
        if p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR)) {
            have.insert((p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default()), p);
        }
    }
    let delete = |ns: String, name: String, uid: Option<String>| {
        let api: Api<Pod> = Api::namespaced(node.client.clone(), &ns);
        async move {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid, resource_version: None }),
                ..Default::default()
            };
            if let Err(e) = api.delete(&name, &dp).await {
                tracing::debug!(pod = %name, error = %e, "delete mirror pod");
            }
        }
    };
    for ((ns, name), m) in &have {
        let hash = m.metadata.annotations.as_ref().and_then(|a| a.get(MIRROR)).cloned();
        let ok = wanted.get(&(ns.clone(), name.clone())).is_some_and(|s| s.metadata.uid == hash) && m.metadata.deletion_timestamp.is_none();
        if !ok {
            delete(ns.clone(), name.clone(), m.metadata.uid.clone()).await;
        }
    }
    for ((ns, name), s) in &wanted {
        let current = have.get(&(ns.clone(), name.clone()));
        let fine = current.is_some_and(|m| {
            m.metadata.annotations.as_ref().and_then(|a| a.get(MIRROR)) == s.metadata.uid.as_ref()
                && m.metadata.deletion_timestamp.is_none()
        });
        if fine {
            continue;
        }
        let Ok(n) = nodes.get(&node.name).await else { continue };
        let api: Api<Pod> = Api::namespaced(node.client.clone(), ns);
        if let Err(e) = api.create(&PostParams::default(), &mirror_of(s, &n)).await {
            tracing::debug!(pod = %name, error = %e, "create mirror pod");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_static_pods_named_after_the_node() {
        let t = Timestamp::from_second(1_700_000_000).unwrap_or_else(|e| panic!("{e}"));
        let yaml = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '100']\n";
        let p = from_manifest("web.yaml", yaml, "n1", t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(p.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(HASH), p.metadata.uid.as_ref());
        assert_eq!(ann.get("kubernetes.io/config.source").map(String::as_str), Some("file"));
        let again = from_manifest("web.yaml", yaml, "n1", t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.metadata.uid, again.metadata.uid, "same file, same uid");
        let edited =
            from_manifest("web.yaml", &[yaml.as_slice(), b"    workingDir: /tmp\n"].concat(), "n1", t).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(p.metadata.uid, edited.metadata.uid, "an edit is a new pod");
        assert!(from_manifest("x.yaml", b"kind: Pod\nmetadata: {}\n", "n1", t).is_err());
        assert!(from_manifest("x.yaml", b": : :", "n1", t).is_err());
    }
}
