//! The garbage collector's view of every resource it watches: the shared informers behind
//! one object-safe trait, so the ownership graph is read from the same caches (and watches)
//! the other controllers use. Owners are found by `apiVersion` group + `kind`; dependents by
//! the informers' [`BY_OWNER`] index.

use crate::informer::{Cached, Change, Informer};
use crate::key::ObjectKey;
use crate::shared::{BY_OWNER, BY_UID, Shared};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::discovery::ApiResource;
use std::sync::Arc;

/// A watched resource's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural (URL segment).
    pub plural: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

impl Kind {
    /// For kube's dynamic client.
    pub fn api_resource(&self) -> ApiResource {
        let api_version = if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) };
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version,
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// True when an owner reference's `apiVersion` and `kind` name this resource (any version
    /// of its group).
    pub fn is(&self, api_version: &str, kind: &str) -> bool {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        group == self.group && kind == self.kind
    }
}

/// One resource as the garbage collector reads it.
pub trait Source: Send + Sync {
    /// Which resource.
    fn kind(&self) -> &Kind;
    /// The cached object `ns/name` ("" namespace for cluster-scoped).
    fn get(&self, ns: &str, name: &str) -> Option<ObjectMeta>;
    /// Cached objects that name `uid` among their owners.
    fn dependents(&self, uid: &str) -> Vec<ObjectMeta>;
    /// The cached object with `uid`, in any namespace.
    fn by_uid(&self, uid: &str) -> Option<ObjectMeta>;
    /// True once listed.
    fn synced(&self) -> bool;
}

struct Typed<K: Cached>
where
    K::DynamicType: Clone + Eq + std::hash::Hash + Default + Send + Sync,
{
    kind: Kind,
    informer: Arc<Informer<K>>,
}

impl<K: Cached> Source for Typed<K>
where
    K::DynamicType: Clone + Eq + std::hash::Hash + Default + Send + Sync,
{
    fn kind(&self) -> &Kind {
        &self.kind
    }
    fn get(&self, ns: &str, name: &str) -> Option<ObjectMeta> {
        self.informer.get(&ObjectKey::new(ns, name)).map(|o| o.meta().clone())
    }
    fn dependents(&self, uid: &str) -> Vec<ObjectMeta> {
        self.informer.by_index(BY_OWNER, uid).iter().map(|o| o.meta().clone()).collect()
    }
    fn by_uid(&self, uid: &str) -> Option<ObjectMeta> {
        self.informer.by_index(BY_UID, uid).first().map(|o| o.meta().clone())
    }
    fn synced(&self) -> bool {
        self.informer.is_synced()
    }
}

/// A change the graph builder hears about: which source, old and new metadata.
pub struct Event<'a> {
    /// Index into the sources.
    pub source: usize,
    /// Before (None when added).
    pub old: Option<&'a ObjectMeta>,
    /// After (None when deleted).
    pub new: Option<&'a ObjectMeta>,
}

type Hook = Arc<dyn Fn(Event<'_>) + Send + Sync>;

fn add<K>(out: &mut Vec<Arc<dyn Source>>, informer: &Arc<Informer<K>>, namespaced: bool, hook: &Hook)
where
    K: Cached + Resource<DynamicType = ()>,
{
    let kind = Kind {
        group: K::group(&()).into_owned(),
        version: K::version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        plural: K::plural(&()).into_owned(),
        namespaced,
    };
    let idx = out.len();
    let h = hook.clone();
    informer.on_change(move |ch: &Change<'_, K>| match ch {
        Change::Added(o) => h(Event { source: idx, old: None, new: Some(o.meta()) }),
        Change::Updated { old, new } => h(Event { source: idx, old: Some(old.meta()), new: Some(new.meta()) }),
        Change::Deleted(o) => h(Event { source: idx, old: Some(o.meta()), new: None }),
    });
    out.push(Arc::new(Typed { kind, informer: informer.clone() }));
}

/// Every resource the collector watches (all of `shared`'s informers; Events are ignored, as
/// kube's collector ignores them), with `hook` registered on each.
pub fn all(shared: &Shared, hook: Hook) -> Vec<Arc<dyn Source>> {
    let mut out: Vec<Arc<dyn Source>> = Vec::new();
    add(&mut out, &shared.pods, true, &hook);
    add(&mut out, &shared.replica_sets, true, &hook);
    add(&mut out, &shared.deployments, true, &hook);
    add(&mut out, &shared.daemon_sets, true, &hook);
    add(&mut out, &shared.nodes, false, &hook);
    add(&mut out, &shared.leases, true, &hook);
    add(&mut out, &shared.namespaces, false, &hook);
    add(&mut out, &shared.services, true, &hook);
    add(&mut out, &shared.endpoints, true, &hook);
    add(&mut out, &shared.service_accounts, true, &hook);
    add(&mut out, &shared.config_maps, true, &hook);
    add(&mut out, &shared.secrets, true, &hook);
    if let Some(i) = &shared.controller_revisions {
        add(&mut out, i, true, &hook);
    }
    if let Some(i) = &shared.endpoint_slices {
        add(&mut out, i, true, &hook);
    }
    out
}
