//! The pod worker: one task per pod, level-triggered. Each sync reads the desired pod (the
//! latest the apiserver or the manifest folder gave) and what the runtime reports, decides the
//! next steps (kubelet's `computePodActions`), takes them, and writes the status that results.
//! It wakes on a new pod version, a probe result change, a back-off expiry, or every
//! `resync` (kubelet's PLEG relists every second), so a missed event only delays, never loses.
//!
//! Order within a sync: terminating pods are stopped (preStop, SIGTERM, SIGKILL after the grace
//! period) before anything starts; init containers run one at a time to completion; regular
//! containers start once all init containers succeeded; a liveness failure kills the run and the
//! restart policy decides again; exited runs restart after [`Backoff`].
//!
//! Invariants: a container run is started only when the runtime reports no running run of it;
//! the status is written only when it differs from the last one written; everything a pod spec
//! can get wrong ends as a waiting reason and an event.

use crate::events::{Kind, pod_ref};
use crate::pod::backoff::{Backoff, Decision, go_duration};
use crate::pod::probe::ProbeKind;
use crate::pod::prober::Prober;
use crate::pod::status::{Input, ProbeView, Verdict, Waiting, pod_status};
use crate::pod::token::TokenManager;
use crate::pod::{Node, PodUpdate, Source, lifecycle, spec};
use crate::runtime::{ContainerId, ContainerRecord, ContainerState, PodRef, PodUid, SandboxConfig};
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// What a sync decided about the worker's future.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Sync again within this long.
    After(Duration),
    /// The pod is gone: the worker ends.
    Done,
}

/// One pod's worker.
pub struct Worker {
    node: Arc<Node>,
    uid: PodUid,
    rx: watch::Receiver<PodUpdate>,
    wake: Arc<Notify>,
    prober: Prober,
    backoff: Backoff,
    last_status: Option<PodStatus>,
    /// The resourceVersion our last status write produced.
    written_rv: Option<String>,
    /// The final DELETE of a terminating pod was answered (done or already gone): it is not
    /// sent again, nor the status, while the watch has not brought the removal yet.
    final_deleted: bool,
    verdict: Option<Verdict>,
    warned: BTreeSet<String>,
    /// The pod's ServiceAccount tokens: they go when the worker ends with the pod.
    tokens: TokenManager,
}

fn format_pod(p: &Pod) -> String {
    format!(
        "{}_{}({})",
        p.metadata.name.clone().unwrap_or_default(),
        p.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        p.metadata.uid.clone().unwrap_or_default()
    )
}

/// The jitter seed of a pod's token refreshes (spread over pods, the same on every run).
fn seed(uid: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    h.finish()
}

fn latest<'a>(records: &'a [ContainerRecord], name: &str) -> Option<&'a ContainerRecord> {
    records.iter().filter(|r| r.name == name).max_by_key(|r| r.attempt)
}

impl Worker {
    /// A worker for the pod `rx` carries.
    pub fn new(node: Arc<Node>, uid: PodUid, rx: watch::Receiver<PodUpdate>) -> Worker {
        let wake = Arc::new(Notify::new());
        let prober = Prober::new(node.runtime.clone(), node.events.clone(), wake.clone());
        let backoff = Backoff::new(node.config.backoff);
        let tokens = TokenManager::new(seed(&uid.0));
        Worker {
            node,
            uid,
            rx,
            wake,
            prober,
            backoff,
            last_status: None,
            written_rv: None,
            final_deleted: false,
            verdict: None,
            warned: BTreeSet::new(),
            tokens,
        }
    }

    /// Runs until the pod is gone and cleaned up.
    pub async fn run(mut self) {
        loop {
            let update = self.rx.borrow_and_update().clone();
            let next = match self.sync(&update).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(pod = %format_pod(&update.pod), error = %e, "sync failed; retrying");
                    Next::After(Duration::from_secs(2))
                }
            };
            let wait = match next {
                Next::Done => return,
                Next::After(d) => d.min(self.node.config.resync),
            };
            tokio::select! {
                biased;
                r = self.rx.changed() => if r.is_err() {
                    // The manager dropped us without a final update; treat as removed.
                    let mut last = self.rx.borrow().clone();
                    last.removed = true;
                    let _ = self.sync(&last).await;
                    return;
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn event(&self, pod: &Pod, container: Option<&str>, kind: Kind, reason: &str, message: &str) {
        self.node.events.record(&pod_ref(pod, container), kind, reason, message).await;
    }

    fn grace(pod: &Pod) -> Duration {
        let secs =
            pod.metadata.deletion_grace_period_seconds.or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds)).unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Stops every running run: preStop (when the pod is deleted), SIGTERM, SIGKILL after grace.
    async fn stop_all(&self, pod: &Pod, records: &[ContainerRecord], grace: Duration, pre_stop: bool) {
        let spec = pod.spec.clone().unwrap_or_default();
        let running: Vec<&ContainerRecord> = records.iter().filter(|r| r.running()).collect();
        let this = self;
        let stops = running.iter().map(|r| {
            let c = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == r.name).cloned();
            async move {
                let started = tokio::time::Instant::now();
                if let (true, Some(c)) = (pre_stop, &c) {
                    lifecycle::pre_stop(&this.node, pod, c, &r.id, grace).await;
                }
                this.event(pod, Some(&r.name), Kind::Normal, "Killing", &format!("Stopping container {}", r.name)).await;
                let left = grace.saturating_sub(started.elapsed());
                if let Err(e) = this.node.runtime.stop_container(&r.id, left).await {
                    tracing::warn!(container = %r.id, error = %e, "stop");
                }
            }
        });
        futures::future::join_all(stops).await;
    }

    async fn sync(&mut self, u: &PodUpdate) -> crate::error::Result<Next> {
        let pod = u.pod.as_ref();
        if self.verdict.is_none() {
            self.verdict = u.verdict.clone();
        }
        let records = self.node.runtime.containers(&self.uid).await?;
        let spec = pod.spec.clone().unwrap_or_default();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let old_phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let terminal = self.verdict.is_some() || old_phase == "Succeeded" || old_phase == "Failed";

        if u.removed || deleting {
            let grace = if self.verdict.is_some() { Duration::ZERO } else { Self::grace(pod) };
            self.stop_all(pod, &records, grace, true).await;
            self.prober.retain(&BTreeSet::new());
            if deleting && !u.removed && !self.final_deleted {
                let records = self.node.runtime.containers(&self.uid).await?;
                self.write_status(u, &records, false).await;
                if u.source == Source::Api {
                    let api: Api<Pod> = Api::namespaced(self.node.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
                        ..Default::default()
                    };
                    match api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp).await {
                        Ok(_) => self.final_deleted = true,
                        // Gone already, or the name is another pod's now (the uid precondition).
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => self.final_deleted = true,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            self.node.runtime.remove_pod(&self.uid).await?;
            // Once the final delete is answered only the watch's removal is awaited (kube's
            // resync period, not a 1 s retry that loads a busy apiserver further).
            let wait = if self.final_deleted { Duration::from_secs(10) } else { Duration::from_secs(1) };
            return Ok(if u.removed { Next::Done } else { Next::After(wait) });
        }

        if terminal {
            // Evicted or finished: nothing runs again; stop what still runs, keep reporting.
            if records.iter().any(|r| r.running()) {
                self.stop_all(pod, &records, if self.verdict.is_some() { Duration::ZERO } else { Self::grace(pod) }, false).await;
            }
            self.prober.retain(&BTreeSet::new());
            let records = self.node.runtime.containers(&self.uid).await?;
            self.write_status(u, &records, true).await;
            return Ok(Next::After(Duration::from_secs(10)));
        }

        let pod_ref_rt = PodRef {
            uid: self.uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
        };
        let mut waiting: BTreeMap<String, Waiting> = BTreeMap::new();
        let sandbox = match self
            .node
            .runtime
            .ensure_sandbox(&SandboxConfig { pod: pod_ref_rt.clone(), host_network: spec.host_network.unwrap_or(false) })
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                self.event(pod, None, Kind::Warning, "FailedCreatePodSandBox", &format!("Failed to create pod sandbox: {e}")).await;
                for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
                    waiting.insert(c.name.clone(), Waiting { reason: "ContainerCreating".into(), message: Some(e.to_string()) });
                }
                None
            }
        };
        let pod_ip = sandbox.as_ref().and_then(|s| s.ip.clone()).unwrap_or_default();
        let mut wait_for = self.node.config.resync;

        if sandbox.is_some() {
            let prepared = spec::prepare(&self.node, pod, &pod_ip, &self.tokens).await;
            let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
            // Init containers, one at a time.
            let mut init_done = true;
            for c in spec.init_containers.iter().flatten() {
                let last = latest(&records, &c.name);
                match last.map(|r| &r.state) {
                    Some(ContainerState::Running) => {
                        init_done = false;
                        break;
                    }
                    Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                    Some(ContainerState::Exited { .. }) if restart_policy == "Never" => {
                        init_done = false;
                        break;
                    }
                    _ => {
                        init_done = false;
                        if let Some(d) = self.start_or_wait(u, c, true, last, &prepared, &pod_ref_rt, &mut waiting).await {
                            wait_for = wait_for.min(d);
                        }
                        break;
                    }
                }
            }
            if init_done {
                for c in &spec.containers {
                    let mut last = latest(&records, &c.name).cloned();
                    if let Some(r) = last.as_ref().filter(|r| r.running()) {
                        if self.prober.result(&r.id, ProbeKind::Liveness) == Some(false) {
                            let why = if self.prober.result(&r.id, ProbeKind::Startup) == Some(false) { "startup" } else { "liveness" };
                            self.event(
                                pod,
                                Some(&c.name),
                                Kind::Normal,
                                "Killing",
                                &format!("Container {} failed {why} probe, will be restarted", c.name),
                            )
                            .await;
                            lifecycle::pre_stop(&self.node, pod, c, &r.id, Self::grace(pod)).await;
                            self.node.runtime.stop_container(&r.id, Self::grace(pod)).await?;
                            self.prober.retain(&BTreeSet::new());
                            last = self
                                .node
                                .runtime
                                .containers(&self.uid)
                                .await?
                                .into_iter()
                                .filter(|x| x.name == c.name)
                                .max_by_key(|x| x.attempt);
                        } else {
                            let problems = self.prober.ensure(pod, c, &r.id, &pod_ip);
                            for p in problems {
                                if self.warned.insert(format!("{}/{p}", c.name)) {
                                    self.event(pod, Some(&c.name), Kind::Warning, "Unhealthy", &p).await;
                                }
                            }
                            continue;
                        }
                    }
                    let restart = match last.as_ref().map(|r| &r.state) {
                        None => true,
                        Some(ContainerState::Running) => false,
                        Some(ContainerState::Exited { exit_code, .. }) => {
                            restart_policy == "Always" || restart_policy == "OnFailure" && *exit_code != 0
                        }
                    };
                    if restart && let Some(d) = self.start_or_wait(u, c, false, last.as_ref(), &prepared, &pod_ref_rt, &mut waiting).await {
                        wait_for = wait_for.min(d);
                    }
                }
            }
        }

        let records = self.node.runtime.containers(&self.uid).await?;
        let running: BTreeSet<ContainerId> = records.iter().filter(|r| r.running()).map(|r| r.id.clone()).collect();
        self.prober.retain(&running);
        self.gc(&records).await;
        self.write_status_with(u, &records, &waiting, sandbox.is_some(), Some(pod_ip)).await;
        Ok(Next::After(wait_for))
    }

    /// Starts the next run of `c` now, or records why it waits. Returns when to look again.
    #[allow(clippy::too_many_arguments)]
    async fn start_or_wait(
        &mut self,
        u: &PodUpdate,
        c: &Container,
        init: bool,
        last: Option<&ContainerRecord>,
        prepared: &spec::Prepared,
        pod_ref_rt: &PodRef,
        waiting: &mut BTreeMap<String, Waiting>,
    ) -> Option<Duration> {
        let pod = u.pod.as_ref();
        let key = format!("{}/{}", self.uid, c.name);
        let now = self.node.clock.now();
        if let Some(ContainerRecord { state: ContainerState::Exited { finished_at, .. }, .. }) = last
            && let Decision::Wait { remaining, window } = self.backoff.decide(&key, *finished_at, now)
        {
            let msg = format!("back-off {} restarting failed container={} pod={}", go_duration(window), c.name, format_pod(pod));
            self.event(
                pod,
                Some(&c.name),
                Kind::Warning,
                "BackOff",
                &format!("Back-off restarting failed container {} in pod {}", c.name, format_pod(pod)),
            )
            .await;
            waiting.insert(c.name.clone(), Waiting { reason: "CrashLoopBackOff".into(), message: Some(msg) });
            return Some(remaining);
        }
        let attempt = last.map(|r| r.attempt + 1).unwrap_or(0);
        let cfg = match spec::container_config(&self.node, pod, c, init, attempt, prepared, pod_ref_rt) {
            Ok(cfg) => cfg,
            Err(crate::error::Error::PodSpec { reason, message }) => {
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Warning,
                    if reason == "ContainerCreating" { "FailedMount" } else { "Failed" },
                    &format!("Error: {message}"),
                )
                .await;
                waiting.insert(c.name.clone(), Waiting { reason: reason.into(), message: Some(message) });
                return Some(Duration::from_secs(5));
            }
            Err(e) => {
                waiting.insert(c.name.clone(), Waiting { reason: "CreateContainerError".into(), message: Some(e.to_string()) });
                return Some(Duration::from_secs(5));
            }
        };
        if attempt == 0 && self.node.runtime.features().volumes {
            let image = c.image.clone().unwrap_or_default();
            self.event(
                pod,
                Some(&c.name),
                Kind::Normal,
                "Pulled",
                &format!("Container image \"{image}\" is not pulled: keel-kubelet runs the command as a host program"),
            )
            .await;
        }
        match self.node.runtime.start_container(&cfg).await {
            Ok(_) => {
                self.node.metrics.started_containers.inc();
                self.event(pod, Some(&c.name), Kind::Normal, "Created", &format!("Created container: {}", c.name)).await;
                self.event(pod, Some(&c.name), Kind::Normal, "Started", &format!("Started container {}", c.name)).await;
                if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                    lifecycle::post_start(&self.node, pod, c, &cfg.id(), h).await;
                }
                Some(Duration::from_millis(200))
            }
            Err(e) => {
                self.event(pod, Some(&c.name), Kind::Warning, "Failed", &format!("Error: {e}")).await;
                waiting.insert(c.name.clone(), Waiting { reason: "CreateContainerError".into(), message: Some(e.to_string()) });
                Some(Duration::from_secs(5))
            }
        }
    }

    /// Keeps the latest two runs of each container (the current one and `lastState`'s).
    async fn gc(&self, records: &[ContainerRecord]) {
        let mut by_name: BTreeMap<&str, Vec<&ContainerRecord>> = BTreeMap::new();
        for r in records {
            by_name.entry(&r.name).or_default().push(r);
        }
        for runs in by_name.values_mut() {
            runs.sort_by_key(|r| std::cmp::Reverse(r.attempt));
            for old in runs.iter().skip(2).filter(|r| !r.running()) {
                let _ = self.node.runtime.remove_container(&old.id).await;
            }
        }
    }

    async fn write_status(&mut self, u: &PodUpdate, records: &[ContainerRecord], sandbox_ready: bool) {
        let ip = self.node.runtime.sandbox(&self.uid).await.and_then(|s| s.ip);
        self.write_status_with(u, records, &BTreeMap::new(), sandbox_ready, ip).await;
    }

    async fn write_status_with(
        &mut self,
        u: &PodUpdate,
        records: &[ContainerRecord],
        waiting: &BTreeMap<String, Waiting>,
        sandbox_ready: bool,
        pod_ip: Option<String>,
    ) {
        let pod = u.pod.as_ref();
        let mut probes = BTreeMap::new();
        for r in records.iter().filter(|r| r.running()) {
            let ready = self.prober.result(&r.id, ProbeKind::Readiness).unwrap_or(true);
            let started = self.prober.result(&r.id, ProbeKind::Startup).unwrap_or(true);
            probes.insert(r.name.clone(), ProbeView { ready, started });
        }
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let pod_ip = if host_network { Some(self.node.host_ip.clone()) } else { pod_ip.filter(|ip| !ip.is_empty()) };
        // The status last written is the basis (the watch may not have brought it back yet),
        // with the conditions others own taken from the apiserver's copy.
        let mut basis = pod.clone();
        if let Some(last) = &self.last_status {
            let mut s = last.clone();
            let mut conds: Vec<_> = pod
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .filter(|c| !OWNED.contains(&c.type_.as_str()))
                .cloned()
                .collect();
            conds.extend(last.conditions.iter().flatten().filter(|c| OWNED.contains(&c.type_.as_str())).cloned());
            s.conditions = Some(conds);
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Failed" || p == "Succeeded") {
                s.phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            }
            basis.status = Some(s);
        }
        let pod = &basis;
        let input = Input {
            pod,
            records,
            waiting,
            probes: &probes,
            sandbox_ready,
            pod_ip,
            host_ip: Some(self.node.host_ip.clone()),
            verdict: self.verdict.as_ref(),
            now: self.node.clock.now(),
        };
        let status = pod_status(&input);
        // As kube's status manager reconciles with the apiserver's copy: a condition this
        // kubelet owns that someone else changed there (the node lifecycle controller marks
        // pods not ready while their node is unreachable) is written back, even when this
        // kubelet's own view did not change.
        // Only a copy newer than our own last write counts (the watch may still be behind it).
        let newer = match (u.pod.metadata.resource_version.as_deref(), self.written_rv.as_deref()) {
            (Some(api), Some(ours)) => match (api.parse::<u64>(), ours.parse::<u64>()) {
                (Ok(a), Ok(o)) => a > o,
                _ => api != ours,
            },
            _ => true,
        };
        let drifted =
            newer && self.last_status.as_ref().is_some_and(|last| owned_conditions(u.pod.status.as_ref()) != owned_conditions(Some(last)));
        if !drifted && (self.last_status.as_ref() == Some(&status) || self.last_status.is_none() && u.pod.status.as_ref() == Some(&status))
        {
            return;
        }
        let (ns, name) = (pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()), u.status_name.clone());
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), &ns);
        let mut patch = serde_json::json!({ "status": status });
        if u.source == Source::Api {
            patch["metadata"] = serde_json::json!({ "uid": pod.metadata.uid });
        }
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(p) => {
                self.last_status = Some(status);
                self.written_rv = p.metadata.resource_version;
            }
            Err(e) => tracing::debug!(pod = %name, error = %e, "status patch"),
        }
    }
}

/// The pod conditions the kubelet owns (the others belong to the scheduler, the controllers, …).
const OWNED: [&str; 4] = ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"];

/// The kubelet-owned conditions of `status` as (type, status), in a fixed order.
fn owned_conditions(status: Option<&PodStatus>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| OWNED.contains(&c.type_.as_str()))
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    v.sort();
    v
}

/// Exposed for the eviction manager: the pod's memory use and its biggest container.
pub async fn pod_memory(node: &Node, uid: &PodUid) -> (u64, Option<(String, u64)>) {
    let mut total = 0;
    let mut top: Option<(String, u64)> = None;
    for r in node.runtime.containers(uid).await.unwrap_or_default().iter().filter(|r| r.running()) {
        let m = node.runtime.usage(&r.id).await.map(|u| u.memory_bytes).unwrap_or(0);
        total += m;
        if top.as_ref().is_none_or(|(_, t)| m > *t) {
            top = Some((r.name.clone(), m));
        }
    }
    (total, top)
}
