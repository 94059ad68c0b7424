//! The Node authorizer's graph (kube's `plugin/pkg/auth/authorizer/node/graph_populator.go`),
//! fed from the pods' watch cache: every pod bound to a node links that node to the secrets,
//! configmaps, claims and service account the pod references, so a kubelet may read exactly
//! what its own pods use.
//!
//! Invariants:
//! - The graph holds every stored pod with `spec.nodeName` (and nothing else): a feeder
//!   ([`crate::rest::feed`]) puts each pod as it is now and removes deleted ones.
//! - A stored pod that does not decode as a Pod links nothing (it is removed, and a warning
//!   logged): an unreadable object never grants access.
//! - PersistentVolumes are not served by this apiserver, so no PV edges exist (a kubelet reads
//!   the claims its pods name, not volumes).

use crate::rest::Api;
use crate::rest::feed::{self, Update};
use k8s_openapi::api::core::v1::Pod;
use keel_access::node::{NodeGraph, SharedGraph};
use std::sync::Arc;

/// Applies one pod update to the graph.
pub fn apply(graph: &mut NodeGraph, update: Update<'_>) {
    match update {
        Update::Remove((ns, name)) => graph.remove_pod(ns, name),
        // Decoded from the cached value in place: no copy of the pod per event.
        Update::Put(v) => match <Pod as serde::Deserialize>::deserialize(v) {
            Ok(pod) => graph.set_pod(&pod),
            Err(e) => {
                let (ns, name) = feed::id(v);
                tracing::warn!("node graph: pod {ns}/{name} does not decode: {e}");
                graph.remove_pod(&ns, &name);
            }
        },
    }
}

/// Starts the pods feeder of `graph` in the server's task set; the receiver hears when it has
/// applied its first list.
pub fn feed(api: &Arc<Api>, graph: &SharedGraph) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let pods = feed::resource("", "pods")?;
    let graph = graph.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    api.spawner.spawn(feed::follow(api.clone(), pods, move |u| graph.update(|g| apply(g, u)), tx));
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_access::node::Kind;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, secret: &str) -> serde_json::Value {
        json!({"metadata": {"name": name, "namespace": "dev"}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
            "envFrom": [{"configMapRef": {"name": "cm"}}]}], "volumes": [{"name": "v", "secret": {"secretName": secret}}]}})
    }

    #[test]
    fn pods_link_their_node_to_what_they_reference_until_they_go() {
        let mut g = NodeGraph::new();
        apply(&mut g, Update::Put(&pod("p1", Some("n1"), "s1")));
        apply(&mut g, Update::Put(&pod("p2", None, "s2")));
        assert!(g.reaches("n1", Kind::Secret, "dev", "s1") && g.reaches("n1", Kind::ConfigMap, "dev", "cm"));
        assert!(!g.reaches("n2", Kind::Secret, "dev", "s1"), "another node");
        assert!(!g.reaches("n1", Kind::Secret, "dev", "s2"), "an unscheduled pod links nothing");
        apply(&mut g, Update::Put(&pod("p2", Some("n2"), "s2")));
        assert!(g.reaches("n2", Kind::Secret, "dev", "s2"), "bound later");
        apply(&mut g, Update::Put(&pod("p1", Some("n1"), "s3")));
        assert!(!g.reaches("n1", Kind::Secret, "dev", "s1") && g.reaches("n1", Kind::Secret, "dev", "s3"), "edges follow the pod");
        apply(&mut g, Update::Remove(&("dev".into(), "p1".into())));
        assert!(!g.reaches("n1", Kind::Secret, "dev", "s3") && !g.pod_on_node("dev", "p1", "n1"));
        apply(&mut g, Update::Put(&json!({"metadata": {"name": "p2", "namespace": "dev"}, "spec": {"nodeName": 7}})));
        assert!(!g.reaches("n2", Kind::Secret, "dev", "s2"), "a pod that does not decode links nothing");
        assert_eq!(g.pod_count(), 0);
    }
}
