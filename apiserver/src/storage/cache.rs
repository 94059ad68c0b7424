//! The watch cache: one store watch per resource feeds every client watch of that resource, so
//! a thousand client watches cost one store watch (kube-apiserver's cacher).
//!
//! Every resource's [`Cache`] starts with the server ([`Caches::start_all`]; one a request
//! needs first starts then): it lists the resource at revision X, then watches the store from
//! X+1 with a [`keel_etcd::Resumable`] watch (a broken stream resumes where it left off). It keeps
//! - `objects`: every object as of `revision` (watches from resourceVersion 0 start from it);
//! - `window`: the last [`WINDOW`] changes, so a watch from any revision ≥ `oldest` replays
//!   exactly what followed it; an older one is 410 Expired;
//! - a broadcast channel of new changes, and every `bookmark_every` a [`Change::Progress`] at
//!   the revision it has reached (kube's cacher bookmarks a quiet watch about once a minute). A client subscribes and copies the window under one
//!   lock, so nothing falls between its replay and its live events.
//!
//! If the store has compacted past the revision the watch needs, the cache lists again and
//! sends [`Change::Reset`], which ends every client watch with 410 (clients list and watch
//! again, as informers do). The following tasks run in the server's task set ([`Spawner`]), so
//! they stop with it.
//!
//! Lock order: `Caches::by_resource` (async, held while a cache starts) before a cache's
//! `state` (std mutex, never held across an await).

use crate::error::ApiError;
use crate::registry::Resource;
use crate::storage::{Store, Stored, keys, open};
use crate::tasks::Spawner;
use futures::StreamExt;
use keel_etcd::proto::etcdserverpb::WatchCreateRequest;
use keel_etcd::proto::mvccpb::event::EventType;
use keel_etcd::{Resumable, WatchItem};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Changes kept per resource for watches that start in the past (each holds the object before
/// and after, so this bounds the memory a busy resource costs).
pub const WINDOW: usize = 1_000;

/// One object's side of a change: its key and JSON (with resourceVersion).
#[derive(Debug)]
pub struct Object {
    /// Store key.
    pub key: String,
    /// The object.
    pub value: Value,
}

/// What the cache tells its watchers.
#[derive(Debug)]
pub enum Change {
    /// An object changed at `revision`: `new` is None for a delete, `prev` None for a create.
    /// `new` is shared with the cache's current objects.
    Event {
        /// The change's revision.
        revision: i64,
        /// The object after (None: deleted).
        new: Option<Arc<Object>>,
        /// The object before (None: created).
        prev: Option<Object>,
    },
    /// Everything up to this revision has been sent.
    Progress(i64),
    /// The cache lost track (compaction): watchers must list again.
    Reset,
}

impl Change {
    /// The revision this change brings a watcher to.
    pub fn revision(&self) -> i64 {
        match self {
            Change::Event { revision, .. } | Change::Progress(revision) => *revision,
            Change::Reset => 0,
        }
    }
}

struct State {
    revision: i64,
    oldest: i64,
    window: VecDeque<Arc<Change>>,
    objects: BTreeMap<String, Arc<Object>>,
}

/// One resource's cache.
pub struct Cache {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Change>>,
}

/// Where a client watch starts.
pub struct Start {
    /// Objects to send as ADDED first (for resourceVersion 0), at `revision`.
    pub initial: Vec<Arc<Object>>,
    /// Changes after the client's revision, already in the window.
    pub replay: Vec<Arc<Change>>,
    /// Live changes from here on (may repeat replayed ones: skip revisions already sent).
    pub live: broadcast::Receiver<Arc<Change>>,
    /// The revision `initial` is at.
    pub revision: i64,
}

fn decode(s: &Stored) -> Result<Object, ApiError> {
    Ok(Object { key: s.key.clone(), value: crate::storage::decode(s)? })
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The revision the cache has reached.
    pub fn revision(&self) -> i64 {
        self.lock().revision
    }

    /// The object stored at `key` as of [`Cache::revision`], if the cache holds it (a cheap
    /// read for lookups that may lag the store a little: the token authenticator's).
    pub fn get(&self, key: &str) -> Option<Arc<Object>> {
        self.lock().objects.get(key).cloned()
    }

    /// Whether the cache holds any object under `prefix` (a cheap "is there anything to
    /// read?" before a linearizable read of the store).
    pub fn any_under(&self, prefix: &str) -> bool {
        self.lock().objects.range(prefix.to_string()..).next().is_some_and(|(k, _)| k.starts_with(prefix))
    }

    /// A watch from `from` (None: the current objects, then what follows).
    pub fn start(&self, from: Option<i64>) -> Result<Start, ApiError> {
        let st = self.lock();
        let live = self.tx.subscribe();
        match from {
            None => Ok(Start { initial: st.objects.values().cloned().collect(), replay: Vec::new(), live, revision: st.revision }),
            Some(r) if r < st.oldest => Err(ApiError::Gone(format!("too old resource version: {r} ({})", st.oldest))),
            Some(r) => {
                let replay = st.window.iter().filter(|c| c.revision() > r).cloned().collect();
                Ok(Start { initial: Vec::new(), replay, live, revision: r })
            }
        }
    }

    fn push(&self, change: Change) {
        let change = Arc::new(change);
        {
            let mut st = self.lock();
            if let Change::Event { revision, new, prev } = change.as_ref() {
                match (new, prev) {
                    (Some(n), _) => {
                        st.objects.insert(n.key.clone(), n.clone());
                    }
                    (None, Some(p)) => {
                        st.objects.remove(&p.key);
                    }
                    (None, None) => {}
                }
                st.window.push_back(change.clone());
                while st.window.len() > WINDOW {
                    if let Some(old) = st.window.pop_front() {
                        st.oldest = old.revision();
                    }
                }
                st.revision = st.revision.max(*revision);
            } else if let Change::Progress(r) = change.as_ref() {
                st.revision = st.revision.max(*r);
            }
        }
        // No receivers is fine: nobody watches right now.
        let _ = self.tx.send(change);
    }

    /// Replaces the state with a fresh list at its revision (start, and after compaction).
    fn reset(&self, objects: &[Stored], revision: i64) -> Result<(), ApiError> {
        let mut map = BTreeMap::new();
        for s in objects {
            map.insert(s.key.clone(), Arc::new(decode(s)?));
        }
        let mut st = self.lock();
        st.objects = map;
        st.window.clear();
        st.revision = revision;
        st.oldest = revision;
        Ok(())
    }
}

/// Follows the store from `cache.revision + 1` until its task is stopped; every
/// `bookmark_every` it tells its watchers how far it is (they turn that into BOOKMARKs).
async fn follow(store: Store, cache: Arc<Cache>, prefix: String, bookmark_every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let after = cache.lock().revision;
        let create = WatchCreateRequest {
            key: prefix.as_bytes().to_vec().into(),
            range_end: keel_etcd::prefix_end(prefix.as_bytes()).into(),
            start_revision: after + 1,
            progress_notify: true,
            prev_kv: true,
            ..Default::default()
        };
        let mut items = std::pin::pin!(Resumable::new(store.client().clone(), create).into_stream());
        loop {
            let item = tokio::select! {
                biased;
                item = items.next() => item,
                _ = ticks.tick() => {
                    let rev = cache.revision();
                    cache.push(Change::Progress(rev));
                    continue;
                }
            };
            let Some(item) = item else { break };
            match item {
                WatchItem::Progress(rev) => cache.push(Change::Progress(rev)),
                WatchItem::Events(events) => {
                    for ev in events {
                        let revision = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                        let deleted = ev.r#type == EventType::Delete as i32;
                        let codec = store.codec();
                        let new = match (deleted, ev.kv) {
                            (false, Some(kv)) => open(codec, kv).and_then(|s| decode(&s)).ok().map(Arc::new),
                            _ => None,
                        };
                        let prev = ev.prev_kv.and_then(|kv| open(codec, kv).and_then(|s| decode(&s)).ok());
                        cache.push(Change::Event { revision, new, prev });
                    }
                }
                WatchItem::Compacted(_) => break,
            }
        }
        // Compacted past what the cache has: list again, and tell every watcher.
        tracing::warn!("watch cache {prefix}: compacted past {after}; listing again");
        match store.list_all(&prefix).await {
            Ok((objects, revision)) if cache.reset(&objects, revision).is_ok() => cache.push(Change::Reset),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Every resource's cache, started on first use.
pub struct Caches {
    store: Store,
    spawner: Spawner,
    bookmark_every: Duration,
    by_resource: tokio::sync::Mutex<BTreeMap<&'static str, Arc<Cache>>>,
}

impl Caches {
    /// No caches yet; their followers will run in `spawner`'s task set and report progress
    /// every `bookmark_every`.
    pub fn new(store: Store, spawner: Spawner, bookmark_every: Duration) -> Caches {
        Caches { store, spawner, bookmark_every, by_resource: tokio::sync::Mutex::new(BTreeMap::new()) }
    }

    /// Starts every served resource's cache (at server start, as kube-apiserver does: a watch
    /// from a revision before its resource's cache started would be 410 Expired).
    pub async fn start_all(&self) -> Result<(), ApiError> {
        for r in crate::registry::RESOURCES {
            self.of(r).await?;
        }
        Ok(())
    }

    /// The cache of `res` if it is started, without waiting: `None` when it is not, or while
    /// another caller holds the map (starting a cache); callers then go through [`Caches::of`].
    pub fn started(&self, res: &'static Resource) -> Option<Arc<Cache>> {
        self.by_resource.try_lock().ok()?.get(res.plural).cloned()
    }

    /// The cache of `res`, started (listed, watching) if it was not.
    pub async fn of(&self, res: &'static Resource) -> Result<Arc<Cache>, ApiError> {
        let mut map = self.by_resource.lock().await;
        if let Some(c) = map.get(res.plural) {
            return Ok(c.clone());
        }
        let prefix = keys::prefix(res, None);
        let (objects, revision) = self.store.list_all(&prefix).await?;
        let (tx, _) = broadcast::channel(4096);
        let cache = Arc::new(Cache {
            state: Mutex::new(State { revision, oldest: revision, window: VecDeque::new(), objects: BTreeMap::new() }),
            tx,
        });
        cache.reset(&objects, revision)?;
        self.spawner.spawn(follow(self.store.clone(), cache.clone(), prefix, self.bookmark_every));
        map.insert(res.plural, cache.clone());
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, rv: i64) -> Object {
        Object { key: format!("/registry/pods/d/{name}"), value: json!({"metadata": {"name": name, "resourceVersion": rv.to_string()}}) }
    }

    fn cache(revision: i64) -> Cache {
        let (tx, _) = broadcast::channel(16);
        Cache { state: Mutex::new(State { revision, oldest: revision, window: VecDeque::new(), objects: BTreeMap::new() }), tx }
    }

    #[test]
    fn watches_replay_from_the_window_and_expire_before_it() {
        let c = cache(10);
        c.push(Change::Event { revision: 11, new: Some(Arc::new(obj("a", 11))), prev: None });
        c.push(Change::Event { revision: 12, new: Some(Arc::new(obj("b", 12))), prev: None });
        c.push(Change::Event { revision: 13, new: None, prev: Some(obj("a", 11)) });
        let s = c.start(Some(11)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.replay.iter().map(|c| c.revision()).collect::<Vec<_>>(), vec![12, 13]);
        let now = c.start(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(now.revision, 13);
        assert_eq!(now.initial.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), vec!["/registry/pods/d/b"]);
        assert!(matches!(c.start(Some(9)), Err(ApiError::Gone(_))), "before the cache's start");
    }

    #[test]
    fn the_window_is_bounded_and_what_fell_out_is_gone() {
        let c = cache(0);
        for r in 1..=(WINDOW as i64 + 5) {
            c.push(Change::Event { revision: r, new: Some(Arc::new(obj("a", r))), prev: None });
        }
        assert!(matches!(c.start(Some(4)), Err(ApiError::Gone(_))));
        let s = c.start(Some(5)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.replay.len(), WINDOW);
    }
}
