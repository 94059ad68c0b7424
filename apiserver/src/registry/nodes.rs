//! Nodes (`core/v1`, cluster-scoped): `status.allocatable` defaults to the capacity, quantities
//! must parse and not be negative; a create keeps the status it is given (kubelets register
//! with theirs, as in Kubernetes); kubectl's columns (a cordoned node reads
//! `Ready,SchedulingDisabled`) and the `spec.unschedulable` field selector, which, as in
//! Kubernetes, reads `false` for a node without the field.

use crate::registry::quantity;
use crate::registry::strategy::{Column, Strategy, age, name, or_none};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

/// The nodes strategy.
pub struct Nodes;

const COLUMNS: &[Column] = &[("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0), ("Internal-IP", 1)];

impl Strategy for Nodes {
    type Object = Node;

    fn malformed(&self, n: &Node) -> Option<String> {
        let st = n.status.as_ref()?;
        quantity::malformed(st.capacity.iter().chain(st.allocatable.iter()).flat_map(|m| m.values()).map(|q| &q.0))
    }

    /// kube's SetDefaults_NodeStatus: allocatable is the capacity when not given.
    fn default(&self, n: &mut Node) {
        if let Some(st) = n.status.as_mut()
            && st.allocatable.is_none()
        {
            st.allocatable = st.capacity.clone();
        }
    }

    fn validate(&self, n: &Node) -> Vec<Cause> {
        let mut out = Vec::new();
        let st = n.status.as_ref();
        validation::non_negative(st.and_then(|s| s.capacity.as_ref()), "status.capacity", &mut out);
        validation::non_negative(st.and_then(|s| s.allocatable.as_ref()), "status.allocatable", &mut out);
        out
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, n: &Node, now: i64) -> Vec<Value> {
        let status = n.status.as_ref();
        let ready =
            status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready")).map(|c| c.status.as_str());
        let mut st = match ready {
            Some("True") => "Ready".to_string(),
            Some(_) => "NotReady".to_string(),
            None => "Unknown".to_string(),
        };
        if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            st.push_str(",SchedulingDisabled");
        }
        let roles: Vec<&str> = n
            .metadata
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
            .filter(|r| !r.is_empty())
            .collect();
        let internal = status
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone())
            .unwrap_or_default();
        let version = status.and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone()).unwrap_or_default();
        vec![
            json!(name(&n.metadata)),
            json!(st),
            json!(or_none(roles.join(","))),
            json!(age(&n.metadata, now)),
            json!(version),
            json!(or_none(internal)),
        ]
    }

    fn selectable(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn field(&self, n: &Node, field: &str) -> Option<String> {
        (field == "spec.unschedulable").then(|| n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false).to_string())
    }
}
