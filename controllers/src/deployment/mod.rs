//! The Deployment controller (kube's `pkg/controller/deployment`): one ReplicaSet per pod
//! template, rolled from old to new by `RollingUpdate` (maxSurge/maxUnavailable) or
//! `Recreate`, with revisions, rollback by template, proportional scaling, pausing, history
//! cleanup and the Progressing/Available conditions that `kubectl rollout` reads.
//!
//! Invariants:
//! - a sync takes at most one step (create/scale the new ReplicaSet, or scale old ones down)
//!   from the cached state, writes it, and waits for the ReplicaSets' status to move before the
//!   next step — so availability is judged from the ReplicaSet controller's counts, never
//!   guessed;
//! - the Deployment owns exactly the ReplicaSets whose controllerRef names it; matching orphans
//!   are adopted, owned ones that stop matching released (as the ReplicaSet controller does
//!   with pods);
//! - revision numbers only grow: the new ReplicaSet gets max(old revisions) + 1, and the
//!   Deployment's `deployment.kubernetes.io/revision` follows it.
//!
//! Modules: [`util`] (arithmetic, annotations, hash), [`rollout`] (step plans), [`status`]
//! (status and conditions), `sync` (the async shell that applies them).

pub mod rollout;
pub mod status;
mod sync;
pub mod util;

#[cfg(test)]
mod testutil;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::Recorder;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::ownership::controller_of;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use crate::selector::Sel;
use crate::shared::BY_NAMESPACE;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

/// Tunables.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--concurrent-deployment-syncs` (5).
    pub workers: usize,
    /// Test-only switch for keel-sim's planted-bug self-test (issue 23), never set by a flag: a
    /// rolling update sizes its new ReplicaSet straight to `spec.replicas`, ignoring maxSurge, so
    /// the simulation's rollout-bounds checker must catch the surge.
    pub bug_ignore_max_surge: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { workers: 5, bug_ignore_max_surge: false }
    }
}

/// The controller.
pub struct DeploymentController {
    ctx: Context,
    cfg: Config,
    deployments: Arc<Informer<Deployment>>,
    rss: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

/// The Deployment `rs`'s controllerRef names, if the uid matches.
fn owner_of(ds: &Informer<Deployment>, rs: &ReplicaSet) -> Option<Arc<Deployment>> {
    let r = controller_of(&rs.metadata)?;
    if r.kind != "Deployment" {
        return None;
    }
    let d = ds.get(&ObjectKey::new(rs.metadata.namespace.clone().unwrap_or_default(), r.name.clone()))?;
    (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
}

/// Deployments in `rs`'s namespace whose (non-empty) selector matches its labels.
fn matching(ds: &Informer<Deployment>, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    ds.by_index(BY_NAMESPACE, &ns)
        .into_iter()
        .filter(|d| {
            let Some(sel) = d.spec.as_ref().map(|s| &s.selector) else { return false };
            Sel::parse(sel).is_ok_and(|s| !s.is_empty() && s.matches(rs.metadata.labels.as_ref()))
        })
        .collect()
}

fn on_rs(q: &Queue, ds: &Informer<Deployment>, ch: &Change<'_, ReplicaSet>) {
    let add = |d: Arc<Deployment>| q.add(ObjectKey::of(d.as_ref()));
    match ch {
        Change::Added(rs) | Change::Deleted(rs) => {
            if controller_of(&rs.metadata).is_some() {
                owner_of(ds, rs).into_iter().for_each(add);
            } else if matches!(ch, Change::Added(_)) {
                matching(ds, rs).into_iter().for_each(add);
            }
        }
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let ref_changed = controller_of(&old.metadata) != controller_of(&new.metadata);
            if ref_changed {
                owner_of(ds, old).into_iter().for_each(add);
            }
            if controller_of(&new.metadata).is_some() {
                owner_of(ds, new).into_iter().for_each(add);
            } else if ref_changed || old.metadata.labels != new.metadata.labels {
                matching(ds, new).into_iter().for_each(add);
            }
        }
    }
}

impl DeploymentController {
    /// The controller, with its informer handlers registered.
    pub fn new(ctx: &Context, cfg: Config) -> Arc<DeploymentController> {
        let c = Arc::new(DeploymentController {
            ctx: ctx.clone(),
            cfg,
            deployments: ctx.shared.deployments.clone(),
            rss: ctx.shared.replica_sets.clone(),
            pods: ctx.shared.pods.clone(),
            queue: Queue::new("deployment", Some(ctx.metrics.clone())),
            recorder: ctx.recorder.for_component("deployment-controller"),
        });
        let q = c.queue.clone();
        c.deployments.on_change(move |ch: &Change<'_, Deployment>| q.add(ObjectKey::of(ch.object())));
        let (q, ds) = (c.queue.clone(), c.deployments.clone());
        c.rss.on_change(move |ch: &Change<'_, ReplicaSet>| on_rs(&q, &ds, ch));
        // Recreate waits for the old pods to be gone: wake it when one goes.
        let (q, ds, rss) = (c.queue.clone(), c.deployments.clone(), c.rss.clone());
        c.pods.on_change(move |ch: &Change<'_, Pod>| {
            let Change::Deleted(p) = ch else { return };
            let Some(r) = controller_of(&p.metadata).filter(|r| r.kind == "ReplicaSet") else { return };
            let Some(rs) = rss.get(&ObjectKey::new(p.metadata.namespace.clone().unwrap_or_default(), r.name.clone())) else { return };
            if let Some(d) = owner_of(&ds, &rs)
                && !util::is_rolling(&d)
            {
                q.add(ObjectKey::of(d.as_ref()));
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// `--concurrent-deployment-syncs`.
    pub fn workers(&self) -> usize {
        self.cfg.workers
    }
}

impl Reconcile for DeploymentController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.deployments.is_synced() || !self.rss.is_synced() || !self.pods.is_synced() {
            return Err(Error::NotSynced("deployments/replicasets/pods"));
        }
        self.sync(key).await
    }
}
