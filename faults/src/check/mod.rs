//! The checkers, one guarantee per file, each a pure function of a [`History`]:
//!
//! | file | guarantee |
//! |---|---|
//! | [`single_binding`] | no pod is bound twice or rebound |
//! | [`single_leader`] | at most one scheduler and one controller-manager act at any instant |
//! | [`rollout_bounds`] | every Deployment's ReplicaSets and pods stay within replicas + maxSurge |
//! | [`one_pod_per_slot`] | no ReplicaSet gets a pod created for a slot it already filled |
//! | [`deployments_converge`] | after the faults stop, every Deployment converges within a bound |
//! | [`acknowledged_writes_kept`] | no acknowledged write is lost |
//!
//! [`index`] is the incremental view the two rollout checkers share. Each checker's tests
//! include a planted history it must reject.

pub mod acknowledged_writes_kept;
pub mod deployments_converge;
pub mod index;
pub mod one_pod_per_slot;
pub mod rollout_bounds;
pub mod single_binding;
pub mod single_leader;

use crate::history::{History, Violation};
use crate::locate::locate;
use std::time::Duration;

/// What the checkers are told beyond the history.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// How long after the faults stop every Deployment must have converged.
    pub converge_within: Duration,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds { converge_within: Duration::from_secs(120) }
    }
}

/// Every checker's violations, in the table's order.
pub fn all(h: &History, bounds: &Bounds) -> Vec<Violation> {
    let located = locate(&h.events, &h.acts);
    let mut out = single_binding::check(h, &located);
    out.extend(single_leader::check(h, &located));
    out.extend(rollout_bounds::check(h));
    out.extend(one_pod_per_slot::check(h));
    out.extend(deployments_converge::check(h, bounds.converge_within));
    out.extend(acknowledged_writes_kept::check(h, &located));
    out
}
