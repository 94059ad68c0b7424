//! Which objects each node may read (kube's node authorizer graph): a pod bound to a node links
//! the node to the secrets, configmaps, persistent volume claims and service account the pod
//! references; a claim links to the PersistentVolume bound to it, and that volume to the secrets
//! it references.
//!
//! Invariants:
//! - Only pods with `spec.nodeName` set are in the graph; [`NodeGraph::set_pod`] replaces every
//!   edge of a pod, [`NodeGraph::remove_pod`] drops them, so the graph equals what the current
//!   pods say (level-triggered: feed it the watch of pods, PVs; replaying an event is harmless).
//! - The references a pod makes are kube's `VisitPodSecretNames` / `VisitPodConfigmapNames`:
//!   image pull secrets, env and envFrom of init, regular and ephemeral containers, and every
//!   volume source that names a secret or config map; claims from `persistentVolumeClaim` and
//!   generic ephemeral volumes (`<pod>-<volume>`).

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, PersistentVolume, Pod, SecretReference, Volume};
use std::collections::{HashMap, HashSet};

/// Kinds of objects a node reaches through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `secrets`.
    Secret,
    /// `configmaps`.
    ConfigMap,
    /// `persistentvolumeclaims`.
    PersistentVolumeClaim,
    /// `serviceaccounts`.
    ServiceAccount,
}

type Key = (String, String);
type ObjKey = (Kind, String, String);

#[derive(Debug, Clone)]
struct PodEntry {
    node: String,
    refs: Vec<ObjKey>,
}

#[derive(Debug, Clone, Default)]
struct PvEntry {
    claim: Option<Key>,
    secrets: Vec<Key>,
}

/// The graph.
#[derive(Debug, Default)]
pub struct NodeGraph {
    pods: HashMap<Key, PodEntry>,
    referenced_by: HashMap<ObjKey, HashSet<Key>>,
    pvs: HashMap<String, PvEntry>,
    pv_secret_index: HashMap<Key, HashSet<String>>,
}

fn env_refs(env: Option<&Vec<EnvVar>>, env_from: Option<&Vec<EnvFromSource>>, out: &mut Vec<(Kind, String)>) {
    for e in env_from.into_iter().flatten() {
        if let Some(s) = &e.secret_ref {
            out.push((Kind::Secret, s.name.clone()));
        }
        if let Some(c) = &e.config_map_ref {
            out.push((Kind::ConfigMap, c.name.clone()));
        }
    }
    for e in env.into_iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(s) = &vf.secret_key_ref {
                out.push((Kind::Secret, s.name.clone()));
            }
            if let Some(c) = &vf.config_map_key_ref {
                out.push((Kind::ConfigMap, c.name.clone()));
            }
        }
    }
}

fn volume_refs(pod_name: &str, v: &Volume, out: &mut Vec<(Kind, String)>) {
    let mut secret = |n: &str| out.push((Kind::Secret, n.to_string()));
    if let Some(s) = &v.azure_file {
        secret(&s.secret_name);
    }
    for r in [
        v.cephfs.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.cinder.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.flex_volume.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.rbd.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.iscsi.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.storageos.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.csi.as_ref().and_then(|s| s.node_publish_secret_ref.as_ref()),
        v.scale_io.as_ref().map(|s| &s.secret_ref),
    ]
    .into_iter()
    .flatten()
    {
        secret(&r.name);
    }
    if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
        secret(name);
    }
    if let Some(c) = &v.config_map {
        out.push((Kind::ConfigMap, c.name.clone()));
    }
    for src in v.projected.as_ref().and_then(|p| p.sources.as_ref()).into_iter().flatten() {
        if let Some(s) = &src.secret {
            out.push((Kind::Secret, s.name.clone()));
        }
        if let Some(c) = &src.config_map {
            out.push((Kind::ConfigMap, c.name.clone()));
        }
    }
    if let Some(c) = &v.persistent_volume_claim {
        out.push((Kind::PersistentVolumeClaim, c.claim_name.clone()));
    }
    if v.ephemeral.is_some() {
        out.push((Kind::PersistentVolumeClaim, format!("{pod_name}-{}", v.name)));
    }
}

/// Every object a pod references (kube's pod visitors), without duplicates.
pub fn pod_references(pod: &Pod) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else { return out };
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for s in spec.image_pull_secrets.iter().flatten() {
        out.push((Kind::Secret, s.name.clone()));
    }
    let containers: Vec<&Container> = spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
    for c in containers {
        env_refs(c.env.as_ref(), c.env_from.as_ref(), &mut out);
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        env_refs(c.env.as_ref(), c.env_from.as_ref(), &mut out);
    }
    for v in spec.volumes.iter().flatten() {
        volume_refs(name, v, &mut out);
    }
    if let Some(sa) = spec.service_account_name.as_deref().filter(|s| !s.is_empty()) {
        out.push((Kind::ServiceAccount, sa.to_string()));
    }
    out.retain(|(_, n)| !n.is_empty());
    let mut seen = HashSet::new();
    out.retain(|r| seen.insert(r.clone()));
    out
}

fn pv_secrets(pv: &PersistentVolume) -> Vec<Key> {
    let mut out = Vec::new();
    let Some(spec) = &pv.spec else { return out };
    let mut add = |r: Option<&SecretReference>| {
        if let Some(r) = r
            && let (Some(ns), Some(n)) = (r.namespace.as_deref(), r.name.as_deref())
        {
            out.push((ns.to_string(), n.to_string()));
        }
    };
    if let Some(c) = &spec.csi {
        for r in [
            &c.controller_publish_secret_ref,
            &c.node_stage_secret_ref,
            &c.node_publish_secret_ref,
            &c.controller_expand_secret_ref,
            &c.node_expand_secret_ref,
        ] {
            add(r.as_ref());
        }
    }
    add(spec.cephfs.as_ref().and_then(|s| s.secret_ref.as_ref()));
    add(spec.rbd.as_ref().and_then(|s| s.secret_ref.as_ref()));
    add(spec.flex_volume.as_ref().and_then(|s| s.secret_ref.as_ref()));
    add(spec.iscsi.as_ref().and_then(|s| s.secret_ref.as_ref()));
    add(spec.cinder.as_ref().and_then(|s| s.secret_ref.as_ref()));
    add(spec.scale_io.as_ref().map(|s| &s.secret_ref));
    out
}

impl NodeGraph {
    /// An empty graph.
    pub fn new() -> NodeGraph {
        NodeGraph::default()
    }

    /// Adds or replaces a pod (an unscheduled pod only removes what was there).
    pub fn set_pod(&mut self, pod: &Pod) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.remove_pod(&ns, &name);
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else { return };
        let key = (ns.clone(), name);
        let refs: Vec<ObjKey> = pod_references(pod).into_iter().map(|(k, n)| (k, ns.clone(), n)).collect();
        for r in &refs {
            self.referenced_by.entry(r.clone()).or_default().insert(key.clone());
        }
        self.pods.insert(key, PodEntry { node, refs });
    }

    /// Removes a pod.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = self.pods.remove(&key) {
            for r in old.refs {
                if let Some(set) = self.referenced_by.get_mut(&r) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.referenced_by.remove(&r);
                    }
                }
            }
        }
    }

    /// Adds or replaces a PersistentVolume (its claimRef and the secrets it names).
    pub fn set_persistent_volume(&mut self, pv: &PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.remove_persistent_volume(&name);
        let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|c| Some((c.namespace.clone()?, c.name.clone()?)));
        let secrets = pv_secrets(pv);
        for s in &secrets {
            self.pv_secret_index.entry(s.clone()).or_default().insert(name.clone());
        }
        self.pvs.insert(name, PvEntry { claim, secrets });
    }

    /// Removes a PersistentVolume.
    pub fn remove_persistent_volume(&mut self, name: &str) {
        if let Some(old) = self.pvs.remove(name) {
            for s in old.secrets {
                if let Some(set) = self.pv_secret_index.get_mut(&s) {
                    set.remove(name);
                    if set.is_empty() {
                        self.pv_secret_index.remove(&s);
                    }
                }
            }
        }
    }

    /// Whether some pod bound to `node` references the object.
    fn referenced_from_node(&self, kind: Kind, namespace: &str, name: &str, node: &str) -> bool {
        self.referenced_by
            .get(&(kind, namespace.to_string(), name.to_string()))
            .is_some_and(|pods| pods.iter().any(|p| self.pods.get(p).is_some_and(|e| e.node == node)))
    }

    /// Whether the pod is bound to `node`.
    pub fn pod_on_node(&self, namespace: &str, name: &str, node: &str) -> bool {
        self.pods.get(&(namespace.to_string(), name.to_string())).is_some_and(|p| p.node == node)
    }

    /// Whether the PersistentVolume is bound to a claim a pod on `node` uses.
    pub fn pv_on_node(&self, pv: &str, node: &str) -> bool {
        self.pvs
            .get(pv)
            .and_then(|p| p.claim.as_ref())
            .is_some_and(|(ns, claim)| self.referenced_from_node(Kind::PersistentVolumeClaim, ns, claim, node))
    }

    /// Whether `node` may reach the namespaced object (through a pod, or for a secret also
    /// through a PersistentVolume).
    pub fn reaches(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        if self.referenced_from_node(kind, namespace, name, node) {
            return true;
        }
        kind == Kind::Secret
            && self
                .pv_secret_index
                .get(&(namespace.to_string(), name.to_string()))
                .is_some_and(|pvs| pvs.iter().any(|pv| self.pv_on_node(pv, node)))
    }

    /// Number of pods in the graph.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}
