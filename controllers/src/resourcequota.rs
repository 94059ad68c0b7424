//! The ResourceQuota controller (kube's `pkg/controller/resourcequota`, `resourcequota`):
//! each quota's `status.hard` is its `spec.hard` and `status.used` what the namespace really
//! uses, recounted with keel-access's evaluators ([`recompute_used`]). The apiserver keeps
//! `used` exact on its own writes; this corrects drift and frees the compute of pods that went
//! terminal or were deleted (kube's replenishment).
//!
//! Invariants (kube's):
//! - a quota is recounted when it appears, when its `spec.hard` differs from `status.hard` or
//!   its `used` lacks a resource, every `--resource-quota-sync-period` (5 min), and when an
//!   object it counts is deleted or a pod stops being charged (terminal, or past its grace
//!   period) — never on a pod's creation, which admission charged;
//! - `used` has exactly the keys of `hard` (zero when nothing uses them); pods come from the
//!   informer, other objects are counted from the informer when the process has one for them,
//!   else by a live list (`count/<resource>.<group>` of any served resource);
//! - status is written (PUT `/status` with the cached resourceVersion) only when it changes.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use crate::shared::BY_NAMESPACE;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service};
use keel_access::admission::quantity::Quantity;
use keel_access::admission::quota::{pod_is_charged, recompute_used};
use keel_access::admission::resources::{ResourceList, parse_list, to_kube};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use std::sync::Arc;
use std::time::Duration;

/// kube's `--resource-quota-sync-period` default.
pub const SYNC_PERIOD: Duration = Duration::from_secs(300);

/// Core kinds whose count also has a legacy quota name (`configmaps` beside `count/configmaps`).
const LEGACY: &[&str] = &["services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps", "persistentvolumeclaims"];

/// The (group, resource) a quota resource name counts, if it is an object count:
/// `count/deployments.apps` → ("apps", "deployments"), `count/pods` → ("", "pods"), the legacy
/// `configmaps` → ("", "configmaps"). Compute names (`cpu`, `pods`, …) are not counts.
pub fn counted(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((resource, group)) => (group.to_string(), resource.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    LEGACY.contains(&name).then(|| (String::new(), name.to_string()))
}

/// The status a quota should have, given the namespace's pods, the object counts by quota
/// resource name and the time, or None when its current status already says exactly that.
pub fn next_status(q: &ResourceQuota, pods: &[Pod], counts: &ResourceList, now: Timestamp) -> Result<Option<ResourceQuotaStatus>> {
    let invalid = |e: keel_access::Error| Error::Invalid { what: format!("resourcequota {}", ObjectKey::of(q)), why: e.to_string() };
    // Hard comes from the spec (kube's controller copies it); the evaluators read it through
    // `hard_of`, which prefers a status once set, so they are given the quota without one.
    let spec_only = ResourceQuota { status: None, ..q.clone() };
    let hard = parse_list(q.spec.as_ref().and_then(|s| s.hard.as_ref())).map_err(invalid)?;
    let used = recompute_used(&spec_only, pods, counts, now).map_err(invalid)?;
    let status = q.status.as_ref();
    let old_hard = parse_list(status.and_then(|s| s.hard.as_ref())).map_err(invalid)?;
    let old_used = parse_list(status.and_then(|s| s.used.as_ref())).map_err(invalid)?;
    if status.is_some() && old_hard == hard && old_used == used {
        return Ok(None);
    }
    Ok(Some(ResourceQuotaStatus { hard: Some(to_kube(&hard)), used: Some(to_kube(&used)) }))
}

/// Whether a quota needs its first (or a fresh) count: kube's "missing usage" check.
pub fn needs_count(q: &ResourceQuota) -> bool {
    let spec = q.spec.as_ref().and_then(|s| s.hard.as_ref());
    let status = q.status.as_ref();
    let (hard, used) = (status.and_then(|s| s.hard.as_ref()), status.and_then(|s| s.used.as_ref()));
    let spec_keys: Vec<&String> = spec.map(|h| h.keys().collect()).unwrap_or_default();
    let differs = parse_list(spec).ok() != parse_list(hard).ok();
    differs || spec_keys.iter().any(|k| !used.is_some_and(|u| u.contains_key(*k)))
}

/// The controller; its queue holds quota keys.
pub struct ResourceQuotaController {
    ctx: Context,
    quotas: Arc<Informer<ResourceQuota>>,
    queue: Arc<Queue>,
    sync_period: Duration,
}

fn enqueue_namespace(quotas: &Informer<ResourceQuota>, q: &Queue, ns: &str) {
    for quota in quotas.by_index(BY_NAMESPACE, ns) {
        q.add(ObjectKey::of(quota.as_ref()));
    }
}

impl ResourceQuotaController {
    /// The controller over the quota informer `quotas`, recounting every `sync_period`.
    pub fn new(ctx: &Context, quotas: Arc<Informer<ResourceQuota>>, sync_period: Duration) -> Arc<ResourceQuotaController> {
        let c = Arc::new(ResourceQuotaController {
            ctx: ctx.clone(),
            quotas,
            queue: Queue::new("resourcequota_primary", Some(ctx.metrics.clone())),
            sync_period,
        });
        let q = c.queue.clone();
        c.quotas.on_change(move |ch: &Change<'_, ResourceQuota>| match ch {
            Change::Added(quota) => q.add(ObjectKey::of(*quota)),
            Change::Updated { new, .. } if needs_count(new) => q.add(ObjectKey::of(*new)),
            _ => {}
        });
        // Replenishment: a pod that stops being charged, or any counted object that goes.
        let (q, quotas) = (c.queue.clone(), Arc::downgrade(&c.quotas));
        let clock = ctx.clock.clone();
        ctx.shared.pods.on_change(move |ch: &Change<'_, Pod>| {
            let now = clock.now();
            let freed = match ch {
                Change::Deleted(_) => true,
                Change::Updated { old, new } => pod_is_charged(old, now) && !pod_is_charged(new, now),
                Change::Added(_) => false,
            };
            if freed && let Some(quotas) = quotas.upgrade() {
                enqueue_namespace(&quotas, &q, ch.object().metadata.namespace.as_deref().unwrap_or_default());
            }
        });
        fn on_delete<K: crate::informer::Cached + kube::Resource>(informer: &Informer<K>, c: &Arc<ResourceQuotaController>)
        where
            K::DynamicType: Clone + Eq + std::hash::Hash + Default + Send + Sync,
        {
            let (q, quotas) = (c.queue.clone(), Arc::downgrade(&c.quotas));
            informer.on_change(move |ch: &Change<'_, K>| {
                if let (Change::Deleted(o), Some(quotas)) = (ch, quotas.upgrade()) {
                    enqueue_namespace(&quotas, &q, o.meta().namespace.as_deref().unwrap_or_default());
                }
            });
        }
        on_delete::<ConfigMap>(&ctx.shared.config_maps, &c);
        on_delete::<Secret>(&ctx.shared.secrets, &c);
        on_delete::<Service>(&ctx.shared.services, &c);
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// Enqueues every quota each sync period (kube's full resync); the manager aborts it.
    pub async fn run_resync(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.sync_period).await;
            for quota in self.quotas.list() {
                self.queue.add(ObjectKey::of(quota.as_ref()));
            }
        }
    }

    /// How many objects of (group, resource) namespace `ns` holds: from an informer when the
    /// process has one, else by a live list of the served resource.
    async fn count(&self, ns: &str, group: &str, resource: &str) -> Result<i64> {
        let s = &self.ctx.shared;
        let cached = match (group, resource) {
            ("", "pods") => Some(s.pods.by_index(BY_NAMESPACE, ns).len()),
            ("", "configmaps") => Some(s.config_maps.by_index(BY_NAMESPACE, ns).len()),
            ("", "secrets") => Some(s.secrets.by_index(BY_NAMESPACE, ns).len()),
            ("", "services") => Some(s.services.by_index(BY_NAMESPACE, ns).len()),
            ("", "serviceaccounts") => Some(s.service_accounts.by_index(BY_NAMESPACE, ns).len()),
            ("", "endpoints") => Some(s.endpoints.by_index(BY_NAMESPACE, ns).len()),
            ("", "resourcequotas") => Some(self.quotas.by_index(BY_NAMESPACE, ns).len()),
            ("apps", "replicasets") => Some(s.replica_sets.by_index(BY_NAMESPACE, ns).len()),
            ("apps", "deployments") => Some(s.deployments.by_index(BY_NAMESPACE, ns).len()),
            ("apps", "daemonsets") => Some(s.daemon_sets.by_index(BY_NAMESPACE, ns).len()),
            _ => None,
        };
        if let Some(n) = cached {
            return Ok(n as i64);
        }
        let api_group = kube::discovery::group(&self.ctx.client, group).await?;
        let Some((ar, _)) = api_group.recommended_resources().into_iter().find(|(ar, _)| ar.plural == resource) else {
            // Not served: nothing of it can exist.
            return Ok(0);
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), ns, &ar);
        Ok(api.list_metadata(&ListParams::default()).await?.items.len() as i64)
    }
}

impl Reconcile for ResourceQuotaController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.quotas.is_synced() || !self.ctx.shared.pods.is_synced() {
            return Err(Error::NotSynced("resourcequotas/pods"));
        }
        let Some(quota) = self.quotas.get(key) else { return Ok(Action::Done) };
        let ns = key.namespace.as_str();
        let pods: Vec<Pod> = self.ctx.shared.pods.by_index(BY_NAMESPACE, ns).iter().map(|p| (**p).clone()).collect();
        let mut counts = ResourceList::new();
        for name in quota.spec.as_ref().and_then(|s| s.hard.as_ref()).map(|h| h.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            // Pods are counted by the pod evaluator itself.
            if let Some((group, resource)) = counted(&name).filter(|(g, r)| !(g.is_empty() && r == "pods")) {
                let n = self.count(ns, &group, &resource).await?;
                counts.insert(name, Quantity::from_units(n));
            }
        }
        let Some(status) = next_status(&quota, &pods, &counts, self.ctx.clock.now())? else { return Ok(Action::Done) };
        let mut updated = (*quota).clone();
        updated.status = Some(status);
        let api: Api<ResourceQuota> = Api::namespaced(self.ctx.client.clone(), ns);
        match api.replace_status(&key.name, &PostParams::default(), &updated).await.map_err(Error::from) {
            Ok(_) => Ok(Action::Done),
            Err(e) if e.is_not_found() => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[path = "resourcequota_tests.rs"]
mod tests;
