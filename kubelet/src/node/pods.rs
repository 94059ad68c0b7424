//! The pods loop of one node: every second, or when the feed says its pods changed, it computes
//! the desired pods (the apiserver's bound to this node, minus mirror pods; plus the static pods
//! of the manifest folder), hands them to the [`Manager`], reconciles mirror pods, and every
//! eviction interval (10 s) checks `memory.available` against the hard threshold, evicting one
//! pod per pass in [`eviction`] order.

use crate::events::{Kind, pod_ref};
use crate::node::agent::Observations;
use crate::pod::eviction::{self, Candidate};
use crate::pod::manager::{Feed, Manager};
use crate::pod::qos::qos_class;
use crate::pod::quantity::memory_bytes;
use crate::pod::static_pods::{self, MIRROR};
use crate::pod::status::Verdict;
use crate::pod::worker::pod_memory;
use crate::pod::{Node, PodUpdate, Source};
use crate::runtime::PodUid;
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the pods loop.
#[derive(Debug, Clone)]
pub struct PodsSettings {
    /// `--pod-manifest-path`.
    pub manifest_dir: Option<PathBuf>,
    /// `--file-check-frequency`.
    pub file_check: Duration,
    /// Eviction monitoring interval (10 s).
    pub eviction_interval: Duration,
    /// `memory.available` hard threshold, bytes.
    pub eviction_memory: u64,
    /// Memory capacity (simulated nodes measure availability as capacity minus pod usage).
    pub memory_capacity: u64,
    /// Read memory.available from the host (Linux) instead of capacity minus pod usage.
    pub host_memory: bool,
    /// The root dir (for host signals).
    pub root_dir: PathBuf,
    /// Stop all pods when the loop ends (`--stop-pods-on-shutdown`).
    pub stop_pods_on_shutdown: bool,
}

fn request_bytes(p: &Pod) -> u64 {
    p.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref().or(r.limits.as_ref()))
                .and_then(|m| m.get("memory"))
                .and_then(|q| memory_bytes(&q.0))
        })
        .sum()
}

fn is_terminal(p: &Pod) -> bool {
    matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Runs until `shutdown` resolves.
pub async fn run(node: Arc<Node>, feed: Feed, s: PodsSettings, observed: Observations, shutdown: impl Future<Output = ()>) {
    let mut manager = Manager::new(node.clone());
    let mut rx = feed.subscribe(&node.name);
    let mut statics: BTreeMap<String, Arc<Pod>> = BTreeMap::new();
    let mut bad_manifests: BTreeSet<String> = BTreeSet::new();
    let mut verdicts: BTreeMap<PodUid, Verdict> = BTreeMap::new();
    let mut next_file_check = tokio::time::Instant::now();
    let mut next_eviction = tokio::time::Instant::now() + s.eviction_interval;
    let mut next_orphans = tokio::time::Instant::now();
    // What this node added to the process-wide running-pods gauge.
    let mut counted = 0i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = rx.changed() => {}
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        if let Some(dir) = s.manifest_dir.as_ref().filter(|_| now >= next_file_check) {
            next_file_check = now + s.file_check;
            let (found, errors) = static_pods::read_dir(dir, &node.name, node.clock.now());
            for e in errors {
                if bad_manifests.insert(e.clone()) {
                    tracing::warn!(error = %e, "static pod manifest skipped");
                }
            }
            // Keep the seen time of pods whose file did not change.
            for (f, p) in found {
                let same = statics.get(&f).is_some_and(|old| old.metadata.uid == p.metadata.uid);
                if !same {
                    statics.insert(f, p);
                }
            }
            let names: BTreeSet<String> = static_pods::read_dir(dir, &node.name, node.clock.now()).0.into_keys().collect();
            statics.retain(|f, _| names.contains(f));
        }
        let (api_pods, synced) = feed.pods(&node.name);
        let mut desired: BTreeMap<PodUid, PodUpdate> = BTreeMap::new();
        for (uid, p) in &api_pods {
            if p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR)) {
                continue;
            }
            let uid = PodUid(uid.clone());
            desired.insert(
                uid.clone(),
                PodUpdate {
                    pod: p.clone(),
                    removed: false,
                    source: Source::Api,
                    status_name: p.metadata.name.clone().unwrap_or_default(),
                    verdict: verdicts.get(&uid).cloned(),
                },
            );
        }
        for p in statics.values() {
            // A static pod's status is read back from its mirror pod (the status last written).
            let mirror = api_pods.values().find(|m| m.metadata.name == p.metadata.name && m.metadata.namespace == p.metadata.namespace);
            let mut with_status = (**p).clone();
            with_status.status = mirror.and_then(|m| m.status.clone());
            let uid = PodUid(p.metadata.uid.clone().unwrap_or_default());
            let pod = match mirror {
                Some(_) => Arc::new(with_status),
                None => p.clone(),
            };
            desired.insert(
                uid,
                PodUpdate {
                    pod,
                    removed: false,
                    source: Source::File,
                    status_name: p.metadata.name.clone().unwrap_or_default(),
                    verdict: None,
                },
            );
        }
        verdicts.retain(|uid, _| desired.contains_key(uid));
        {
            let mut index = node.index.lock().unwrap_or_else(|e| e.into_inner());
            index.clear();
            for u in desired.values() {
                index.insert(
                    (u.pod.metadata.namespace.clone().unwrap_or_default(), u.pod.metadata.name.clone().unwrap_or_default()),
                    u.pod.clone(),
                );
            }
        }
        let wanted: BTreeSet<PodUid> = desired.keys().cloned().collect();
        // Before the first list, the apiserver's pods are unknown: start nothing yet, so a kubelet
        // restarted under running pods adopts them instead of racing their removal.
        if synced {
            manager.update(desired.clone());
            let now_running = manager.active().len() as i64;
            node.metrics.running_pods.inc_by(now_running - counted);
            counted = now_running;
            if now >= next_orphans {
                next_orphans = now + Duration::from_secs(60);
                manager.remove_orphans(&wanted).await;
            }
            if s.manifest_dir.is_some()
                || api_pods.values().any(|p| p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR)))
            {
                static_pods::reconcile_mirrors(&node, &statics, &api_pods).await;
            }
        }
        if now >= next_eviction {
            next_eviction = now + s.eviction_interval;
            if let Some((uid, v)) = eviction_pass(&node, &s, &observed, &desired, &verdicts).await {
                node.metrics.evictions.inc();
                verdicts.insert(uid, v);
            }
        }
    }
    if s.stop_pods_on_shutdown {
        manager.stop_all().await;
    }
}

async fn eviction_pass(
    node: &Node,
    s: &PodsSettings,
    observed: &Observations,
    desired: &BTreeMap<PodUid, PodUpdate>,
    verdicts: &BTreeMap<PodUid, Verdict>,
) -> Option<(PodUid, Verdict)> {
    let mut usage: BTreeMap<PodUid, (u64, Option<(String, u64)>)> = BTreeMap::new();
    for uid in desired.keys() {
        usage.insert(uid.clone(), pod_memory(node, uid).await);
    }
    let available = if s.host_memory {
        crate::node::host::signals(&s.root_dir).memory_available.unwrap_or(u64::MAX)
    } else {
        s.memory_capacity.saturating_sub(usage.values().map(|(u, _)| *u).sum())
    };
    let pressure = eviction::under_pressure(available, s.eviction_memory);
    {
        let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
        o.memory_pressure = pressure;
        if s.host_memory {
            let sig = crate::node::host::signals(&s.root_dir);
            let cap = crate::node::host::capacity(&s.root_dir, 0).ephemeral_storage;
            o.disk_pressure = sig.nodefs_available.is_some_and(|a| cap > 0 && a < cap / 10);
            o.pid_pressure = sig.pid_available.is_some_and(|a| a < 1000);
        }
    }
    if !pressure {
        return None;
    }
    let candidates: Vec<Candidate> = desired
        .iter()
        .filter(|(uid, u)| {
            u.source == Source::Api && !is_terminal(&u.pod) && !verdicts.contains_key(*uid) && u.pod.metadata.deletion_timestamp.is_none()
        })
        .map(|(uid, u)| {
            let (used, top) = usage.get(uid).cloned().unwrap_or((0, None));
            let spec = u.pod.spec.clone().unwrap_or_default();
            let top_container = top.map(|(name, m)| {
                let req = spec
                    .containers
                    .iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.resources.as_ref()?.requests.as_ref()?.get("memory").and_then(|q| memory_bytes(&q.0)))
                    .unwrap_or(0);
                (name, m, req)
            });
            Candidate {
                key: uid.0.clone(),
                usage: used,
                request: request_bytes(&u.pod),
                priority: spec.priority.unwrap_or(0),
                qos: qos_class(&spec),
                top_container,
            }
        })
        .collect();
    let victim = eviction::rank(candidates).into_iter().next()?;
    let msg = eviction::message(s.eviction_memory, available, &victim);
    let uid = PodUid(victim.key.clone());
    if let Some(u) = desired.get(&uid) {
        node.events.record(&pod_ref(&u.pod, None), Kind::Warning, "Evicted", &msg).await;
    }
    Some((uid, Verdict { phase: "Failed", reason: "Evicted".into(), message: msg }))
}
