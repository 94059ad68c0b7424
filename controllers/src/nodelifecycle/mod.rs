//! The node lifecycle controller (kube's `pkg/controller/nodelifecycle`): watches node
//! heartbeats (the Ready condition and the node's Lease in `kube-node-lease`), marks silent
//! nodes Unknown after `--node-monitor-grace-period`, keeps the NoSchedule condition taints in
//! step with conditions (TaintNodesByCondition), and taints NotReady/Unknown nodes
//! `NoExecute` (`not-ready` / `unreachable`) at `--node-eviction-rate` per zone, so that
//! [`eviction`] evicts their pods when their tolerations run out. When every zone is dark it
//! stops evicting (see [`zones`]).
//!
//! Invariants: one monitor task owns the [`health::Tracker`], the zone states and the taint
//! queues (no locks across awaits); every decision uses the controller's clock, never the
//! kubelet's; a failed write is simply redone on the next pass.

pub mod eviction;
pub mod health;
pub mod taints;
pub mod zones;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::{Kind, Recorder};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use crate::shared::{BY_NODE, NODE_LEASE_NAMESPACE};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use taints::{NO_EXECUTE, NOT_READY, UNREACHABLE, taint};
use tokio::time::Instant;
use zones::{Disruption, Rates, Step, TaintQueue};

/// Label that keeps a node out of zone disruption accounting.
pub const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// Tunables (kube-controller-manager's flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// `--node-monitor-period` (5 s).
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period` (50 s since Kubernetes 1.32).
    pub grace_period: Duration,
    /// `--node-startup-grace-period` (60 s).
    pub startup_grace_period: Duration,
    /// Eviction rates and zone thresholds.
    pub rates: Rates,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(50),
            startup_grace_period: Duration::from_secs(60),
            rates: Rates::default(),
        }
    }
}

/// The controller: a monitor loop plus a NoSchedule-taint queue of node names.
pub struct NodeLifecycleController {
    ctx: Context,
    cfg: Config,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

/// The monitor loop's own state.
struct Monitor {
    tracker: health::Tracker,
    disruption: Disruption,
    queues: BTreeMap<String, TaintQueue>,
}

impl NodeLifecycleController {
    /// The controller, with its handlers registered.
    pub fn new(ctx: &Context, cfg: Config) -> Arc<NodeLifecycleController> {
        let c = Arc::new(NodeLifecycleController {
            ctx: ctx.clone(),
            cfg,
            nodes: ctx.shared.nodes.clone(),
            leases: ctx.shared.leases.clone(),
            pods: ctx.shared.pods.clone(),
            queue: Queue::new("node_lifecycle_controller", Some(ctx.metrics.clone())),
            recorder: ctx.recorder.for_component("node-controller"),
        });
        let q = c.queue.clone();
        c.nodes.on_change(move |ch: &Change<'_, Node>| {
            if !matches!(ch, Change::Deleted(_)) {
                q.add(ObjectKey::of(ch.object()));
            }
        });
        c
    }

    /// The NoSchedule-taint queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    fn now(&self) -> Timestamp {
        self.ctx.clock.now()
    }

    /// Replaces the taints of `name` (re-read fresh, as kube's `SwapNodeControllerTaint`
    /// does, so a stale cache never drops someone else's taint).
    async fn swap_taints(
        &self,
        name: &str,
        add: &[k8s_openapi::api::core::v1::Taint],
        del: &[k8s_openapi::api::core::v1::Taint],
    ) -> Result<()> {
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let mut node = api.get(name).await?;
        let cur = taints::taints(&node).to_vec();
        let Some(new) = taints::swap(&cur, add, del, self.now()) else { return Ok(()) };
        node.spec.get_or_insert_with(Default::default).taints = (!new.is_empty()).then_some(new);
        node.metadata.managed_fields = None;
        match api.replace(name, &PostParams::default(), &node).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                Err(if e.is_conflict() { Error::Conflict(name.to_string()) } else { e })
            }
        }
    }

    /// Runs the monitor until dropped: health every `monitor_period`, tainting every 100 ms.
    pub async fn run_monitor(self: Arc<Self>) {
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.pods.wait_synced().await;
        let mut m = Monitor { tracker: health::Tracker::new(), disruption: Disruption::new(), queues: BTreeMap::new() };
        let mut last_monitor: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            if last_monitor.is_none_or(|t| now.duration_since(t) >= self.cfg.monitor_period) {
                last_monitor = Some(now);
                self.monitor_pass(&mut m).await;
            }
            self.tainting_pass(&mut m).await;
        }
    }

    fn zone_queue<'a>(&self, m: &'a mut Monitor, zone: &str) -> &'a mut TaintQueue {
        let qps = self.cfg.rates.eviction_qps;
        let rate = if m.disruption.all_down() { 0.0 } else { qps };
        m.queues.entry(zone.to_string()).or_insert_with(|| TaintQueue::new(rate, Instant::now()))
    }

    /// `monitorNodeHealth`.
    async fn monitor_pass(&self, m: &mut Monitor) {
        let now = self.now();
        let nodes = self.nodes.list();
        let mut zones: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let names: Vec<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let renew = self
                .leases
                .get(&ObjectKey::new(NODE_LEASE_NAMESPACE, name.clone()))
                .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
            let v = m.tracker.observe(node, renew, now, self.cfg.grace_period, self.cfg.startup_grace_period);
            if let Some(conds) = &v.update
                && let Err(e) = self.write_conditions(node, conds.clone()).await
            {
                tracing::warn!(node = %name, "marking node status Unknown: {e}");
            }
            let Some(current) = v.current.clone() else { continue };
            let excluded = node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION));
            if !excluded {
                zones.entry(zones::zone_key(node)).or_default().push(current.status == "True");
            }
            if !m.disruption.all_down() {
                self.taint_for_eviction(m, node, &v.observed).await;
            }
            if current.status != "True" && v.observed.status == "True" {
                self.recorder.record(node.as_ref(), Kind::Normal, "NodeNotReady", format!("Node {name} status is now: NodeNotReady"));
                self.mark_pods_not_ready(&name).await;
            }
        }
        // Forget deleted nodes.
        for q in m.queues.values_mut() {
            for gone in q.known().into_iter().filter(|n| !names.contains(n)) {
                q.remove(&gone);
            }
        }
        m.tracker.retain(&names);
        match m.disruption.update(&zones, &self.cfg.rates) {
            Step::Nothing => {}
            Step::EnterMasterDisruption => {
                tracing::info!("all nodes are not ready: entering master disruption mode, evictions stop");
                for node in &nodes {
                    self.mark_reachable(m, node).await;
                }
                let t = Instant::now();
                for q in m.queues.values_mut() {
                    q.bucket.set_qps(0.0, t);
                }
            }
            Step::ExitMasterDisruption(rates) => {
                tracing::info!("some nodes are ready: leaving master disruption mode");
                m.tracker.reset_all(now);
                self.set_rates(m, rates);
            }
            Step::Rates(rates) => self.set_rates(m, rates),
        }
    }

    fn set_rates(&self, m: &mut Monitor, rates: BTreeMap<String, f64>) {
        let t = Instant::now();
        for (z, qps) in rates {
            m.queues.entry(z).or_insert_with(|| TaintQueue::new(qps, t)).bucket.set_qps(qps, t);
        }
    }

    /// `processTaintBaseEviction`: queue NotReady/Unknown nodes for the NoExecute taint, swap
    /// the pair at once when the kind changes, remove it when Ready.
    async fn taint_for_eviction(&self, m: &mut Monitor, node: &Node, observed: &NodeCondition) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let zone = zones::zone_key(node);
        let (want, other) = match observed.status.as_str() {
            "False" => (NOT_READY, UNREACHABLE),
            "Unknown" => (UNREACHABLE, NOT_READY),
            _ => return self.mark_reachable(m, node).await,
        };
        if taints::has(node, other, NO_EXECUTE) {
            if let Err(e) = self.swap_taints(&name, &[taint(want, NO_EXECUTE)], &[taint(other, NO_EXECUTE)]).await {
                tracing::warn!(node = %name, "swapping NoExecute taints: {e}");
            }
            return;
        }
        let q = self.zone_queue(m, &zone);
        if !taints::has(node, want, NO_EXECUTE) {
            q.remove(&name);
        }
        q.add(&name);
    }

    /// `markNodeAsReachable`: no NoExecute node-controller taints, out of the queue.
    async fn mark_reachable(&self, m: &mut Monitor, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.zone_queue(m, &zones::zone_key(node)).remove(&name);
        if (taints::has(node, NOT_READY, NO_EXECUTE) || taints::has(node, UNREACHABLE, NO_EXECUTE))
            && let Err(e) = self.swap_taints(&name, &[], &[taint(NOT_READY, NO_EXECUTE), taint(UNREACHABLE, NO_EXECUTE)]).await
        {
            tracing::warn!(node = %name, "removing NoExecute taints: {e}");
        }
    }

    /// `doNoExecuteTaintingPass`: taint queued nodes as their zone's rate allows.
    async fn tainting_pass(&self, m: &mut Monitor) {
        let zones: Vec<String> = m.queues.keys().cloned().collect();
        for z in zones {
            while let Some(name) = m.queues.get_mut(&z).and_then(|q| q.next(Instant::now())) {
                let Some(node) = self.nodes.get(&ObjectKey::cluster(name.clone())) else { continue };
                let (add, del) = match taints::condition(&node, "Ready").map(|c| c.status.as_str()) {
                    Some("False") => (NOT_READY, UNREACHABLE),
                    Some("Unknown") => (UNREACHABLE, NOT_READY),
                    _ => continue,
                };
                match self.swap_taints(&name, &[taint(add, NO_EXECUTE)], &[taint(del, NO_EXECUTE)]).await {
                    Ok(()) => tracing::info!(node = %name, "tainted {add}:NoExecute"),
                    Err(e) => {
                        tracing::warn!(node = %name, "tainting: {e}");
                        if let Some(q) = m.queues.get_mut(&z) {
                            q.remove(&name);
                            q.add(&name);
                        }
                        break;
                    }
                }
            }
        }
    }

    async fn write_conditions(&self, node: &Node, conds: Vec<NodeCondition>) -> Result<()> {
        let mut n = node.clone();
        n.metadata.managed_fields = None;
        n.status.get_or_insert_with(Default::default).conditions = Some(conds);
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        api.replace_status(node.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &n).await?;
        Ok(())
    }

    /// `MarkPodsNotReady`: the pods of a node that stopped being Ready are not Ready either.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = self.now();
        for p in self.pods.by_index(BY_NODE, node) {
            let mut pod = p.as_ref().clone();
            let Some(st) = pod.status.as_mut() else { continue };
            let Some(c) = st.conditions.iter_mut().flatten().find(|c| c.type_ == "Ready" && c.status != "False") else { continue };
            c.status = "False".into();
            c.last_transition_time = Some(Time(now));
            pod.metadata.managed_fields = None;
            let key = ObjectKey::of(&pod);
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
            if let Err(e) = api.replace_status(&key.name, &PostParams::default(), &pod).await {
                tracing::debug!(pod = %key, "marking not ready: {e}");
            }
        }
    }
}

/// The NoSchedule pass for one node (`doNoScheduleTaintingPass`).
impl Reconcile for NodeLifecycleController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(node) = self.nodes.get(key) else { return Ok(Action::Done) };
        let (add, del) = taints::no_schedule_diff(&node);
        if !add.is_empty() || !del.is_empty() {
            self.swap_taints(&key.name, &add, &del).await?;
        }
        Ok(Action::Done)
    }
}
