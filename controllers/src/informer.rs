//! Shared informers: one watch per resource for every controller in the process
//! (client-go's `SharedInformerFactory`), built on kube-runtime's `watcher` (list, watch,
//! relist on 410 Gone, with backoff) and reflector `Store` (one writer, many cheap readers).
//!
//! Invariants:
//! - the store is updated before any handler or index sees an event, so a reconcile woken by a
//!   handler reads at least that state;
//! - handlers run in the informer's own task, in event order, and must only enqueue keys (never
//!   block, never call the apiserver);
//! - after every (re)list the informer compares the new list with what it held and reports
//!   the differences as `Added`/`Updated`/`Deleted`, so a watch gap never loses a delete;
//! - an index maps a string (an owner's uid, a node name, a namespace) to the keys of the
//!   objects that produce it, and is rebuilt from the store after every relist.
//!
//! Lock order: `handlers` and `indexes` are never held together with each other.

use crate::key::ObjectKey;
use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// What happened to one object.
#[derive(Debug)]
pub enum Change<'a, K> {
    /// It appeared.
    Added(&'a K),
    /// It changed (or a relist saw it again: `old` and `new` may be equal).
    Updated {
        /// What the cache held before.
        old: &'a K,
        /// What it holds now.
        new: &'a K,
    },
    /// It is gone (its last known state).
    Deleted(&'a K),
}

impl<'a, K> Change<'a, K> {
    /// The object as it is now (or was last, for `Deleted`).
    pub fn object(&self) -> &'a K {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;
type IndexFn<K> = Box<dyn Fn(&K) -> Vec<String> + Send + Sync>;

struct Index<K> {
    values: IndexFn<K>,
    by_value: HashMap<String, HashSet<ObjectKey>>,
    of_key: HashMap<ObjectKey, Vec<String>>,
}

impl<K> Index<K> {
    fn remove(&mut self, key: &ObjectKey) {
        for v in self.of_key.remove(key).unwrap_or_default() {
            if let Some(set) = self.by_value.get_mut(&v) {
                set.remove(key);
                if set.is_empty() {
                    self.by_value.remove(&v);
                }
            }
        }
    }

    fn insert(&mut self, key: ObjectKey, obj: &K) {
        self.remove(&key);
        let vals = (self.values)(obj);
        for v in &vals {
            self.by_value.entry(v.clone()).or_default().insert(key.clone());
        }
        if !vals.is_empty() {
            self.of_key.insert(key, vals);
        }
    }
}

/// The bounds every cached kind meets.
pub trait Cached: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static
where
    Self::DynamicType: Clone + Eq + Hash + Default + Send + Sync,
{
}
impl<K> Cached for K
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Default + Send + Sync,
{
}

/// One resource's shared cache, its indexes and its event handlers.
pub struct Informer<K: Cached>
where
    K::DynamicType: Clone + Eq + Hash + Default + Send + Sync,
{
    name: &'static str,
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: Mutex<Option<Writer<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    indexes: RwLock<HashMap<&'static str, Index<K>>>,
    synced_tx: watch::Sender<bool>,
}

impl<K: Cached> Informer<K>
where
    K::DynamicType: Clone + Eq + Hash + Default + Send + Sync,
{
    /// An informer over `api` (not started). `name` is the resource, for logs.
    pub fn new(name: &'static str, api: Api<K>, config: watcher::Config) -> Arc<Informer<K>> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            name,
            api,
            config,
            store,
            writer: Mutex::new(Some(writer)),
            handlers: RwLock::new(Vec::new()),
            indexes: RwLock::new(HashMap::new()),
            synced_tx: watch::channel(false).0,
        })
    }

    /// The resource's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls `f` for every change; register before [`Informer::runner`].
    pub fn on_change(&self, f: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).push(Box::new(f));
    }

    /// Adds index `name`: each object is filed under every string `values` returns for it.
    pub fn add_index(&self, name: &'static str, values: impl Fn(&K) -> Vec<String> + Send + Sync + 'static) {
        let idx = Index { values: Box::new(values), by_value: HashMap::new(), of_key: HashMap::new() };
        self.indexes.write().unwrap_or_else(|p| p.into_inner()).insert(name, idx);
    }

    /// The objects filed under `value` in index `name` (empty for an unknown index).
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let keys: Vec<ObjectKey> = {
            let idx = self.indexes.read().unwrap_or_else(|p| p.into_inner());
            idx.get(name).and_then(|i| i.by_value.get(value)).map(|s| s.iter().cloned().collect()).unwrap_or_default()
        };
        let mut out: Vec<Arc<K>> = keys.iter().filter_map(|k| self.get(k)).collect();
        out.sort_by_key(|o| ObjectKey::of(o.as_ref()));
        out
    }

    /// The cached object `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        let mut r = ObjectRef::<K>::new_with(&key.name, Default::default());
        if !key.namespace.is_empty() {
            r = r.within(&key.namespace);
        }
        self.store.get(&r)
    }

    /// Every cached object, in key order.
    pub fn list(&self) -> Vec<Arc<K>> {
        let mut all = self.store.state();
        all.sort_by_key(|o| ObjectKey::of(o.as_ref()));
        all
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// True once the first list has been applied.
    pub fn is_synced(&self) -> bool {
        *self.synced_tx.borrow()
    }

    /// Waits for the first list.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The watch loop, to run in a task (once: later calls return `None`). Dropping the future
    /// stops the watch.
    pub fn runner(self: &Arc<Self>) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let me = self.clone();
        Some(async move { me.run(writer).await })
    }

    async fn run(self: Arc<Self>, mut writer: Writer<K>) {
        let stream = watcher::watcher(self.api.clone(), self.config.clone()).default_backoff();
        futures::pin_mut!(stream);
        let mut before: Option<Vec<Arc<K>>> = None;
        while let Some(ev) = stream.next().await {
            let mut ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(resource = self.name, "watch: {e}");
                    continue;
                }
            };
            strip(&mut ev);
            match &ev {
                Event::Apply(obj) => {
                    let key = ObjectKey::of(obj);
                    let old = self.get(&key);
                    writer.apply_watcher_event(&ev);
                    self.index_insert(&key, obj);
                    match old {
                        Some(old) => self.dispatch(&Change::Updated { old: &old, new: obj }),
                        None => self.dispatch(&Change::Added(obj)),
                    }
                }
                Event::Delete(obj) => {
                    let key = ObjectKey::of(obj);
                    writer.apply_watcher_event(&ev);
                    self.index_remove(&key);
                    self.dispatch(&Change::Deleted(obj));
                }
                Event::Init => {
                    before = Some(self.store.state());
                    writer.apply_watcher_event(&ev);
                }
                Event::InitApply(_) => writer.apply_watcher_event(&ev),
                Event::InitDone => {
                    writer.apply_watcher_event(&ev);
                    self.reindex();
                    self.synced_tx.send_replace(true);
                    self.dispatch_relist(before.take().unwrap_or_default());
                }
            }
        }
    }

    fn dispatch_relist(&self, before: Vec<Arc<K>>) {
        let mut old: HashMap<ObjectKey, Arc<K>> = before.into_iter().map(|o| (ObjectKey::of(o.as_ref()), o)).collect();
        for new in self.list() {
            match old.remove(&ObjectKey::of(new.as_ref())) {
                Some(o) => self.dispatch(&Change::Updated { old: &o, new: &new }),
                None => self.dispatch(&Change::Added(&new)),
            }
        }
        let mut gone: Vec<_> = old.into_iter().collect();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, o) in gone {
            self.dispatch(&Change::Deleted(&o));
        }
    }

    fn dispatch(&self, change: &Change<'_, K>) {
        for h in self.handlers.read().unwrap_or_else(|p| p.into_inner()).iter() {
            h(change);
        }
    }

    fn index_insert(&self, key: &ObjectKey, obj: &K) {
        for idx in self.indexes.write().unwrap_or_else(|p| p.into_inner()).values_mut() {
            idx.insert(key.clone(), obj);
        }
    }

    fn index_remove(&self, key: &ObjectKey) {
        for idx in self.indexes.write().unwrap_or_else(|p| p.into_inner()).values_mut() {
            idx.remove(key);
        }
    }

    fn reindex(&self) {
        let all = self.store.state();
        let mut idxs = self.indexes.write().unwrap_or_else(|p| p.into_inner());
        for idx in idxs.values_mut() {
            idx.by_value.clear();
            idx.of_key.clear();
            for o in &all {
                idx.insert(ObjectKey::of(o.as_ref()), o);
            }
        }
    }
}

/// Drops what no controller reads (managedFields), to keep 10,000 cached pods small.
fn strip<K: Resource>(ev: &mut Event<K>) {
    match ev {
        Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) => o.meta_mut().managed_fields = None,
        Event::Init | Event::InitDone => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body::Frame;
    use http_body_util::StreamBody;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::client::Body;

    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    type Chunk = Result<Frame<Bytes>, BoxError>;

    fn added(name: &str, rv: u32) -> Chunk {
        let line = format!(
            r#"{{"type":"ADDED","object":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"d","resourceVersion":"{rv}"}}}}}}"#
        );
        Ok(Frame::data(Bytes::from(line + "\n")))
    }

    /// A fake apiserver: the list holds `a` at rv 5; the first watch sends `b` (rv 6) and then
    /// breaks as a killed apiserver's connection does (EOF without TLS close_notify); any later
    /// watch sends `c` (rv 7) and stays open. Records each request's query.
    fn apiserver(seen: Arc<Mutex<Vec<String>>>) -> kube::Client {
        let service = tower::service_fn(move |req: Request<Body>| {
            let seen = seen.clone();
            async move {
                let query = req.uri().query().unwrap_or_default().to_string();
                let watches = {
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    s.push(query.clone());
                    s.iter().filter(|q| q.contains("watch=true")).count()
                };
                let chunks: Vec<Chunk> = if !query.contains("watch=true") {
                    let list = r#"{"apiVersion":"v1","kind":"ConfigMapList","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"a","namespace":"d","resourceVersion":"5"}}]}"#;
                    vec![Ok(Frame::data(Bytes::from(list)))]
                } else if watches == 1 {
                    let eof =
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed connection without sending TLS close_notify");
                    vec![added("b", 6), Err(Box::new(eof))]
                } else {
                    vec![added("c", 7)]
                };
                let open = watches > 1;
                let stream = futures::stream::iter(chunks).chain(futures::stream::unfold(open, |open| async move {
                    if open {
                        futures::future::pending::<()>().await;
                    }
                    None
                }));
                Ok::<_, BoxError>(Response::new(StreamBody::new(Box::pin(stream))))
            }
        });
        kube::Client::new(service, "d")
    }

    #[tokio::test]
    async fn a_watch_broken_by_an_apiserver_kill_resumes_from_its_last_revision() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let api: Api<ConfigMap> = Api::namespaced(apiserver(seen.clone()), "d");
        let informer = Informer::new("configmaps", api, watcher::Config::default());
        let changes = Arc::new(Mutex::new(Vec::new()));
        let log = changes.clone();
        informer.on_change(move |ch: &Change<'_, ConfigMap>| {
            log.lock().unwrap_or_else(|p| p.into_inner()).push(ch.object().metadata.name.clone().unwrap_or_default());
        });
        let Some(run) = informer.runner() else { panic!("a fresh informer has a runner") };
        let task = tokio::spawn(run);
        // Bounded only so a regression fails instead of hanging the suite.
        for _ in 0..2000 {
            if informer.get(&ObjectKey::new("d", "c")).is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        task.abort();
        let names: Vec<String> = informer.list().iter().filter_map(|c| c.metadata.name.clone()).collect();
        assert_eq!(names, vec!["a", "b", "c"], "the cache holds what came before and after the break");
        assert_eq!(*changes.lock().unwrap_or_else(|p| p.into_inner()), vec!["a", "b", "c"], "each object once, in order");
        let queries = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let watches: Vec<&String> = queries.iter().filter(|q| q.contains("watch=true")).collect();
        assert_eq!(queries.len() - watches.len(), 1, "no relist after a broken watch: {queries:?}");
        assert!(watches.len() >= 2 && watches[1].contains("resourceVersion=6"), "re-watched from rv 6: {queries:?}");
    }
}
