//! The DaemonSet controller (kube's `pkg/controller/daemon`): one pod per eligible node
//! ([`eligibility`]), placed through the default scheduler by a required node affinity on the
//! node's name, replaced by `RollingUpdate` (maxUnavailable / maxSurge) or on delete
//! (`OnDelete`), with ControllerRevisions as history (`history`).
//!
//! Invariants: pod counts change only when the DaemonSet's expectations are met (as the
//! ReplicaSet controller); a node whose daemon pod keeps failing is retried with per-node
//! backoff (1 s doubling to 15 min) so the controller never fights a kubelet that rejects the
//! pod; the plan for a sync comes from [`plan`] alone.

pub mod eligibility;
mod history;
pub mod plan;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::{Kind, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::ownership::{self, Claim, controller_of};
use crate::podcontrol;
use crate::queue::Queue;
use crate::replicaset::status::nz;
use crate::runner::{Action, Reconcile};
use crate::selector::Sel;
use crate::shared::{BY_CONTROLLER, BY_NAMESPACE, ORPHANS};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Tunables.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--concurrent-daemonset-syncs` (2).
    pub workers: usize,
    /// Most pods created or deleted per sync (kube's `BurstReplicas`, 250).
    pub burst_replicas: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { workers: 2, burst_replicas: 250 }
    }
}

const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// The controller.
pub struct DaemonSetController {
    ctx: Context,
    cfg: Config,
    dss: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Option<Arc<Informer<ControllerRevision>>>,
    queue: Arc<Queue>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
    /// (DaemonSet, node) → (retry not before, current delay).
    backoff: Mutex<HashMap<(ObjectKey, String), (Instant, Duration)>>,
}

fn resolve(dss: &Informer<DaemonSet>, p: &Pod) -> Option<Arc<DaemonSet>> {
    let r = controller_of(&p.metadata)?;
    if r.kind != "DaemonSet" {
        return None;
    }
    let ds = dss.get(&ObjectKey::new(p.metadata.namespace.clone().unwrap_or_default(), r.name.clone()))?;
    (ds.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(ds)
}

fn matching(dss: &Informer<DaemonSet>, p: &Pod) -> Vec<Arc<DaemonSet>> {
    dss.by_index(BY_NAMESPACE, p.metadata.namespace.as_deref().unwrap_or_default())
        .into_iter()
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| Sel::parse(&s.selector).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(p.metadata.labels.as_ref()))
        })
        .collect()
}

fn on_pod(q: &Queue, dss: &Informer<DaemonSet>, exp: &Expectations, ch: &Change<'_, Pod>) {
    let gone = |p: &Pod| {
        if let Some(ds) = resolve(dss, p) {
            let k = ObjectKey::of(ds.as_ref());
            exp.deletion_observed(&k, &ObjectKey::of(p));
            q.add(k);
        }
    };
    match ch {
        Change::Added(p) => {
            if p.metadata.deletion_timestamp.is_some() {
                return gone(p);
            }
            match resolve(dss, p) {
                Some(ds) => {
                    let k = ObjectKey::of(ds.as_ref());
                    exp.creation_observed(&k);
                    q.add(k);
                }
                None if controller_of(&p.metadata).is_none() => matching(dss, p).iter().for_each(|d| q.add(ObjectKey::of(d.as_ref()))),
                None => {}
            }
        }
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            if new.metadata.deletion_timestamp.is_some() {
                return gone(new);
            }
            if controller_of(&old.metadata) != controller_of(&new.metadata) {
                resolve(dss, old).iter().for_each(|d| q.add(ObjectKey::of(d.as_ref())));
            }
            match resolve(dss, new) {
                Some(ds) => q.add(ObjectKey::of(ds.as_ref())),
                None if controller_of(&new.metadata).is_none() => matching(dss, new).iter().for_each(|d| q.add(ObjectKey::of(d.as_ref()))),
                None => {}
            }
        }
        Change::Deleted(p) => gone(p),
    }
}

impl DaemonSetController {
    /// The controller, with its handlers registered.
    pub fn new(ctx: &Context, cfg: Config) -> Arc<DaemonSetController> {
        let c = Arc::new(DaemonSetController {
            ctx: ctx.clone(),
            cfg,
            dss: ctx.shared.daemon_sets.clone(),
            pods: ctx.shared.pods.clone(),
            nodes: ctx.shared.nodes.clone(),
            revisions: ctx.shared.controller_revisions.clone(),
            queue: Queue::new("daemonset", Some(ctx.metrics.clone())),
            expectations: Arc::new(Expectations::new()),
            recorder: ctx.recorder.for_component("daemonset-controller"),
            backoff: Mutex::new(HashMap::new()),
        });
        let q = c.queue.clone();
        c.dss.on_change(move |ch: &Change<'_, DaemonSet>| q.add(ObjectKey::of(ch.object())));
        let (q, dss, exp) = (c.queue.clone(), c.dss.clone(), c.expectations.clone());
        c.pods.on_change(move |ch: &Change<'_, Pod>| on_pod(&q, &dss, &exp, ch));
        let (q, dss) = (c.queue.clone(), c.dss.clone());
        c.nodes.on_change(move |ch: &Change<'_, Node>| {
            let relevant = match ch {
                Change::Added(_) | Change::Deleted(_) => true,
                Change::Updated { old, new } => {
                    old.metadata.labels != new.metadata.labels || old.spec != new.spec || ready(old) != ready(new)
                }
            };
            if relevant {
                dss.list().iter().for_each(|d| q.add(ObjectKey::of(d.as_ref())));
            }
        });
        if let Some(revs) = &c.revisions {
            let (q, dss) = (c.queue.clone(), c.dss.clone());
            revs.on_change(move |ch: &Change<'_, ControllerRevision>| {
                let cr = ch.object();
                if let Some(r) = controller_of(&cr.metadata).filter(|r| r.kind == "DaemonSet")
                    && dss.get(&ObjectKey::new(cr.metadata.namespace.clone().unwrap_or_default(), r.name.clone())).is_some()
                {
                    q.add(ObjectKey::new(cr.metadata.namespace.clone().unwrap_or_default(), r.name.clone()));
                }
            });
        }
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// `--concurrent-daemonset-syncs`.
    pub fn workers(&self) -> usize {
        self.cfg.workers
    }

    /// Claims the DaemonSet's pods (adopting matching orphans, releasing mismatches).
    async fn claim(&self, ds: &Arc<DaemonSet>, sel: &Sel) -> Result<Vec<Arc<Pod>>> {
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let mut candidates = self.pods.by_index(BY_CONTROLLER, &uid);
        candidates.extend(self.pods.by_index(ORPHANS, &ns));
        let owner = ownership::controller_ref(ds.as_ref());
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut owned = Vec::new();
        for p in candidates {
            let name = p.metadata.name.clone().unwrap_or_default();
            let pod_uid = p.metadata.uid.clone().unwrap_or_default();
            let patch = match ownership::claim(&ds.metadata, &p.metadata, sel.matches(p.metadata.labels.as_ref())) {
                Claim::Own => {
                    owned.push(p);
                    continue;
                }
                Claim::Ignore => continue,
                Claim::Release => ownership::release_patch(&uid, &pod_uid),
                Claim::Adopt => ownership::adopt_patch(&owner, &pod_uid),
            };
            match api.patch(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(updated) => {
                    if controller_of(&updated.metadata).is_some_and(|r| r.uid == uid) {
                        owned.push(Arc::new(updated));
                    }
                }
                Err(e) => {
                    let e = Error::from(e);
                    if !e.is_not_found() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(owned)
    }

    fn in_backoff(&self, key: &ObjectKey, now: Instant) -> BTreeSet<String> {
        let b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        b.iter().filter(|((k, _), (until, _))| k == key && *until > now).map(|((_, n), _)| n.clone()).collect()
    }

    fn start_backoff(&self, key: &ObjectKey, node: &str, now: Instant) -> Duration {
        let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let e = b.entry((key.clone(), node.to_string())).or_insert((now, Duration::ZERO));
        e.1 = if e.1.is_zero() { BACKOFF_INITIAL } else { (e.1 * 2).min(BACKOFF_MAX) };
        e.0 = now + e.1;
        e.1
    }

    /// `syncNodes`: creates pods on `create_on` and deletes `delete`, under expectations.
    async fn sync_nodes(&self, key: &ObjectKey, ds: &Arc<DaemonSet>, create_on: &[String], delete: &[ObjectKey], hash: &str) -> Result<()> {
        let create_on = &create_on[..create_on.len().min(self.cfg.burst_replicas)];
        let delete = &delete[..delete.len().min(self.cfg.burst_replicas)];
        if create_on.is_empty() && delete.is_empty() {
            return Ok(());
        }
        self.expectations.expect(key, create_on.len(), delete, Instant::now());
        let owner = ownership::controller_ref(ds.as_ref());
        let (created, err) = podcontrol::slow_start(create_on.len(), podcontrol::SLOW_START_INITIAL_BATCH, |i| {
            let template = eligibility::pod_template(ds, hash, &create_on[i]);
            let pod = podcontrol::from_template(&template, &key.namespace, &key.name, owner.clone());
            async move {
                let r = podcontrol::create(&self.ctx.client, &pod).await;
                if let Err(e) = &r
                    && !e.is_namespace_terminating()
                {
                    self.recorder.record(ds.as_ref(), Kind::Warning, "FailedCreate", format!("Error creating: {e}"));
                }
                r
            }
        })
        .await;
        for _ in created.len()..create_on.len() {
            self.expectations.creation_observed(key);
        }
        for p in &created {
            self.recorder.record(
                ds.as_ref(),
                Kind::Normal,
                "SuccessfulCreate",
                format!("Created pod: {}", p.metadata.name.clone().unwrap_or_default()),
            );
        }
        let results = join_all(delete.iter().map(|pk| async move {
            let r = podcontrol::delete(&self.ctx.client, &pk.namespace, &pk.name).await;
            match &r {
                Ok(true) => self.recorder.record(ds.as_ref(), Kind::Normal, "SuccessfulDelete", format!("Deleted pod: {}", pk.name)),
                // Already gone (its Deleted event may have come before the expectation), or failed.
                Ok(false) | Err(_) => self.expectations.deletion_observed(key, pk),
            }
            r
        }))
        .await;
        match (err, results.into_iter().find_map(|r| r.err())) {
            (Some(e), _) if !e.is_namespace_terminating() => Err(e),
            (_, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    async fn write_status(&self, ds: &DaemonSet, mut status: k8s_openapi::api::apps::v1::DaemonSetStatus, observed: bool) -> Result<()> {
        if observed {
            status.observed_generation = ds.metadata.generation;
        }
        let old = ds.status.clone().unwrap_or_default();
        let n = |v: Option<i32>| v.unwrap_or(0);
        let same = old.desired_number_scheduled == status.desired_number_scheduled
            && old.current_number_scheduled == status.current_number_scheduled
            && old.number_misscheduled == status.number_misscheduled
            && old.number_ready == status.number_ready
            && n(old.number_available) == n(status.number_available)
            && n(old.number_unavailable) == n(status.number_unavailable)
            && n(old.updated_number_scheduled) == n(status.updated_number_scheduled)
            && old.observed_generation.unwrap_or(0) == status.observed_generation.unwrap_or(0);
        if same {
            return Ok(());
        }
        let mut d = ds.clone();
        d.metadata.managed_fields = None;
        status.number_available = nz(n(status.number_available));
        d.status = Some(status);
        let key = ObjectKey::of(ds);
        let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        match api.replace_status(&key.name, &PostParams::default(), &d).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                Err(if e.is_conflict() { Error::Conflict(key.to_string()) } else { e })
            }
        }
    }
}

fn ready(n: &Node) -> Option<String> {
    crate::nodelifecycle::taints::condition(n, "Ready").map(|c| c.status.clone())
}

impl Reconcile for DaemonSetController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.dss.is_synced()
            || !self.pods.is_synced()
            || !self.nodes.is_synced()
            || self.revisions.as_ref().is_some_and(|r| !r.is_synced())
        {
            return Err(Error::NotSynced("daemonsets/pods/nodes"));
        }
        let Some(ds) = self.dss.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let sel = match ds.spec.as_ref().map(|s| Sel::parse(&s.selector)) {
            Some(Ok(s)) if !s.is_empty() => s,
            Some(Ok(_)) => {
                self.recorder.record(
                    ds.as_ref(),
                    Kind::Warning,
                    "SelectingAll",
                    "This daemon set is selecting all pods. A non-empty selector is required.",
                );
                return Ok(Action::Done);
            }
            Some(Err(why)) => {
                self.recorder.record(ds.as_ref(), Kind::Warning, "InvalidSelector", format!("invalid selector: {why}"));
                return Ok(Action::Done);
            }
            None => return Ok(Action::Done),
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let (hash, old) = self.construct_history(&ds).await?;
        let nodes = self.nodes.list();
        let node_refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
        let pods = self.claim(&ds, &sel).await?;
        let mut by_node: plan::ByNode<'_> = BTreeMap::new();
        for p in &pods {
            if let Some(n) = eligibility::target_node(p) {
                by_node.entry(n).or_default().push(p.as_ref());
            }
        }
        let now = self.ctx.clock.now();
        let mono = Instant::now();
        if !self.expectations.satisfied(key, mono) {
            self.write_status(&ds, plan::status(&ds, &node_refs, &by_node, &hash, now), false).await?;
            return Ok(Action::Done);
        }
        let m = plan::manage(&ds, &node_refs, &by_node, &hash, now, &self.in_backoff(key, mono));
        let mut requeue: Option<Duration> = None;
        for n in &m.failed_on {
            self.recorder.record(
                ds.as_ref(),
                Kind::Warning,
                "FailedDaemonPod",
                format!("Found failed daemon pod on node {n}, will try to kill it"),
            );
            let d = self.start_backoff(key, n, mono);
            requeue = Some(requeue.map_or(d, |r| r.min(d)));
        }
        if !m.backing_off.is_empty() {
            requeue = Some(requeue.unwrap_or(BACKOFF_INITIAL));
        }
        let manage_result = self.sync_nodes(key, &ds, &m.create_on, &m.delete, &hash).await;
        let rolling = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let mut update_result = Ok(());
        if manage_result.is_ok() && rolling && self.expectations.satisfied(key, mono) {
            let (delete, create) = plan::rolling_update(&ds, &node_refs, &by_node, &hash, now);
            update_result = self.sync_nodes(key, &ds, &create, &delete, &hash).await;
        }
        let live: BTreeSet<String> =
            pods.iter().filter_map(|p| p.metadata.labels.as_ref()?.get(eligibility::REVISION_HASH).cloned()).collect();
        self.cleanup_history(&ds, old, &live).await?;
        self.write_status(&ds, plan::status(&ds, &node_refs, &by_node, &hash, now), true).await?;
        manage_result?;
        update_result?;
        let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if min_ready > 0 {
            let d = Duration::from_secs(min_ready as u64);
            requeue = Some(requeue.map_or(d, |r| r.min(d)));
        }
        Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
    }
}
