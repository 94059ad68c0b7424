//! The workload objects at one revision, kept up to date event by event for the rollout
//! checkers: pods counted per controlling ReplicaSet (active ones only, as kube's controller
//! counts them), ReplicaSets per controlling Deployment, and for each ReplicaSet and Deployment
//! the replica counts its controller may still be acting on.
//!
//! "May still be acting on": a controller writes `status.observedGeneration` at the end of a
//! sync that saw that generation, after the sync's creations, deletions and scalings returned.
//! So at any revision the controller's writes follow some version whose generation is at least
//! the observed one; the largest count among those versions is what it may still be reaching
//! for ([`Index::rs_allowed`], [`Index::deployment_allowed`]).

use crate::history::{Op, StoreEvent};
use crate::objects::{self, DEPLOYMENTS, PODS, REPLICASETS};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct PodEntry {
    rs: Option<String>,
    active: bool,
}

/// One ReplicaSet.
#[derive(Clone, Debug, Default)]
pub struct RsEntry {
    /// Its key.
    pub key: String,
    /// The uid of its controlling Deployment.
    pub owner: Option<String>,
    /// `spec.replicas` now.
    pub replicas: i64,
    observed: i64,
    // (generation, spec.replicas) of the versions not yet superseded by an observed generation.
    specs: Vec<(i64, i64)>,
}

/// One Deployment.
#[derive(Clone, Debug, Default)]
pub struct DeploymentEntry {
    /// Its key.
    pub key: String,
    /// `replicas + maxSurge` now.
    pub max_total: i64,
    observed: i64,
    // (generation, replicas + maxSurge) of versions not yet superseded.
    bounds: Vec<(i64, i64)>,
}

/// What one event changed, for the checkers to re-evaluate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// A new pod (a uid not seen before) controlled by this ReplicaSet uid.
    pub created_for: Option<String>,
    /// Deployments whose ReplicaSets' counts or own bounds changed.
    pub deployments: Vec<String>,
}

/// See the module doc.
#[derive(Clone, Debug, Default)]
pub struct Index {
    pods: BTreeMap<String, PodEntry>,
    seen_pod_uids: std::collections::BTreeSet<String>,
    active_by_rs: BTreeMap<String, i64>,
    rs: BTreeMap<String, RsEntry>,
    rs_by_key: BTreeMap<String, String>,
    deployments: BTreeMap<String, DeploymentEntry>,
    deployment_by_key: BTreeMap<String, String>,
}

fn max_since(versions: &[(i64, i64)], observed: i64) -> i64 {
    versions.iter().filter(|(g, _)| *g >= observed).map(|(_, n)| *n).max().unwrap_or(0)
}

fn push_version(versions: &mut Vec<(i64, i64)>, generation: i64, n: i64, observed: i64) {
    versions.retain(|(g, _)| *g >= observed);
    versions.push((generation, n));
}

impl Index {
    /// Applies one event.
    pub fn apply(&mut self, e: &StoreEvent) -> Touched {
        let mut t = Touched::default();
        let obj = e.object.as_ref().filter(|_| e.op == Op::Put);
        if e.key.starts_with(PODS) {
            if let Some(PodEntry { rs: Some(rs), active: true }) = self.pods.remove(&e.key) {
                *self.active_by_rs.entry(rs.clone()).or_default() -= 1;
                t.deployments.extend(self.rs.get(&rs).and_then(|r| r.owner.clone()));
            }
            if let Some(o) = obj {
                let uid = objects::uid(o).unwrap_or_default().to_string();
                let rs = objects::controlled_by(o, "ReplicaSet").map(str::to_string);
                let active = objects::active(o);
                if let (Some(rs), true) = (&rs, active) {
                    *self.active_by_rs.entry(rs.clone()).or_default() += 1;
                    t.deployments.extend(self.rs.get(rs).and_then(|r| r.owner.clone()));
                }
                if self.seen_pod_uids.insert(uid) {
                    t.created_for = rs.clone();
                }
                self.pods.insert(e.key.clone(), PodEntry { rs, active });
            }
        } else if e.key.starts_with(REPLICASETS) {
            if let Some(old_uid) = self.rs_by_key.remove(&e.key) {
                if let Some(old) = self.rs.get(&old_uid) {
                    t.deployments.extend(old.owner.clone());
                }
                if obj.and_then(objects::uid) != Some(old_uid.as_str()) {
                    self.rs.remove(&old_uid);
                }
            }
            if let Some(o) = obj {
                let uid = objects::uid(o).unwrap_or_default().to_string();
                let entry = self.rs.entry(uid.clone()).or_default();
                entry.key = e.key.clone();
                entry.owner = objects::controlled_by(o, "Deployment").map(str::to_string);
                entry.replicas = objects::replicas(o);
                entry.observed = objects::observed_generation(o);
                push_version(&mut entry.specs, objects::generation(o), entry.replicas, entry.observed);
                t.deployments.extend(entry.owner.clone());
                self.rs_by_key.insert(e.key.clone(), uid);
            }
        } else if e.key.starts_with(DEPLOYMENTS) {
            if let Some(old_uid) = self.deployment_by_key.remove(&e.key)
                && obj.and_then(objects::uid) != Some(old_uid.as_str())
            {
                self.deployments.remove(&old_uid);
            }
            if let Some(o) = obj {
                let uid = objects::uid(o).unwrap_or_default().to_string();
                let entry = self.deployments.entry(uid.clone()).or_default();
                entry.key = e.key.clone();
                entry.max_total = objects::max_total_pods(o);
                entry.observed = objects::observed_generation(o);
                push_version(&mut entry.bounds, objects::generation(o), entry.max_total, entry.observed);
                t.deployments.push(uid.clone());
                self.deployment_by_key.insert(e.key.clone(), uid);
            }
        }
        t.deployments.sort();
        t.deployments.dedup();
        t
    }

    /// Active pods controlled by the ReplicaSet `rs_uid`.
    pub fn active_pods(&self, rs_uid: &str) -> i64 {
        self.active_by_rs.get(rs_uid).copied().unwrap_or(0)
    }

    /// The ReplicaSet `uid`, while it exists.
    pub fn replicaset(&self, uid: &str) -> Option<&RsEntry> {
        self.rs.get(uid)
    }

    /// The Deployment `uid`, while it exists.
    pub fn deployment(&self, uid: &str) -> Option<&DeploymentEntry> {
        self.deployments.get(uid)
    }

    /// The most replicas the ReplicaSet controller may be reaching for (module doc).
    pub fn rs_allowed(&self, uid: &str) -> Option<i64> {
        self.rs.get(uid).map(|r| max_since(&r.specs, r.observed))
    }

    /// The most pods (`replicas + maxSurge`) the Deployment controller may be reaching for.
    pub fn deployment_allowed(&self, uid: &str) -> Option<i64> {
        self.deployments.get(uid).map(|d| max_since(&d.bounds, d.observed))
    }

    /// The ReplicaSets controlled by Deployment `uid`: (rs uid, entry).
    pub fn replicasets_of<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = (&'a str, &'a RsEntry)> + 'a {
        self.rs.iter().filter(move |(_, r)| r.owner.as_deref() == Some(uid)).map(|(u, r)| (u.as_str(), r))
    }
}
