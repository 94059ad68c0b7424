//! The scheduling loop: one task that owns the cache, the queue and the algorithm, applies
//! informer events, schedules one pod at a time and hands the writes (binding, status,
//! events, victim deletion) to short-lived tasks whose outcomes come back to it.
//!
//! ```text
//!  informers ──Update──►┐                       ┌──► bind task ──Done──┐
//!                       ▼                       │                      │
//!            cache + queue ── pop ── schedule ──┤──► status / event    │
//!                ▲                              └──► preemption task   │
//!                └──────────────── forget / requeue / confirm ◄────────┘
//! ```
//!
//! Invariants:
//! - Nothing is scheduled before both informers have listed once (a partial cache would
//!   overcommit nodes), nor while this instance may not act (leader election).
//! - The loop never awaits an API call: a slow apiserver slows bindings, not the cache.
//! - A pod is assumed on its node before its binding is sent; every outcome of the binding
//!   either confirms the assumption (through the informer) or forgets it.
//! - Bindings in flight are bounded (`bind_concurrency`); the loop stops popping when the
//!   bound is reached.

use crate::binder::{Binder, Fence, Outcome};
use crate::cache::{Cache, Change};
use crate::events::{Kind, Note, Recorder};
use crate::flags::Config;
use crate::informer::Update;
use crate::metrics::Metrics;
use crate::pod::{PodInfo, PodKey};
use crate::preempt;
use crate::queue::{Place, SchedulingQueue};
use crate::schedule::Algorithm;
use k8s_openapi::api::core::v1::{Node, Pod};
use keel_leader::{Clock, Leadership};
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use rand::rngs::StdRng;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// What a write task reports back.
#[derive(Debug)]
enum Done {
    Bound { key: PodKey, uid: String, node: String, sent: Instant, outcome: Outcome },
}

/// Everything the loop is built from (the composition root fills it).
pub struct Parts {
    /// Checked settings.
    pub config: Config,
    /// Informer events.
    pub updates: mpsc::Receiver<Update>,
    /// API writes.
    pub binder: Binder,
    /// Event writer.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Wall time (status timestamps).
    pub clock: Arc<dyn Clock>,
    /// Tie-break randomness.
    pub rng: StdRng,
    /// The election outcome (`None` with `--leader-elect=false`).
    pub leadership: Option<Leadership>,
    /// This process's identity (the lease holder name when electing).
    pub identity: String,
    /// Marked ready once the informers have synced (for /readyz).
    pub health: keel_component::health::Health,
    /// The Lease's name (the `leader_election_master_status` label).
    pub lease_name: String,
    /// A planted bug, for keel-sim's self-test only (issue 23; no flag sets it): the pod is
    /// not assumed on its node while its binding is in flight, so until the informer shows
    /// the binding the node looks emptier than it is and can be overcommitted.
    pub bug_bind_without_assume: bool,
}

/// The loop's state.
pub struct Scheduler {
    p: Parts,
    fence: Arc<dyn Fence>,
    cache: Cache,
    queue: SchedulingQueue,
    algorithm: Algorithm,
    permits: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    pods_synced: bool,
    nodes_synced: bool,
    relist_pods: Option<BTreeSet<PodKey>>,
    relist_nodes: Option<BTreeSet<String>>,
    first_queued: HashMap<PodKey, Instant>,
    warned_nodes: BTreeSet<String>,
}

impl Scheduler {
    /// A loop over `parts`.
    pub fn new(parts: Parts) -> Scheduler {
        let fence: Arc<dyn Fence> = match &parts.leadership {
            Some(l) => Arc::new(l.clone()),
            None => Arc::new(crate::binder::Always),
        };
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Scheduler {
            fence,
            cache: Cache::new(),
            queue: SchedulingQueue::new(parts.config.queue),
            algorithm: Algorithm::new(parts.config.algorithm),
            permits: Arc::new(Semaphore::new(parts.config.bind_concurrency)),
            done_tx,
            done_rx,
            pods_synced: false,
            nodes_synced: false,
            relist_pods: None,
            relist_nodes: None,
            first_queued: HashMap::new(),
            warned_nodes: BTreeSet::new(),
            p: parts,
        }
    }

    fn can_schedule(&self) -> bool {
        self.pods_synced && self.nodes_synced && self.queue.has_active() && self.permits.available_permits() > 0 && self.fence.may_act()
    }

    /// Runs until `shutdown` completes (or the informers stop).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut leadership = self.p.leadership.clone();
        loop {
            // Apply what arrived, without waiting.
            for _ in 0..4096 {
                match self.p.updates.try_recv() {
                    Ok(u) => self.apply(u),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            while let Ok(d) = self.done_rx.try_recv() {
                self.finish(d);
            }
            self.queue.flush(Instant::now());
            if self.can_schedule() {
                for _ in 0..64 {
                    if !self.can_schedule() {
                        break;
                    }
                    if let Some(popped) = self.queue.pop() {
                        self.schedule_one(popped.info);
                    }
                }
                self.p.metrics.set_pending(self.queue.counts());
                tokio::task::yield_now().await;
                continue;
            }
            self.p.metrics.set_pending(self.queue.counts());
            self.p.metrics.set_leader(&self.p.lease_name, self.fence.may_act());
            let wake = self.queue.next_backoff_expiry().unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
            // Wake when the lease state might have changed: either a change is published or the
            // fencing deadline passes by itself.
            let lease_change = async {
                match leadership.as_mut() {
                    Some(l) => {
                        tokio::select! {
                            _ = l.changed() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                u = self.p.updates.recv() => match u {
                    Some(u) => self.apply(u),
                    None => return,
                },
                Some(d) = self.done_rx.recv() => self.finish(d),
                _ = tokio::time::sleep_until(wake) => {}
                _ = lease_change => {}
            }
        }
    }

    fn apply(&mut self, u: Update) {
        let now = Instant::now();
        match u {
            Update::Pod(ev) => self.on_pod_event(*ev, now),
            Update::Node(ev) => self.on_node_event(*ev, now),
        }
    }

    fn on_pod_event(&mut self, ev: Event<Pod>, now: Instant) {
        match ev {
            Event::Apply(pod) => self.on_pod(pod, now),
            Event::InitApply(pod) => {
                if let Some(keys) = self.relist_pods.as_mut() {
                    keys.insert(PodKey::of(&pod));
                }
                self.on_pod(pod, now);
            }
            Event::Delete(pod) => {
                let key = PodKey::of(&pod);
                self.queue.remove(&key);
                self.first_queued.remove(&key);
                if self.cache.remove_pod(&key) == Change::MayHelp {
                    self.queue.move_all(now);
                }
            }
            Event::Init => self.relist_pods = Some(BTreeSet::new()),
            Event::InitDone => {
                if let Some(keys) = self.relist_pods.take() {
                    self.cache.retain_pods(&keys);
                    let gone: Vec<PodKey> = self.first_queued.keys().filter(|k| !keys.contains(*k)).cloned().collect();
                    for k in gone {
                        self.queue.remove(&k);
                        self.first_queued.remove(&k);
                    }
                    self.queue.move_all(now);
                }
                self.mark_synced(true);
            }
        }
    }

    fn on_pod(&mut self, pod: Pod, now: Instant) {
        let info = Arc::new(PodInfo::parse(Arc::new(pod)));
        let change = self.cache.update_pod(info.clone());
        let gated = info.pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty());
        let key = info.key.clone();
        if info.is_pending() && info.scheduler_name == self.p.config.scheduler_name && !gated {
            if !self.cache.is_placed(&key) {
                self.first_queued.entry(key).or_insert(now);
                self.queue.add(info, now);
            }
        } else {
            // Our own binding in flight reports its latency when it returns.
            if self.queue.place(&key) != Some(Place::InFlight) {
                self.first_queued.remove(&key);
            }
            self.queue.remove(&key);
        }
        if change == Change::MayHelp {
            self.queue.move_all(now);
        }
    }

    fn on_node_event(&mut self, ev: Event<Node>, now: Instant) {
        match ev {
            Event::Apply(node) => self.on_node(&node, now),
            Event::InitApply(node) => {
                if let Some(names) = self.relist_nodes.as_mut() {
                    names.insert(node.name_any());
                }
                self.on_node(&node, now);
            }
            Event::Delete(node) => {
                let name = node.name_any();
                // Bindings to a vanished node are abandoned: forget and try again elsewhere.
                for key in self.cache.binding_on(&name) {
                    self.cache.forget(&key);
                    self.queue.requeue(&key, false, now);
                }
                self.cache.remove_node(&name);
            }
            Event::Init => self.relist_nodes = Some(BTreeSet::new()),
            Event::InitDone => {
                if let Some(names) = self.relist_nodes.take() {
                    self.cache.retain_nodes(&names);
                    self.queue.move_all(now);
                }
                self.mark_synced(false);
            }
        }
    }

    fn on_node(&mut self, node: &Node, now: Instant) {
        let (change, problem) = self.cache.upsert_node(node);
        if let Some(problem) = problem
            && self.warned_nodes.insert(node.name_any())
        {
            tracing::warn!(node = %node.name_any(), %problem, "node has a malformed quantity; counting it as zero");
        }
        if change == Change::MayHelp {
            self.queue.move_all(now);
        }
    }

    fn mark_synced(&mut self, pods: bool) {
        let was = self.pods_synced && self.nodes_synced;
        if pods {
            self.pods_synced = true;
        } else {
            self.nodes_synced = true;
        }
        if !was && self.pods_synced && self.nodes_synced {
            tracing::info!(nodes = self.cache.node_count(), pending = self.queue.counts().active, "caches synced");
            self.p.health.set_ready(true);
        }
    }

    fn holder(&self) -> (String, i32) {
        match &self.p.leadership {
            Some(l) => (l.identity().to_string(), l.transitions()),
            None => (self.p.identity.clone(), 0),
        }
    }

    fn schedule_one(&mut self, info: Arc<PodInfo>) {
        let now = Instant::now();
        let key = info.key.clone();
        let profile = self.p.config.scheduler_name.clone();
        if let Some(why) = &info.invalid {
            self.p.metrics.attempt("error", &profile, 0.0);
            let message = format!("invalid pod: {why}");
            tracing::info!(pod = %key, %message, "cannot schedule");
            self.report_unschedulable(&info, message, None);
            self.queue.requeue(&key, true, now);
            return;
        }
        let Scheduler { cache, algorithm, p, .. } = self;
        let nodes = cache.nodes();
        match algorithm.schedule(&info, &nodes, cache.nominated(), &mut p.rng) {
            Ok(placement) => {
                drop(nodes);
                p.metrics.attempt("scheduled", &profile, now.elapsed().as_secs_f64());
                if !self.p.bug_bind_without_assume {
                    self.cache.assume(info.clone(), &placement.node);
                }
                self.spawn_bind(info, placement.node);
            }
            Err(mut fit) => {
                let mut candidate = None;
                if fit.num_all_nodes > 0 {
                    match preempt::preempt(&info, &nodes, &fit.statuses, cache.nominated()) {
                        Ok(c) => candidate = Some(c),
                        Err(m) => fit.post_filter = Some(m),
                    }
                }
                drop(nodes);
                self.p.metrics.attempt("unschedulable", &profile, now.elapsed().as_secs_f64());
                let message = fit.message();
                tracing::debug!(pod = %key, %message, "unschedulable");
                let nominated = candidate.as_ref().map(|c| c.node.clone());
                if let Some(c) = candidate {
                    self.preempt(&info, c);
                }
                self.report_unschedulable(&info, message, nominated);
                self.queue.requeue(&key, true, now);
            }
        }
    }

    fn spawn_bind(&mut self, info: Arc<PodInfo>, node: String) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // can_schedule checked for a permit; keep the invariant anyway.
            self.cache.forget(&info.key);
            self.queue.requeue(&info.key, false, Instant::now());
            return;
        };
        let (binder, fence, tx) = (self.p.binder.clone(), self.fence.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = binder.bind(info.key.namespace(), info.key.name(), &info.uid, &node, &*fence).await;
            drop(permit);
            let _ = tx.send(Done::Bound { key: info.key.clone(), uid: info.uid.clone(), node, sent, outcome });
        });
    }

    fn finish(&mut self, d: Done) {
        let Done::Bound { key, uid, node, sent, outcome } = d;
        let now = Instant::now();
        let (holder, transitions) = self.holder();
        match outcome {
            Outcome::Ok => {
                self.p.metrics.binding.observe(now.duration_since(sent).as_secs_f64());
                self.p.metrics.bound(&holder, transitions);
                if let Some(t) = self.first_queued.remove(&key) {
                    self.p.metrics.e2e.observe(now.duration_since(t).as_secs_f64());
                }
                self.cache.finish_binding(&key);
                self.queue.remove(&key);
                tracing::info!(pod = %key, %node, %holder, transitions, "bound");
                self.p.recorder.record(Note {
                    namespace: key.namespace().to_string(),
                    name: key.name().to_string(),
                    uid: uid.clone(),
                    kind: Kind::Normal,
                    reason: "Scheduled",
                    message: format!("Successfully assigned {key} to {node}"),
                });
            }
            Outcome::Conflict(m) => {
                self.first_queued.remove(&key);
                self.p.metrics.bind_failed("conflict");
                tracing::info!(pod = %key, %node, message = %m, "binding lost a race; forgetting the assumption");
                self.cache.forget(&key);
                self.queue.remove(&key);
            }
            Outcome::NotFound => {
                self.first_queued.remove(&key);
                self.p.metrics.bind_failed("not_found");
                self.cache.forget(&key);
                self.queue.remove(&key);
            }
            Outcome::NotLeader => {
                self.p.metrics.bind_failed("not_leader");
                tracing::info!(pod = %key, %node, "not bound: this instance may not act (lease not held or not renewed in time)");
                self.cache.forget(&key);
                self.queue.requeue(&key, false, now);
            }
            Outcome::Failed(e) => {
                self.p.metrics.bind_failed("error");
                tracing::warn!(pod = %key, %node, error = %e, "binding failed; will retry");
                self.cache.forget(&key);
                self.queue.requeue(&key, false, now);
                self.p.recorder.record(Note {
                    namespace: key.namespace().to_string(),
                    name: key.name().to_string(),
                    uid,
                    kind: Kind::Warning,
                    reason: "FailedScheduling",
                    message: format!("Binding rejected: {e}"),
                });
            }
        }
    }

    /// Condition + event for a pod that fits nowhere (the condition only when it changes).
    fn report_unschedulable(&mut self, info: &Arc<PodInfo>, message: String, nominated: Option<String>) {
        let key = &info.key;
        self.p.recorder.record(Note {
            namespace: key.namespace().to_string(),
            name: key.name().to_string(),
            uid: info.uid.clone(),
            kind: Kind::Warning,
            reason: "FailedScheduling",
            message: message.clone(),
        });
        let current =
            info.pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let same = current.is_some_and(|c| {
            c.status == "False" && c.reason.as_deref() == Some("Unschedulable") && c.message.as_deref() == Some(message.as_str())
        });
        if same && (nominated.is_none() || nominated == info.nominated_node) {
            return;
        }
        let (binder, clock, key) = (self.p.binder.clone(), self.p.clock.clone(), key.clone());
        tokio::spawn(async move {
            match binder.set_unschedulable(key.namespace(), key.name(), "Unschedulable", &message, nominated.as_deref(), clock.now()).await
            {
                Outcome::Ok | Outcome::NotFound => {}
                other => tracing::warn!(pod = %key, outcome = ?other, "could not set the PodScheduled condition"),
            }
        });
    }

    /// Nominates the preemptor and evicts the victims (each deletion fenced like a bind).
    fn preempt(&mut self, preemptor: &Arc<PodInfo>, c: preempt::Candidate) {
        self.p.metrics.preemption_attempts.inc();
        self.cache.nominate(preemptor.clone(), &c.node);
        let (holder, _) = self.holder();
        tracing::info!(pod = %preemptor.key, node = %c.node, victims = c.victims.len(), %holder, "preempting");
        for v in c.victims {
            self.p.metrics.preemption_victims.inc();
            self.p.recorder.record(Note {
                namespace: v.key.namespace().to_string(),
                name: v.key.name().to_string(),
                uid: v.uid.clone(),
                kind: Kind::Normal,
                reason: "Preempted",
                message: format!("Preempted by pod {} on node {}", preemptor.uid, c.node),
            });
            let (binder, fence) = (self.p.binder.clone(), self.fence.clone());
            tokio::spawn(async move {
                match binder.delete_victim(v.key.namespace(), v.key.name(), &v.uid, &*fence).await {
                    Outcome::Ok | Outcome::NotFound => tracing::info!(victim = %v.key, "evicted"),
                    other => tracing::warn!(victim = %v.key, outcome = ?other, "could not evict a preemption victim"),
                }
            });
        }
    }
}
