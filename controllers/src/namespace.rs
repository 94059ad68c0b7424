//! The namespace controller (kube's `pkg/controller/namespace/deletion`): a namespace being
//! deleted whose `spec.finalizers` holds `kubernetes` is emptied — every namespaced resource
//! the apiserver serves is deleted (deletecollection, else one by one) — and once nothing is
//! left its `kubernetes` finalizer is removed through `namespaces/{name}/finalize`, after which
//! the apiserver removes the namespace. While content remains the namespace reports why in its
//! status conditions (kube's five `NamespaceDeletion*`/`NamespaceContentRemaining`/
//! `NamespaceFinalizersRemaining` conditions) and is looked at again after the estimate.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The finalizer this controller owns (`spec.finalizers`).
pub const FINALIZER: &str = "kubernetes";
/// Seconds to wait for content held by finalizers (kube's `finalizerEstimateSeconds`).
pub const FINALIZER_ESTIMATE: u64 = 15;

/// What is left in a namespace after one deletion pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Remaining {
    /// Resource (`pods`, `configmaps`, `deployments.apps`) → objects left.
    pub by_resource: BTreeMap<String, usize>,
    /// Finalizer → objects it holds.
    pub by_finalizer: BTreeMap<String, usize>,
    /// Errors deleting content.
    pub errors: Vec<String>,
    /// Seconds until the slowest graceful deletion should be done.
    pub estimate: u64,
}

fn cond(type_: &str, failing: bool, ok_reason: &str, bad_reason: &str, msg: String, now: jiff::Timestamp) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: if failing { "True" } else { "False" }.into(),
        reason: Some(if failing { bad_reason } else { ok_reason }.into()),
        message: Some(if failing { msg } else { "All resources successfully discovered".into() }),
        last_transition_time: Some(Time(now)),
    }
}

/// The namespace's deletion conditions for `r` (kube's `updateDeletionConditions`). Existing
/// conditions keep their transition time when their status does not change.
pub fn conditions(
    r: &Remaining,
    discovery_error: Option<&str>,
    old: &[NamespaceCondition],
    now: jiff::Timestamp,
) -> Vec<NamespaceCondition> {
    let remaining: Vec<String> = r.by_resource.iter().map(|(k, v)| format!("{k} has {v} resource instances")).collect();
    let finalizers: Vec<String> = r.by_finalizer.iter().map(|(k, v)| format!("{k} in {v} resource instances")).collect();
    let mut out = vec![
        cond(
            "NamespaceDeletionDiscoveryFailure",
            discovery_error.is_some(),
            "ResourcesDiscovered",
            "DiscoveryFailed",
            format!("Discovery failed for some groups: {}", discovery_error.unwrap_or("")),
            now,
        ),
        cond("NamespaceDeletionGroupVersionParsingFailure", false, "ParsedGroupVersions", "GroupVersionParsingFailed", String::new(), now),
        cond(
            "NamespaceDeletionContentFailure",
            !r.errors.is_empty(),
            "ContentDeleted",
            "ContentDeletionFailed",
            format!("Failed to delete all resource types, {} remaining: {}", r.errors.len(), r.errors.join(", ")),
            now,
        ),
        cond(
            "NamespaceContentRemaining",
            !remaining.is_empty(),
            "ContentRemoved",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", remaining.join(", ")),
            now,
        ),
        cond(
            "NamespaceFinalizersRemaining",
            !finalizers.is_empty(),
            "ContentHasNoFinalizers",
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {}", finalizers.join(", ")),
            now,
        ),
    ];
    let ok_messages = [
        "All resources successfully discovered",
        "All legacy kube types successfully parsed",
        "All content successfully deleted, may be waiting on finalization",
        "All content successfully removed",
        "All content-preserving finalizers finished",
    ];
    for (c, ok) in out.iter_mut().zip(ok_messages) {
        if c.status == "False" {
            c.message = Some(ok.into());
        }
        if let Some(o) = old.iter().find(|o| o.type_ == c.type_ && o.status == c.status) {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
    out
}

/// The controller; its queue holds namespace names.
pub struct NamespaceController {
    ctx: Context,
    namespaces: Arc<Informer<Namespace>>,
    queue: Arc<Queue>,
}

impl NamespaceController {
    /// The controller, with its handlers registered.
    pub fn new(ctx: &Context) -> Arc<NamespaceController> {
        let c = Arc::new(NamespaceController {
            ctx: ctx.clone(),
            namespaces: ctx.shared.namespaces.clone(),
            queue: Queue::new("namespace", Some(ctx.metrics.clone())),
        });
        let q = c.queue.clone();
        c.namespaces.on_change(move |ch: &Change<'_, Namespace>| {
            if ch.object().metadata.deletion_timestamp.is_some() && !matches!(ch, Change::Deleted(_)) {
                q.add(ObjectKey::of(ch.object()));
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// `deleteAllContent`: one pass over every namespaced resource.
    async fn delete_content(&self, ns: &str) -> (Remaining, Option<String>) {
        let mut r = Remaining::default();
        let discovery = match Discovery::new(self.ctx.client.clone()).run().await {
            Ok(d) => d,
            Err(e) => return (r, Some(e.to_string())),
        };
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if caps.scope != Scope::Namespaced || !caps.supports_operation("delete") || !caps.supports_operation("list") {
                    continue;
                }
                let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), ns, &ar);
                let dp = DeleteParams::background();
                if caps.supports_operation("deletecollection") {
                    if let Err(e) = api.delete_collection(&dp, &ListParams::default()).await {
                        r.errors.push(format!("{}: {e}", ar.plural));
                    }
                } else if let Ok(list) = api.list(&ListParams::default()).await {
                    for o in list.items {
                        if let Err(e) = api.delete(o.metadata.name.as_deref().unwrap_or_default(), &dp).await
                            && !Error::from(e).is_not_found()
                        {
                            r.errors.push(ar.plural.clone());
                        }
                    }
                }
                let left = match api.list(&ListParams::default()).await {
                    Ok(l) => l.items,
                    Err(e) => {
                        r.errors.push(format!("{}: {e}", ar.plural));
                        continue;
                    }
                };
                if left.is_empty() {
                    continue;
                }
                let name = if ar.group.is_empty() { ar.plural.clone() } else { format!("{}.{}", ar.plural, ar.group) };
                *r.by_resource.entry(name).or_default() += left.len();
                for o in &left {
                    for f in o.metadata.finalizers.iter().flatten() {
                        *r.by_finalizer.entry(f.clone()).or_default() += 1;
                    }
                    if ar.plural == "pods" {
                        let grace = o
                            .metadata
                            .deletion_grace_period_seconds
                            .or_else(|| o.data.pointer("/spec/terminationGracePeriodSeconds").and_then(|v| v.as_i64()))
                            .unwrap_or(30);
                        r.estimate = r.estimate.max(grace.max(0) as u64);
                    }
                }
            }
        }
        (r, None)
    }
}

impl Reconcile for NamespaceController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let api: Api<Namespace> = Api::all(self.ctx.client.clone());
        // A fresh read, as kube's deleter does: the cache may lag the deletion.
        let Some(mut ns) = api.get_opt(&key.name).await? else { return Ok(Action::Done) };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Action::Done);
        }
        ns.metadata.managed_fields = None;
        if ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") {
            ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
            ns = api.replace_status(&key.name, &PostParams::default(), &ns).await?;
        }
        if !ns.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|f| f == FINALIZER)) {
            return Ok(Action::Done);
        }
        let (remaining, discovery_error) = self.delete_content(&key.name).await;
        let old = ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let conds = conditions(&remaining, discovery_error.as_deref(), &old, self.ctx.clock.now());
        if conds != old {
            ns.status.get_or_insert_with(Default::default).conditions = Some(conds);
            ns.metadata.managed_fields = None;
            if let Ok(updated) = api.replace_status(&key.name, &PostParams::default(), &ns).await {
                ns = updated;
            }
        }
        if discovery_error.is_some() || !remaining.errors.is_empty() {
            return Err(Error::Invalid { what: format!("namespace {}", key.name), why: "content not fully deleted yet".into() });
        }
        if !remaining.by_resource.is_empty() {
            let wait = if remaining.estimate > 0 {
                remaining.estimate
            } else if !remaining.by_finalizer.is_empty() {
                FINALIZER_ESTIMATE
            } else {
                1
            };
            return Ok(Action::RequeueAfter(Duration::from_secs(wait)));
        }
        self.finalize(&api, ns).await?;
        Ok(Action::Done)
    }
}

impl NamespaceController {
    /// Removes the `kubernetes` finalizer through `namespaces/{name}/finalize`; an apiserver
    /// without that subresource gets a plain update instead.
    async fn finalize(&self, api: &Api<Namespace>, mut ns: Namespace) -> Result<()> {
        let name = ns.metadata.name.clone().unwrap_or_default();
        if let Some(f) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
            f.retain(|f| f != FINALIZER);
        }
        ns.metadata.managed_fields = None;
        match api.replace_subresource("finalize", &name, &PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.is_not_found() || matches!(&e, Error::Api(kube::Error::Api(s)) if s.code == 405) {
                    tracing::debug!(namespace = %name, "no finalize subresource: updating the namespace");
                    api.replace(&name, &PostParams::default(), &ns).await?;
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains_and_keep_transition_times() {
        let t0 = jiff::Timestamp::UNIX_EPOCH;
        let empty = conditions(&Remaining::default(), None, &[], t0);
        assert!(empty.iter().all(|c| c.status == "False"), "{empty:?}");
        let mut r = Remaining::default();
        r.by_resource.insert("pods".into(), 2);
        r.by_finalizer.insert("example.com/hold".into(), 1);
        let t1 = jiff::Timestamp::from_second(100).unwrap_or(t0);
        let c = conditions(&r, None, &empty, t1);
        let get = |t: &str| c.iter().find(|c| c.type_ == t).cloned().unwrap_or_default();
        assert_eq!(
            get("NamespaceContentRemaining").message.as_deref(),
            Some("Some resources are remaining: pods has 2 resource instances")
        );
        assert_eq!(get("NamespaceFinalizersRemaining").status, "True");
        assert_eq!(get("NamespaceFinalizersRemaining").last_transition_time, Some(Time(t1)));
        assert_eq!(get("NamespaceDeletionDiscoveryFailure").last_transition_time, Some(Time(t0)), "unchanged status keeps its time");
    }
}
