//! Which pods this node runs, and one worker each. [`Feed`] keeps the apiserver's pods bound
//! to the nodes of this process (one watch for all of them, so 1,000 simulated nodes cost one
//! connection, relisting on `410 Gone` as kube-runtime's watcher does); [`Manager`] turns the
//! desired set into workers: a new pod gets a worker, a changed pod's worker gets the new version
//! (a `watch` channel keeps only the latest, so a slow worker skips stale versions), a pod gone
//! from its source gets `removed` and its worker stops it and ends.
//!
//! Invariant: the desired set is recomputed whole on every pass (level-triggered); pods the
//! runtime holds that no source wants (left by a kubelet that crashed while deleting them) are
//! stopped and removed once the feed has listed at least once.

use crate::pod::worker::Worker;
use crate::pod::{Node, PodUpdate};
use crate::runtime::{PodUid, Runtime};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

type Pods = BTreeMap<String, Arc<Pod>>;

/// The apiserver's pods for the nodes of this process, by node then uid.
#[derive(Clone, Default)]
pub struct Feed {
    inner: Arc<Mutex<FeedState>>,
}

#[derive(Default)]
struct FeedState {
    by_node: BTreeMap<String, Pods>,
    wakers: BTreeMap<String, watch::Sender<u64>>,
    synced: bool,
    generation: u64,
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

impl Feed {
    /// Subscribes node `name`: the receiver changes whenever its pods may have.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<u64> {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.wakers.entry(name.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// The pods bound to `name` now, and whether the feed has listed at least once.
    pub fn pods(&self, name: &str) -> (Pods, bool) {
        let st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (st.by_node.get(name).cloned().unwrap_or_default(), st.synced)
    }

    fn wake(st: &mut FeedState, nodes: &BTreeSet<String>) {
        st.generation += 1;
        let g = st.generation;
        for n in nodes {
            if let Some(w) = st.wakers.get(n) {
                w.send_replace(g);
            }
        }
    }

    fn apply(&self, ev: Event<Pod>, buffer: &mut Vec<Pod>) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut touched = BTreeSet::new();
        match ev {
            Event::Init => buffer.clear(),
            Event::InitApply(p) => buffer.push(p),
            Event::InitDone => {
                let old = std::mem::take(&mut st.by_node);
                touched.extend(old.keys().cloned());
                for p in buffer.drain(..) {
                    if let (Some(n), Some(uid)) = (node_of(&p), p.metadata.uid.clone()) {
                        touched.insert(n.clone());
                        st.by_node.entry(n).or_default().insert(uid, Arc::new(p));
                    }
                }
                st.synced = true;
            }
            Event::Apply(p) => {
                if let (Some(n), Some(uid)) = (node_of(&p), p.metadata.uid.clone()) {
                    touched.insert(n.clone());
                    st.by_node.entry(n).or_default().insert(uid, Arc::new(p));
                }
            }
            Event::Delete(p) => {
                if let (Some(n), Some(uid)) = (node_of(&p), p.metadata.uid.clone()) {
                    if let Some(m) = st.by_node.get_mut(&n) {
                        m.remove(&uid);
                    }
                    touched.insert(n);
                }
            }
        }
        if !touched.is_empty() {
            Self::wake(&mut st, &touched);
        }
    }

    /// Watches pods with `field_selector` (`spec.nodeName=<node>`, or `spec.nodeName!=` for
    /// many nodes) until the process ends, relisting after errors.
    pub async fn run(self, client: kube::Client, field_selector: String) {
        let api: Api<Pod> = Api::all(client);
        let cfg = watcher::Config::default().fields(&field_selector);
        let mut stream = watcher::watcher(api, cfg).boxed();
        let mut buffer = Vec::new();
        loop {
            match stream.next().await {
                Some(Ok(ev)) => self.apply(ev, &mut buffer),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            }
        }
    }
}

struct Running {
    tx: watch::Sender<PodUpdate>,
    task: JoinHandle<()>,
}

/// The workers of one node.
pub struct Manager {
    node: Arc<Node>,
    workers: BTreeMap<PodUid, Running>,
}

impl Manager {
    /// No workers yet.
    pub fn new(node: Arc<Node>) -> Manager {
        Manager { node, workers: BTreeMap::new() }
    }

    /// Brings the workers in line with `desired` (uid → update).
    pub fn update(&mut self, desired: BTreeMap<PodUid, PodUpdate>) {
        self.workers.retain(|_, w| !w.task.is_finished());
        for (uid, w) in self.workers.iter() {
            if !desired.contains_key(uid) && !w.tx.borrow().removed {
                let mut last = w.tx.borrow().clone();
                last.removed = true;
                w.tx.send_replace(last);
            }
        }
        for (uid, up) in desired {
            match self.workers.get(&uid) {
                Some(w) => {
                    let cur = w.tx.borrow();
                    let same = Arc::ptr_eq(&cur.pod, &up.pod) && cur.verdict == up.verdict && cur.removed == up.removed;
                    drop(cur);
                    if !same {
                        w.tx.send_replace(up);
                    }
                }
                None => {
                    if up.removed {
                        continue;
                    }
                    let (tx, rx) = watch::channel(up);
                    let task = tokio::spawn(Worker::new(self.node.clone(), uid.clone(), rx).run());
                    self.workers.insert(uid, Running { tx, task });
                }
            }
        }
    }

    /// The pods that have a worker.
    pub fn active(&self) -> Vec<(PodUid, Arc<Pod>)> {
        self.workers.iter().filter(|(_, w)| !w.task.is_finished()).map(|(u, w)| (u.clone(), w.tx.borrow().pod.clone())).collect()
    }

    /// Stops and removes what the runtime holds for pods nobody wants.
    pub async fn remove_orphans(&self, wanted: &BTreeSet<PodUid>) {
        let rt: &Arc<dyn Runtime> = &self.node.runtime;
        for uid in rt.pods().await.unwrap_or_default() {
            if wanted.contains(&uid) || self.workers.contains_key(&uid) {
                continue;
            }
            tracing::info!(pod = %uid, "removing a pod no source wants");
            for r in rt.containers(&uid).await.unwrap_or_default().iter().filter(|r| r.running()) {
                let _ = rt.stop_container(&r.id, Duration::from_secs(2)).await;
            }
            let _ = rt.remove_pod(&uid).await;
        }
    }

    /// Stops every pod (`--stop-pods-on-shutdown`).
    pub async fn stop_all(&mut self) {
        for w in self.workers.values() {
            let mut last = w.tx.borrow().clone();
            last.removed = true;
            w.tx.send_replace(last);
        }
        for (_, w) in std::mem::take(&mut self.workers) {
            let _ = tokio::time::timeout(Duration::from_secs(40), w.task).await;
        }
    }
}
