//! The filter and score plugins of kube-scheduler's default profile that Keel implements, one
//! module per plugin, named as kube's (`pkg/scheduler/framework/plugins/*`). Each is a plain
//! function of a [`PodInfo`] and a [`NodeInfo`]; the framework part (order, first failure wins,
//! weights, normalisation) is [`run_filters`] here and [`crate::score`].
//!
//! Invariants:
//! - Filters run in the default profile's order and a node's status is the *first* failing
//!   plugin's, with all of that plugin's reasons (NodeResourcesFit reports every insufficient
//!   resource at once).
//! - Reason strings are kube-scheduler's, byte for byte: users and tools grep for them.
//! - Failures that removing pods cannot fix are `UnschedulableAndUnresolvable`, so preemption
//!   skips those nodes.

pub mod affinity;
pub mod fit;
pub mod node_name;
pub mod ports;
pub mod taints;
pub mod unschedulable;

use crate::node::NodeInfo;
use crate::pod::PodInfo;
use std::borrow::Cow;

/// Whether evicting pods could make the node fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// Fixable by preemption (resources, ports).
    Unschedulable,
    /// Not fixable by removing pods (labels, taints, cordon, node name).
    UnschedulableAndUnresolvable,
}

/// A filter's refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The plugin that refused (`NodeResourcesFit`).
    pub plugin: &'static str,
    /// Whether preemption may help.
    pub code: Code,
    /// kube-scheduler's reason strings (`Insufficient cpu`).
    pub reasons: Vec<Cow<'static, str>>,
}

impl Status {
    /// One reason.
    pub fn new(plugin: &'static str, code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status { plugin, code, reasons: vec![reason.into()] }
    }
}

/// The outcome of one filter on one node.
pub type Filtered = Result<(), Status>;

/// Runs the filters in the default profile's order (NodeUnschedulable, NodeName,
/// TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit); the first refusal wins.
pub fn run_filters(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    unschedulable::filter(pod, node)?;
    node_name::filter(pod, node)?;
    taints::filter(pod, node)?;
    affinity::filter(pod, node)?;
    ports::filter(pod, node)?;
    fit::filter(pod, node)
}
