//! The ReplicaSet controller (kube's `pkg/controller/replicaset`): keeps `spec.replicas` active
//! pods matching the selector.
//!
//! Invariants:
//! - it acts on counts only when its [`Expectations`] are met, so it never creates or deletes
//!   twice for pods its cache has not seen yet; creates and deletes are capped at
//!   `burst_replicas` per sync and creates go in slow-start batches;
//! - it owns exactly the pods whose controllerRef names its uid; matching orphans are adopted
//!   (after a fresh read confirms the ReplicaSet is not being deleted), owned pods that stop
//!   matching are released;
//! - scale-down deletes the least valuable pods first ([`crate::pod::pick_for_deletion`]);
//! - status is written after every sync in which it changed ([`status`]).

pub mod status;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::{Kind, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::ownership::{self, Claim, controller_of};
use crate::pod;
use crate::podcontrol;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use crate::selector::Sel;
use crate::shared::{BY_CONTROLLER, BY_NAMESPACE, ORPHANS};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use std::sync::Arc;
use std::time::Duration;

/// Tunables (kube-controller-manager's flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// `--concurrent-replicaset-syncs` (5).
    pub workers: usize,
    /// Most pods created or deleted in one sync (kube's `BurstReplicas`, 500).
    pub burst_replicas: usize,
    /// A planted bug, for keel-sim's self-test only (issue 23; no flag sets it): the controller
    /// ignores its expectations and acts on the informer's count alone, so a stale cache makes
    /// it create or delete again. Set through [`crate::manager::Config::bug_ignore_expectations`].
    pub bug_ignore_expectations: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { workers: 5, burst_replicas: 500, bug_ignore_expectations: false }
    }
}

/// The controller.
pub struct ReplicaSetController {
    ctx: Context,
    cfg: Config,
    pods: Arc<Informer<Pod>>,
    rss: Arc<Informer<ReplicaSet>>,
    queue: Arc<Queue>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// The ReplicaSet named by `pod`'s controllerRef, if it is one and the uid matches.
fn resolve(rss: &Informer<ReplicaSet>, pod: &Pod) -> Option<Arc<ReplicaSet>> {
    let r = controller_of(&pod.metadata)?;
    if r.kind != "ReplicaSet" || !r.api_version.starts_with("apps/") {
        return None;
    }
    let rs = rss.get(&ObjectKey::new(pod.metadata.namespace.clone().unwrap_or_default(), r.name.clone()))?;
    (rs.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(rs)
}

/// The ReplicaSets in `pod`'s namespace whose selector matches it (non-empty selectors only).
fn matching(rss: &Informer<ReplicaSet>, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    rss.by_index(BY_NAMESPACE, &ns)
        .into_iter()
        .filter(|rs| {
            let Some(sel) = rs.spec.as_ref().map(|s| &s.selector) else { return false };
            Sel::parse(sel).is_ok_and(|s| !s.is_empty() && s.matches(pod.metadata.labels.as_ref()))
        })
        .collect()
}

impl ReplicaSetController {
    /// The controller, with its informer handlers registered.
    pub fn new(ctx: &Context, cfg: Config) -> Arc<ReplicaSetController> {
        let c = Arc::new(ReplicaSetController {
            ctx: ctx.clone(),
            cfg,
            pods: ctx.shared.pods.clone(),
            rss: ctx.shared.replica_sets.clone(),
            queue: Queue::new("replicaset", Some(ctx.metrics.clone())),
            expectations: Arc::new(Expectations::new()),
            recorder: ctx.recorder.for_component("replicaset-controller"),
        });
        let q = c.queue.clone();
        c.rss.on_change(move |ch: &Change<'_, ReplicaSet>| q.add(ObjectKey::of(ch.object())));
        let (q, rss, exp) = (c.queue.clone(), c.rss.clone(), c.expectations.clone());
        c.pods.on_change(move |ch: &Change<'_, Pod>| on_pod(&q, &rss, &exp, ch));
        c
    }

    /// The work queue (the manager shuts it down).
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// `--concurrent-replicaset-syncs`.
    pub fn workers(&self) -> usize {
        self.cfg.workers
    }

    async fn sync(&self, key: &ObjectKey) -> Result<Action> {
        if !self.rss.is_synced() || !self.pods.is_synced() {
            return Err(Error::NotSynced("replicasets/pods"));
        }
        let Some(rs) = self.rss.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let now_mono = tokio::time::Instant::now();
        let needs_sync = self.cfg.bug_ignore_expectations || self.expectations.satisfied(key, now_mono);
        let spec = rs.spec.clone().unwrap_or_default();
        let sel = match Sel::parse(&spec.selector) {
            Ok(s) => s,
            Err(why) => {
                self.recorder.record(rs.as_ref(), Kind::Warning, "InvalidSelector", format!("invalid selector: {why}"));
                return Ok(Action::Done);
            }
        };
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let mut candidates = self.pods.by_index(BY_CONTROLLER, &uid);
        candidates.extend(self.pods.by_index(ORPHANS, &key.namespace));
        let active: Vec<Arc<Pod>> = candidates.into_iter().filter(|p| pod::is_active(p)).collect();
        let owned = self.claim(&rs, &sel, active).await?;
        let owned_refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();

        let mut manage_error = None;
        if needs_sync
            && rs.metadata.deletion_timestamp.is_none()
            && let Err(e) = self.manage(key, &rs, &owned_refs).await
        {
            manage_error = Some(e);
        }
        let now = self.ctx.clock.now();
        let msg = manage_error.as_ref().map(|e| e.to_string());
        let mut new_status = status::calculate(&rs, &owned_refs, msg.as_deref(), now);
        let mut updated = rs.as_ref().clone();
        if status::needs_update(&rs, &new_status) {
            new_status.observed_generation = rs.metadata.generation;
            updated.status = Some(new_status);
            updated.metadata.managed_fields = None;
            let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
            match api.replace_status(&key.name, &PostParams::default(), &updated).await {
                Ok(rs) => updated = rs,
                Err(e) => {
                    let e = Error::from(e);
                    return Err(if e.is_conflict() { Error::Conflict(key.to_string()) } else { e });
                }
            }
        }
        if let Some(e) = manage_error {
            return Err(e);
        }
        let st = updated.status.clone().unwrap_or_default();
        let (desired, min_ready) = (status::desired(&updated), status::min_ready_seconds(&updated));
        if min_ready > 0 && st.ready_replicas.unwrap_or(0) == desired && st.available_replicas.unwrap_or(0) != desired {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }

    /// Adopts matching orphans, releases owned pods that stopped matching; returns the owned,
    /// matching pods.
    async fn claim(&self, rs: &Arc<ReplicaSet>, sel: &Sel, pods: Vec<Arc<Pod>>) -> Result<Vec<Arc<Pod>>> {
        let mut owned = Vec::new();
        let mut may_adopt: Option<bool> = None;
        let owner_ref = ownership::controller_ref(rs.as_ref());
        for p in pods {
            let matches = sel.matches(p.metadata.labels.as_ref());
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            let pod_uid = p.metadata.uid.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            match ownership::claim(&rs.metadata, &p.metadata, matches) {
                Claim::Own => owned.push(p),
                Claim::Ignore => {}
                Claim::Release => {
                    let patch = ownership::release_patch(&owner_ref.uid, &pod_uid);
                    if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                        let e = Error::from(e);
                        if !e.is_not_found() {
                            return Err(e);
                        }
                    }
                }
                Claim::Adopt => {
                    if may_adopt.is_none() {
                        may_adopt = Some(self.can_adopt(rs).await?);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let patch = ownership::adopt_patch(&owner_ref, &pod_uid);
                    match api.patch(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        Err(e) => {
                            let e = Error::from(e);
                            if !e.is_not_found() {
                                return Err(e);
                            }
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    /// A fresh read: adoption only by a ReplicaSet that exists with this uid and is not being
    /// deleted (kube's `RecheckDeletionTimestamp`).
    async fn can_adopt(&self, rs: &ReplicaSet) -> Result<bool> {
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &ns);
        let fresh = api.get(rs.metadata.name.as_deref().unwrap_or_default()).await?;
        Ok(fresh.metadata.uid == rs.metadata.uid && fresh.metadata.deletion_timestamp.is_none())
    }

    /// How many active pods `rs` controls, by a list from the store (no resourceVersion: a
    /// quorum read), narrowed by the selector's matchLabels and counted by controller UID.
    async fn fresh_owned_count(&self, key: &ObjectKey, rs: &ReplicaSet) -> Result<usize> {
        let uid = rs.metadata.uid.as_deref().unwrap_or_default();
        let labels = rs.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
        let selector = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let pods = api.list(&ListParams::default().labels(&selector)).await?;
        Ok(pods.items.iter().filter(|p| pod::is_active(p) && ownership::is_controlled_by(&p.metadata, uid)).count())
    }

    async fn manage(&self, key: &ObjectKey, rs: &Arc<ReplicaSet>, owned: &[&Pod]) -> Result<()> {
        let want = status::desired(rs).max(0) as usize;
        let have = owned.len();
        let now_mono = tokio::time::Instant::now();
        if have < want && !self.cfg.bug_ignore_expectations && self.expectations.uncertain(key) {
            // A create of ours failed but may have been written: count from the store, not the
            // cache, before making its replacement (an error here retries with backoff). While
            // the store holds pods the cache has not shown, wait for the cache: their Added
            // events queue this ReplicaSet again (and the delayed add below in case none
            // comes), and only a count in which the cache has caught up settles the doubt.
            // No expectation is raised for those pods: they exist already, so the informer may
            // have handled their Added event while the list was in flight, and an expectation
            // raised after its observation is never met; the ReplicaSet then ignored every
            // scale for TTL (keel-sim controlplane seed 634: a ReplicaSet scaled 2 -> 1 -> 0
            // kept both pods). client-go raises an expectation only before the request whose
            // result it will observe.
            let fresh = self.fresh_owned_count(key, rs).await?;
            if fresh > have {
                self.queue.add_after(key.clone(), Duration::from_secs(1));
                return Ok(());
            }
            self.expectations.set_uncertain(key, false);
        }
        if have < want {
            let n = (want - have).min(self.cfg.burst_replicas);
            self.expectations.expect_creations(key, n, now_mono);
            let spec = rs.spec.clone().unwrap_or_default();
            let Some(template) = spec.template else {
                for _ in 0..n {
                    self.expectations.creation_observed(key);
                }
                return Err(Error::Invalid { what: key.to_string(), why: "spec.template is required".into() });
            };
            let owner = ownership::controller_ref(rs.as_ref());
            let new_pod = podcontrol::from_template(&template, &key.namespace, &key.name, owner);
            let (created, err) = podcontrol::slow_start(n, podcontrol::SLOW_START_INITIAL_BATCH, |_| async {
                match podcontrol::create(&self.ctx.client, &new_pod).await {
                    Ok(p) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        self.recorder.record(rs.as_ref(), Kind::Normal, "SuccessfulCreate", format!("Created pod: {name}"));
                        Ok(p)
                    }
                    Err(e) => {
                        if !e.is_namespace_terminating() {
                            self.recorder.record(rs.as_ref(), Kind::Warning, "FailedCreate", format!("Error creating: {e}"));
                        }
                        Err(e)
                    }
                }
            })
            .await;
            // Creates that failed or were skipped will never be observed.
            for _ in created.len()..n {
                self.expectations.creation_observed(key);
            }
            if err.as_ref().is_some_and(Error::is_indeterminate) {
                self.expectations.set_uncertain(key, true);
            }
            return match err {
                Some(e) if e.is_namespace_terminating() => Ok(()),
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        if have > want {
            let n = (have - want).min(self.cfg.burst_replicas);
            let related = self.related_pods(rs);
            let related_refs: Vec<&Pod> = related.iter().map(|p| p.as_ref()).collect();
            let victims = pod::pick_for_deletion(owned, &related_refs, n, self.ctx.clock.now());
            let keys: Vec<ObjectKey> = victims.iter().map(|p| ObjectKey::of(*p)).collect();
            self.expectations.expect_deletions(key, &keys, now_mono);
            let results = join_all(victims.iter().map(|p| async {
                let pk = ObjectKey::of(*p);
                let r = podcontrol::delete(&self.ctx.client, &pk.namespace, &pk.name).await;
                match &r {
                    Ok(true) => self.recorder.record(rs.as_ref(), Kind::Normal, "SuccessfulDelete", format!("Deleted pod: {}", pk.name)),
                    // Already gone: its Deleted event may have come before the expectation.
                    Ok(false) => self.expectations.deletion_observed(key, &pk),
                    Err(e) => {
                        self.expectations.deletion_observed(key, &pk);
                        self.recorder.record(rs.as_ref(), Kind::Warning, "FailedDelete", format!("Error deleting: {e}"));
                    }
                }
                r
            }))
            .await;
            if let Some(e) = results.into_iter().find_map(|r| r.err()) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Active pods of every ReplicaSet controlled by the same owner as `rs` (for the
    /// "doubled up on a node" rank).
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let own = || self.pods.by_index(BY_CONTROLLER, rs.metadata.uid.as_deref().unwrap_or_default());
        let Some(owner) = controller_of(&rs.metadata) else { return own() };
        let siblings = self.rss.by_index(BY_CONTROLLER, &owner.uid);
        let mut out: Vec<Arc<Pod>> = Vec::new();
        for s in siblings {
            out.extend(
                self.pods.by_index(BY_CONTROLLER, s.metadata.uid.as_deref().unwrap_or_default()).into_iter().filter(|p| pod::is_active(p)),
            );
        }
        out
    }
}

impl Reconcile for ReplicaSetController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        self.sync(key).await
    }
}

/// A pod deleted (or marked for deletion): count it against its ReplicaSet's expectations.
fn pod_gone(q: &Queue, rss: &Informer<ReplicaSet>, exp: &Expectations, p: &Pod) {
    if let Some(rs) = resolve(rss, p) {
        let rk = ObjectKey::of(rs.as_ref());
        exp.deletion_observed(&rk, &ObjectKey::of(p));
        q.add(rk);
    }
}

/// kube's addPod/updatePod/deletePod: wake the ReplicaSets a pod change matters to.
fn on_pod(q: &Queue, rss: &Informer<ReplicaSet>, exp: &Expectations, ch: &Change<'_, Pod>) {
    match ch {
        Change::Added(p) => {
            if p.metadata.deletion_timestamp.is_some() {
                return pod_gone(q, rss, exp, p);
            }
            if controller_of(&p.metadata).is_some() {
                if let Some(rs) = resolve(rss, p) {
                    let rk = ObjectKey::of(rs.as_ref());
                    exp.creation_observed(&rk);
                    q.add(rk);
                }
                return;
            }
            for rs in matching(rss, p) {
                q.add(ObjectKey::of(rs.as_ref()));
            }
        }
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let labels_changed = old.metadata.labels != new.metadata.labels;
            if new.metadata.deletion_timestamp.is_some() {
                pod_gone(q, rss, exp, new);
                if labels_changed {
                    pod_gone(q, rss, exp, old);
                }
                return;
            }
            let ref_changed = controller_of(&old.metadata) != controller_of(&new.metadata);
            if ref_changed && let Some(rs) = resolve(rss, old) {
                q.add(ObjectKey::of(rs.as_ref()));
            }
            if controller_of(&new.metadata).is_some() {
                if let Some(rs) = resolve(rss, new) {
                    let rk = ObjectKey::of(rs.as_ref());
                    let min_ready = status::min_ready_seconds(&rs);
                    if !pod::is_ready(old) && pod::is_ready(new) && min_ready > 0 {
                        // A second more, against clock skew between us and the kubelet.
                        q.add_after(rk.clone(), Duration::from_secs(min_ready as u64 + 1));
                    }
                    q.add(rk);
                }
                return;
            }
            if labels_changed || ref_changed {
                for rs in matching(rss, new) {
                    q.add(ObjectKey::of(rs.as_ref()));
                }
            }
        }
        Change::Deleted(p) => pod_gone(q, rss, exp, p),
    }
}

#[cfg(test)]
mod uncertain_tests;
