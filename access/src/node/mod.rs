//! The Node authorizer (kube's `plugin/pkg/auth/authorizer/node`, with
//! `AuthorizeNodeWithSelectors` as in 1.32+): a kubelet (`system:node:<name>` in
//! `system:nodes`) may read only its own Node, the pods bound to it, and the secrets,
//! configmaps, claims, volumes and service-account tokens those pods need.
//!
//! Invariants (kube's):
//! - Requests from anyone but a node get no opinion (RBAC decides them).
//! - Secrets and configmaps: get/list/watch of one named object reachable in the graph;
//!   claims and volumes: get of a reachable one; serviceaccounts: only `create token` for a
//!   reachable one; pods: get a bound one, list/watch only with `spec.nodeName=<self>`;
//!   nodes: read only itself, create/update/patch (NodeRestriction admission limits those);
//!   leases: only its own in `kube-node-lease`.
//! - Everything else is checked against the static node rules (`system:node`'s rules).
//!
//! Lock order: the graph has one `RwLock`, held for one decision or one update.

mod graph;

pub use graph::{Kind, NodeGraph, pod_references};

use crate::attributes::{Attributes, FieldOp};
use crate::authz::{Authorizer, RuleSet, Verdict};
use crate::rbac::bootstrap::node_rules;
use crate::rbac::rule::rules_allow;
use crate::user::UserInfo;
use k8s_openapi::api::rbac::v1::PolicyRule;
use std::sync::{Arc, RwLock};

/// The graph shared between the watches that feed it and the requests that read it.
#[derive(Debug, Clone, Default)]
pub struct SharedGraph(Arc<RwLock<NodeGraph>>);

impl SharedGraph {
    /// Reads the graph.
    pub fn read<T>(&self, f: impl FnOnce(&NodeGraph) -> T) -> T {
        // Updates are a few map operations; a poisoned lock still holds consistent maps.
        let g = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&g)
    }

    /// Changes the graph (a watch event).
    pub fn update<T>(&self, f: impl FnOnce(&mut NodeGraph) -> T) -> T {
        let mut g = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }
}

/// The namespace of node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The Node authorizer.
pub struct NodeAuthorizer {
    graph: SharedGraph,
    rules: Vec<PolicyRule>,
}

fn no(reason: impl Into<String>) -> Verdict {
    Verdict::no_opinion(reason)
}

fn yes() -> Verdict {
    Verdict::allow("")
}

fn no_relationship(node: &str) -> Verdict {
    no(format!("no relationship found between node '{node}' and this object"))
}

impl NodeAuthorizer {
    /// An authorizer over `graph` with kube's node rules.
    pub fn new(graph: SharedGraph) -> NodeAuthorizer {
        NodeAuthorizer { graph, rules: node_rules() }
    }

    fn related(&self, node: &str, a: &Attributes, kind: Option<Kind>) -> Verdict {
        if a.name.is_empty() {
            return no("No Object name found");
        }
        let ok = self.graph.read(|g| match (kind, a.resource.as_str()) {
            (Some(k), _) => g.reaches(node, k, &a.namespace, &a.name),
            (None, "pods") => g.pod_on_node(&a.namespace, &a.name, node),
            (None, _) => g.pv_on_node(&a.name, node),
        });
        if ok { yes() } else { no_relationship(node) }
    }

    fn get_only(&self, node: &str, a: &Attributes, kind: Option<Kind>) -> Verdict {
        if a.verb != "get" {
            return no("can only get individual resources of this type");
        }
        if !a.subresource.is_empty() {
            return no("cannot get subresource");
        }
        self.related(node, a, kind)
    }

    fn read_namespaced(&self, node: &str, a: &Attributes, kind: Kind) -> Verdict {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if !a.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if a.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        self.related(node, a, Some(kind))
    }

    fn pvc(&self, node: &str, a: &Attributes) -> Verdict {
        if a.subresource == "status" {
            if !matches!(a.verb.as_str(), "update" | "patch") {
                return no("can only get/update/patch this type");
            }
            return self.related(node, a, Some(Kind::PersistentVolumeClaim));
        }
        self.get_only(node, a, Some(Kind::PersistentVolumeClaim))
    }

    fn create_token(&self, node: &str, a: &Attributes) -> Verdict {
        if a.verb != "create" || a.name.is_empty() {
            return no("can only create tokens for individual service accounts");
        }
        if a.subresource != "token" {
            return no("can only create token subresource of serviceaccount");
        }
        self.related(node, a, Some(Kind::ServiceAccount))
    }

    fn lease(&self, node: &str, a: &Attributes) -> Verdict {
        if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
            return no("can only get, create, update, patch, or delete a node lease");
        }
        if a.namespace != NODE_LEASE_NAMESPACE {
            return no(format!("can only access leases in the \"{NODE_LEASE_NAMESPACE}\" system namespace"));
        }
        if a.verb != "create" && a.name != node {
            return no("can only access node lease with the same name as the requesting node");
        }
        yes()
    }

    fn csi_node(&self, node: &str, a: &Attributes) -> Verdict {
        if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
            return no("can only get, create, update, patch, or delete a CSINode");
        }
        if !a.subresource.is_empty() {
            return no("cannot authorize CSINode subresources");
        }
        if a.verb != "create" && a.name != node {
            return no("can only access CSINode with the same name as the requesting node");
        }
        yes()
    }

    fn node(&self, node: &str, a: &Attributes) -> Verdict {
        match (a.subresource.as_str(), a.verb.as_str()) {
            ("", "create" | "update" | "patch") => yes(),
            ("", "get" | "list" | "watch") => {
                if a.name == node {
                    yes()
                } else if a.name.is_empty() {
                    no(format!("node '{node}' cannot read all nodes, only its own Node object"))
                } else {
                    no(format!("node '{node}' cannot read '{}', only its own Node object", a.name))
                }
            }
            ("status", "update" | "patch") => yes(),
            _ => no(""),
        }
    }

    fn pod(&self, node: &str, a: &Attributes) -> Verdict {
        match (a.subresource.as_str(), a.verb.as_str()) {
            ("", "get") => self.get_only(node, a, None),
            ("", "list" | "watch") => {
                let scoped = a.field_selector.iter().any(|r| r.field == "spec.nodeName" && r.op == FieldOp::Equals && r.value == node);
                if scoped {
                    yes()
                } else if !a.name.is_empty() {
                    self.related(node, a, None)
                } else {
                    no("can only list/watch pods with spec.nodeName field selector")
                }
            }
            // Mirror pods, pod status and evictions; NodeRestriction admission limits them to
            // the node's own pods.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => yes(),
            _ => no(""),
        }
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, a: &Attributes) -> Verdict {
        let Some(node) = a.user.node_name() else { return no("") };
        if node.is_empty() {
            return no(format!("unknown node for user \"{}\"", a.user.name));
        }
        if a.resource_request {
            let v = match (a.api_group.as_str(), a.resource.as_str()) {
                ("", "secrets") => Some(self.read_namespaced(node, a, Kind::Secret)),
                ("", "configmaps") => Some(self.read_namespaced(node, a, Kind::ConfigMap)),
                ("", "persistentvolumeclaims") => Some(self.pvc(node, a)),
                ("", "persistentvolumes") => Some(self.get_only(node, a, None)),
                ("", "serviceaccounts") => Some(self.create_token(node, a)),
                ("coordination.k8s.io", "leases") => Some(self.lease(node, a)),
                ("storage.k8s.io", "csinodes") => Some(self.csi_node(node, a)),
                ("", "nodes") => Some(self.node(node, a)),
                ("", "pods") => Some(self.pod(node, a)),
                _ => None,
            };
            if let Some(v) = v {
                return v;
            }
        }
        if rules_allow(a, &self.rules) { yes() } else { no("") }
    }

    fn rules_for(&self, user: &UserInfo, _: &str) -> RuleSet {
        if user.node_name().is_some() {
            RuleSet { incomplete: true, error: "node authorizer does not support user rule resolution".into(), ..Default::default() }
        } else {
            RuleSet::default()
        }
    }
}

#[cfg(test)]
mod tests;
