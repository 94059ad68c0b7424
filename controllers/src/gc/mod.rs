//! The garbage collector (kube's `pkg/controller/garbagecollector`): deletes objects whose
//! owners are all gone (background cascade), deletes the blocking dependents of an owner being
//! deleted in the foreground before letting it go (`foregroundDeletion` finalizer), and strips
//! the owner reference from the dependents of an owner deleted with `--cascade=orphan`
//! (`orphan` finalizer). The ownership graph is read from the shared informers ([`sources`]);
//! decisions are [`graph`]'s.
//!
//! Invariants:
//! - an owner is judged absent only after a live read confirms it (404, or another uid): a
//!   cache that has not seen a new owner yet never gets its dependents deleted;
//! - decisions to write are taken again on the object's latest version, read live, and
//!   deletes carry its uid and resourceVersion as preconditions: a re-created object of the
//!   same name is never hit, and a reference removed meanwhile (orphaning) wins;
//! - a namespaced owner is looked up in its dependent's namespace; a cluster-scoped object
//!   naming a namespaced owner has no valid owner there (an `OwnerRefInvalidNamespace` event).

pub mod graph;
pub mod sources;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::{Kind as EventKind, Recorder};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use graph::{Decision, Deleting, FOREGROUND, ORPHAN, Owner, Policy, Ref};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::json;
use sources::{Event, Source};
use std::sync::{Arc, OnceLock};

/// The controller; its queue holds `<source index>|<name>` keys in the object's namespace.
pub struct GarbageCollector {
    ctx: Context,
    sources: Arc<OnceLock<Vec<Arc<dyn Source>>>>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

fn item(source: usize, meta: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(meta.namespace.clone().unwrap_or_default(), format!("{source}|{}", meta.name.clone().unwrap_or_default()))
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

impl GarbageCollector {
    /// The collector, with its handlers registered on every shared informer.
    pub fn new(ctx: &Context) -> Arc<GarbageCollector> {
        let queue = Queue::new("garbage_collector_attempt_to_delete", Some(ctx.metrics.clone()));
        let cell: Arc<OnceLock<Vec<Arc<dyn Source>>>> = Arc::new(OnceLock::new());
        let (q, c2) = (queue.clone(), cell.clone());
        let hook = Arc::new(move |e: Event<'_>| on_event(&q, &c2, e));
        let list = sources::all(&ctx.shared, hook);
        let _ = cell.set(list);
        Arc::new(GarbageCollector {
            ctx: ctx.clone(),
            sources: cell,
            queue,
            recorder: ctx.recorder.for_component("garbage-collector-controller"),
        })
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    fn sources(&self) -> &[Arc<dyn Source>] {
        self.sources.get().map(|v| v.as_slice()).unwrap_or(&[])
    }

    fn dependents(&self, uid: &str) -> Vec<(usize, ObjectMeta)> {
        dependents_of(self.sources(), uid)
    }

    fn api(&self, source: usize, ns: &str) -> Option<Api<DynamicObject>> {
        let k = self.sources().get(source)?.kind().clone();
        let ar = k.api_resource();
        Some(if k.namespaced {
            Api::namespaced_with(self.ctx.client.clone(), ns, &ar)
        } else {
            Api::all_with(self.ctx.client.clone(), &ar)
        })
    }

    /// Resolves one owner reference of an object in namespace `ns` (cluster-scoped: "").
    async fn owner_state(&self, ns: &str, r: &OwnerReference, about: &ObjectReference) -> Result<Owner> {
        let Some(idx) = self.sources().iter().position(|s| s.kind().is(&r.api_version, &r.kind)) else {
            // A kind we do not watch: never delete on its account.
            return Ok(Owner::Solid);
        };
        let kind = self.sources()[idx].kind().clone();
        if kind.namespaced && ns.is_empty() {
            self.recorder.record_ref(
                about.clone(),
                EventKind::Warning,
                "OwnerRefInvalidNamespace",
                format!(
                    "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
                    r.api_version, r.kind, r.name, r.uid
                ),
            );
            return Ok(Owner::Dangling);
        }
        let owner_ns = if kind.namespaced { ns } else { "" };
        let judge =
            |m: &ObjectMeta| if m.deletion_timestamp.is_some() && has_finalizer(m, FOREGROUND) { Owner::Waiting } else { Owner::Solid };
        if let Some(m) = self.sources()[idx].get(owner_ns, &r.name)
            && m.uid.as_deref() == Some(r.uid.as_str())
        {
            return Ok(judge(&m));
        }
        // Not in the cache (or another uid): confirm with the apiserver before calling it gone.
        let Some(api) = self.api(idx, owner_ns) else { return Ok(Owner::Solid) };
        match api.get_opt(&r.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(judge(&o.metadata)),
            Some(_) | None => {
                if kind.namespaced {
                    // The owner may live in another namespace, where a reference cannot reach.
                    if let Some(other) = self.sources()[idx].by_uid(&r.uid).filter(|o| o.namespace.as_deref() != Some(ns)) {
                        let msg = format!(
                            "ownerRef [{}/{}, namespace: {ns}, name: {}, uid: {}] does not exist in namespace \"{ns}\" (it is in {:?})",
                            r.api_version,
                            r.kind,
                            r.name,
                            r.uid,
                            other.namespace.unwrap_or_default()
                        );
                        self.recorder.record_ref(about.clone(), EventKind::Warning, "OwnerRefInvalidNamespace", msg);
                    }
                }
                Ok(Owner::Dangling)
            }
        }
    }

    async fn patch_refs(&self, source: usize, meta: &ObjectMeta, remove: &[String], unblock: &[String]) -> Result<()> {
        let ns = meta.namespace.clone().unwrap_or_default();
        let Some(api) = self.api(source, &ns) else { return Ok(()) };
        let mut refs: Vec<serde_json::Value> = remove.iter().map(|u| json!({"$patch": "delete", "uid": u})).collect();
        refs.extend(unblock.iter().map(|u| json!({"uid": u, "blockOwnerDeletion": false})));
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}});
        match api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Strategic(patch)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }

    async fn delete(&self, source: usize, meta: &ObjectMeta, policy: Policy) -> Result<()> {
        let ns = meta.namespace.clone().unwrap_or_default();
        let Some(api) = self.api(source, &ns) else { return Ok(()) };
        let name = meta.name.clone().unwrap_or_default();
        let mut rv = meta.resource_version.clone();
        // Foreground and orphan deletions hold the object with their finalizer while this
        // collector does the cascade, as kube-apiserver arranges on such a DELETE; adding it
        // first keeps the cascade ours (and the object's controller stopped, since it is marked
        // deleting) whatever the apiserver does itself.
        let hold = match policy {
            Policy::Foreground => Some(FOREGROUND),
            Policy::Orphan => Some(ORPHAN),
            Policy::Background => None,
        };
        if let Some(f) = hold.filter(|f| !has_finalizer(meta, f)) {
            let mut all: Vec<String> = meta.finalizers.clone().unwrap_or_default();
            all.push(f.to_string());
            let patch = json!({"metadata": {"finalizers": all, "resourceVersion": meta.resource_version}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(o) => rv = o.metadata.resource_version,
                Err(e) => {
                    let e = Error::from(e);
                    return if e.is_not_found() {
                        Ok(())
                    } else if e.is_conflict() {
                        Err(Error::Conflict(name))
                    } else {
                        Err(e)
                    };
                }
            }
        }
        let pp = match policy {
            Policy::Background => PropagationPolicy::Background,
            Policy::Foreground => PropagationPolicy::Foreground,
            Policy::Orphan => PropagationPolicy::Orphan,
        };
        let pre = Preconditions { uid: meta.uid.clone(), resource_version: rv };
        let dp = DeleteParams { propagation_policy: Some(pp), preconditions: Some(pre), ..Default::default() };
        tracing::info!(object = %ObjectKey::new(ns.clone(), name.clone()), policy = policy.as_str(), "garbage collecting");
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.is_not_found() {
                    Ok(())
                } else if e.is_conflict() {
                    // Changed since read (e.g. its owner reference was just removed): look again.
                    Err(Error::Conflict(name))
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn remove_finalizer(&self, source: usize, meta: &ObjectMeta, f: &str) -> Result<()> {
        let ns = meta.namespace.clone().unwrap_or_default();
        let Some(api) = self.api(source, &ns) else { return Ok(()) };
        let rest: Vec<String> = meta.finalizers.iter().flatten().filter(|x| *x != f).cloned().collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}});
        match api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.is_not_found() {
                    Ok(())
                } else if e.is_conflict() {
                    Err(Error::Conflict(meta.name.clone().unwrap_or_default()))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Classifies `meta`'s owners and decides its fate.
    async fn decide(&self, ns: &str, meta: &ObjectMeta, about: &ObjectReference) -> Result<Decision> {
        let uid = meta.uid.clone().unwrap_or_default();
        let mut owners = Vec::new();
        for r in meta.owner_references.iter().flatten() {
            let state = self.owner_state(ns, r, about).await?;
            owners.push(Ref { uid: r.uid.clone(), state, blocks: r.block_owner_deletion == Some(true) });
        }
        let deps = self.dependents(&uid);
        let cycle = deps.iter().any(|(_, d)| d.deletion_timestamp.is_some() && has_finalizer(d, FOREGROUND));
        Ok(graph::decide(&owners, !deps.is_empty(), cycle, meta.finalizers.as_deref().unwrap_or(&[])))
    }

    async fn sync(&self, key: &ObjectKey) -> Result<Action> {
        if self.sources().iter().any(|s| !s.synced()) {
            return Err(Error::NotSynced("garbage collector sources"));
        }
        let Some((idx, name)) = key.name.split_once('|').and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.to_string()))) else {
            return Ok(Action::Done);
        };
        let Some(src) = self.sources().get(idx).cloned() else { return Ok(Action::Done) };
        let Some(meta) = src.get(&key.namespace, &name) else { return Ok(Action::Done) };
        let uid = meta.uid.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_some() {
            let deps = self.dependents(&uid);
            let blocks: Vec<bool> =
                deps.iter().map(|(_, d)| ref_to(d, &uid).is_some_and(|r| r.block_owner_deletion == Some(true))).collect();
            match graph::deleting(meta.finalizers.as_deref().unwrap_or(&[]), &blocks) {
                Deleting::Nothing => {}
                Deleting::Orphan => {
                    for (i, d) in &deps {
                        self.patch_refs(*i, d, std::slice::from_ref(&uid), &[]).await?;
                    }
                    self.remove_finalizer(idx, &meta, ORPHAN).await?;
                }
                Deleting::Finish => self.remove_finalizer(idx, &meta, FOREGROUND).await?,
                Deleting::Wait(blocking) => {
                    for b in blocking {
                        let (i, d) = &deps[b];
                        if d.deletion_timestamp.is_none() {
                            self.queue.add(item(*i, d));
                        }
                    }
                }
            }
            return Ok(Action::Done);
        }
        if meta.owner_references.as_ref().is_none_or(|r| r.is_empty()) {
            return Ok(Action::Done);
        }
        let kind = src.kind();
        let about = ObjectReference {
            api_version: Some(kind.api_resource().api_version),
            kind: Some(kind.kind.clone()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            ..Default::default()
        };
        let decision = self.decide(&key.namespace, &meta, &about).await?;
        if decision == Decision::Keep {
            return Ok(Action::Done);
        }
        // Act only on the latest version (kube's attemptToDeleteItem reads it live): an owner
        // reference removed meanwhile (an orphaning in progress) must win, and the write is
        // guarded by that version's resourceVersion.
        let Some(api) = self.api(idx, &key.namespace) else { return Ok(Action::Done) };
        let Some(latest) = api.get_opt(&name).await? else { return Ok(Action::Done) };
        if latest.metadata.uid != meta.uid {
            return Ok(Action::Done);
        }
        let latest = latest.metadata;
        match self.decide(&key.namespace, &latest, &about).await? {
            Decision::Keep => {}
            Decision::Patch { remove, unblock } => self.patch_refs(idx, &latest, &remove, &unblock).await?,
            Decision::Delete { policy, unblock } => {
                if !unblock.is_empty() {
                    // The patch changes the resourceVersion: the next sync deletes.
                    self.patch_refs(idx, &latest, &[], &unblock).await?;
                    self.queue.add(key.clone());
                } else {
                    self.delete(idx, &latest, policy).await?;
                }
            }
        }
        Ok(Action::Done)
    }
}

fn ref_to<'a>(meta: &'a ObjectMeta, uid: &str) -> Option<&'a OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.uid == uid)
}

fn dependents_of(sources: &[Arc<dyn Source>], uid: &str) -> Vec<(usize, ObjectMeta)> {
    sources.iter().enumerate().flat_map(|(i, s)| s.dependents(uid).into_iter().map(move |d| (i, d))).collect()
}

/// The graph builder: which items a change makes worth a look.
fn on_event(q: &Queue, sources: &OnceLock<Vec<Arc<dyn Source>>>, e: Event<'_>) {
    let Some(sources) = sources.get() else { return };
    match (e.old, e.new) {
        (_, Some(new)) => {
            let deleting_ours = new.deletion_timestamp.is_some() && (has_finalizer(new, ORPHAN) || has_finalizer(new, FOREGROUND));
            if new.owner_references.as_ref().is_some_and(|r| !r.is_empty()) || deleting_ours {
                q.add(item(e.source, new));
            }
            if let Some(old) = e.old {
                // Owners this object stopped naming may be waiting for it.
                for r in old.owner_references.iter().flatten() {
                    if !new.owner_references.iter().flatten().any(|n| n.uid == r.uid) {
                        wake_owner(q, sources, old, r);
                    }
                }
            }
        }
        (Some(old), None) => {
            // Its dependents may now be orphans; its owners may be waiting for it.
            for (i, d) in dependents_of(sources, old.uid.as_deref().unwrap_or_default()) {
                q.add(item(i, &d));
            }
            for r in old.owner_references.iter().flatten() {
                wake_owner(q, sources, old, r);
            }
        }
        (None, None) => {}
    }
}

fn wake_owner(q: &Queue, sources: &[Arc<dyn Source>], dependent: &ObjectMeta, r: &OwnerReference) {
    if let Some(i) = sources.iter().position(|s| s.kind().is(&r.api_version, &r.kind)) {
        let ns = if sources[i].kind().namespaced { dependent.namespace.clone().unwrap_or_default() } else { String::new() };
        q.add(ObjectKey::new(ns, format!("{i}|{}", r.name)));
    }
}

impl Reconcile for GarbageCollector {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        self.sync(key).await
    }
}
