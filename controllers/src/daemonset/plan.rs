//! What a DaemonSet sync does, without I/O (kube's `podsShouldBeOnNode`, `rollingUpdate`,
//! `updateDaemonSetStatus`): given the nodes and the DaemonSet's pods grouped by target node,
//! which nodes need a pod, which pods go, and the status.
//!
//! Invariants: at most one pod per node (two only while surging: the oldest up-to-date one
//! and the oldest old one); a rolling update without surge removes old pods only while the
//! unavailable count stays within maxUnavailable; with surge it adds at most maxSurge new pods
//! next to available old ones and removes an old pod once its replacement is available.

use super::eligibility::{self, is_updated, should_run};
use crate::deployment::util::scaled_value;
use crate::key::ObjectKey;
use crate::pod;
use crate::replicaset::status::nz;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};

/// The DaemonSet's pods by target node.
pub type ByNode<'a> = BTreeMap<String, Vec<&'a Pod>>;

fn name(n: &Node) -> String {
    n.metadata.name.clone().unwrap_or_default()
}

/// `podByCreationTimestampAndPhase`: scheduled first, then oldest, then by name.
pub fn sort_pods(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let (sa, sb) = (!pod::node_name(a).is_empty(), !pod::node_name(b).is_empty());
        sb.cmp(&sa)
            .then_with(|| a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

fn min_ready(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

fn surge_value(ds: &DaemonSet) -> Option<IntOrString> {
    let s = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if s.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    s.rolling_update.as_ref()?.max_surge.clone()
}

/// `AllowsSurge`: a rolling update with maxSurge > 0.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_value(ds).is_some_and(|v| scaled_value(&v, 1, true).unwrap_or(0) > 0)
}

/// The outcome of [`manage`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manage {
    /// Nodes that need a daemon pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<ObjectKey>,
    /// Nodes whose failed pod is being replaced (start their backoff).
    pub failed_on: Vec<String>,
    /// Nodes skipped because their failed pod's backoff has not passed.
    pub backing_off: Vec<String>,
}

/// `manage`: per node, create a missing pod, delete failed, surplus or misplaced ones; and
/// delete unscheduled pods aimed at nodes that no longer exist.
pub fn manage(ds: &DaemonSet, nodes: &[&Node], by_node: &ByNode<'_>, hash: &str, now: Timestamp, in_backoff: &BTreeSet<String>) -> Manage {
    let mut m = Manage::default();
    let surge = allows_surge(ds);
    for node in nodes {
        let n = name(node);
        let (run, keep) = should_run(node, ds);
        let pods = by_node.get(&n);
        match (run, keep, pods) {
            (true, _, None) => m.create_on.push(n),
            (_, true, pods) => {
                let mut running: Vec<&Pod> = Vec::new();
                for p in pods.into_iter().flatten().copied().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                    match pod::phase(p) {
                        "Failed" => {
                            if in_backoff.contains(&n) {
                                m.backing_off.push(n.clone());
                            } else {
                                m.failed_on.push(n.clone());
                                m.delete.push(ObjectKey::of(p));
                            }
                        }
                        "Succeeded" => m.delete.push(ObjectKey::of(p)),
                        _ => running.push(p),
                    }
                }
                if running.len() <= 1 {
                    continue;
                }
                sort_pods(&mut running);
                if !surge {
                    m.delete.extend(running[1..].iter().map(|p| ObjectKey::of(*p)));
                    continue;
                }
                let (mut oldest_new, mut oldest_old): (Option<&Pod>, Option<&Pod>) = (None, None);
                for p in running {
                    let slot = if is_updated(p, hash, eligibility::template_generation(ds)) { &mut oldest_new } else { &mut oldest_old };
                    if slot.is_none() {
                        *slot = Some(p);
                    } else {
                        m.delete.push(ObjectKey::of(p));
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                    && (!pod::is_ready(old) || pod::is_available(new, min_ready(ds), now))
                {
                    m.delete.push(ObjectKey::of(old));
                }
            }
            (false, false, Some(pods)) => {
                m.delete.extend(pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(|p| ObjectKey::of(*p)));
            }
            _ => {}
        }
    }
    // Unscheduled pods aimed at nodes that are gone would never be scheduled nor collected.
    let names: BTreeSet<String> = nodes.iter().map(|n| name(n)).collect();
    for (n, pods) in by_node {
        if !names.contains(n) {
            m.delete.extend(
                pods.iter().filter(|p| pod::node_name(p).is_empty() && p.metadata.deletion_timestamp.is_none()).map(|p| ObjectKey::of(*p)),
            );
        }
    }
    m
}

/// (new, old) daemon pods on one node; `None` when there are two of either (the manage loop
/// cleans that up first). `findUpdatedPodsOnNode`.
pub fn updated_on_node<'a>(ds: &DaemonSet, pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in pods.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_updated(p, hash, eligibility::template_generation(ds)) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p);
    }
    Some((new, old))
}

/// `updatedDesiredNodeCounts`: (maxSurge, maxUnavailable, desired), with every node that
/// should run a pod present in `by_node`.
pub fn desired_counts<'a>(ds: &DaemonSet, nodes: &[&Node], by_node: &mut ByNode<'a>) -> (usize, usize, usize) {
    let mut desired = 0;
    for node in nodes {
        if should_run(node, ds).0 {
            desired += 1;
            by_node.entry(name(node)).or_default();
        }
    }
    let ru = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let scaled = |v: Option<&IntOrString>, default: i32| {
        v.map(|v| scaled_value(v, desired as i32, true).unwrap_or(default)).unwrap_or(default).max(0) as usize
    };
    let mut unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), 1);
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), 0);
    if desired > 0 && unavailable == 0 && surge == 0 {
        unavailable = 1;
    }
    (surge, unavailable, desired)
}

/// `rollingUpdate`: (pods to delete, nodes to create a new pod on).
pub fn rolling_update(ds: &DaemonSet, nodes: &[&Node], by_node: &ByNode<'_>, hash: &str, now: Timestamp) -> (Vec<ObjectKey>, Vec<String>) {
    let mut by_node = by_node.clone();
    let (max_surge, max_unavailable, desired) = desired_counts(ds, nodes, &mut by_node);
    let avail = |p: &Pod| pod::is_available(p, min_ready(ds), now);
    let node_of = |n: &str| nodes.iter().find(|x| x.metadata.name.as_deref() == Some(n));
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace: Vec<ObjectKey> = Vec::new();
        let mut candidates: Vec<ObjectKey> = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = updated_on_node(ds, pods, hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(n), None) => {
                    if !avail(n) {
                        unavailable += 1;
                    }
                }
                (None, Some(o)) => {
                    if !avail(o) {
                        replace.push(ObjectKey::of(o));
                    } else if unavailable < max_unavailable {
                        candidates.push(ObjectKey::of(o));
                    }
                }
            }
        }
        let room = max_unavailable.saturating_sub(unavailable).min(candidates.len());
        replace.extend(candidates.into_iter().take(room));
        return (replace, vec![]);
    }
    let (mut delete, mut not_run, mut candidates, mut allowed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut surging, mut available) = (0usize, 0usize);
    for (n, pods) in &by_node {
        let Some((new, old)) = updated_on_node(ds, pods, hash) else {
            surging += 1;
            continue;
        };
        if let Some(p) = old.or(new)
            && avail(p)
        {
            available += 1;
        }
        let runs = || node_of(n).is_some_and(|node| should_run(node, ds).0);
        match (new, old) {
            (_, None) => {}
            (None, Some(o)) => {
                if !avail(o) {
                    if runs() { allowed.push(n.clone()) } else { delete.push(ObjectKey::of(o)) }
                } else if !runs() {
                    not_run.push(ObjectKey::of(o));
                } else if surging < max_surge {
                    candidates.push(n.clone());
                }
            }
            (Some(nw), Some(o)) => {
                if avail(nw) {
                    delete.push(ObjectKey::of(o));
                } else {
                    surging += 1;
                }
            }
        }
    }
    if available > desired {
        delete.extend(not_run.into_iter().take(available - desired));
    }
    let room = max_surge.saturating_sub(surging).min(candidates.len());
    allowed.extend(candidates.into_iter().take(room));
    (delete, allowed)
}

/// `updateDaemonSetStatus`'s counts (observedGeneration is the shell's to set).
pub fn status(ds: &DaemonSet, nodes: &[&Node], by_node: &ByNode<'_>, hash: &str, now: Timestamp) -> DaemonSetStatus {
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let (run, _) = should_run(node, ds);
        let pods = by_node.get(&name(node)).filter(|p| !p.is_empty());
        if run {
            desired += 1;
            let Some(pods) = pods else { continue };
            current += 1;
            let mut sorted = pods.clone();
            sort_pods(&mut sorted);
            let p = sorted[0];
            if pod::is_ready(p) {
                ready += 1;
                if pod::is_available(p, min_ready(ds), now) {
                    available += 1;
                }
            }
            if is_updated(p, hash, eligibility::template_generation(ds)) {
                updated += 1;
            }
        } else if pods.is_some() {
            misscheduled += 1;
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: nz(available),
        number_unavailable: nz(desired - available),
        updated_number_scheduled: nz(updated),
        observed_generation: old.observed_generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
