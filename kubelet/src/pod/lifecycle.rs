//! Container lifecycle hooks, as kubelet's handler runner: `postStart` runs right after the run
//! starts (a failure is a `FailedPostStartHook` event and the run is killed, so the restart
//! policy decides again); `preStop` runs before SIGTERM and counts against the grace period
//! (a failure is a `FailedPreStopHook` event; the stop goes on). Handlers: exec, httpGet, sleep.

use crate::events::{Kind, pod_ref};
use crate::pod::Node;
use crate::pod::probe::{Outcome, ProbeKind};
use crate::pod::prober::action;
use crate::runtime::ContainerId;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use std::time::Duration;

async fn run(node: &Node, pod: &Pod, c: &Container, id: &ContainerId, h: &LifecycleHandler, limit: Duration) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    let as_probe = Probe { exec: h.exec.clone(), http_get: h.http_get.clone(), tcp_socket: h.tcp_socket.clone(), ..Default::default() };
    let ip = node
        .runtime
        .sandbox(&crate::runtime::PodUid(pod.metadata.uid.clone().unwrap_or_default()))
        .await
        .and_then(|s| s.ip)
        .unwrap_or_default();
    let act = action(&as_probe, c, &ip)?;
    match node.runtime.probe(id, ProbeKind::Liveness, &act, limit.max(Duration::from_secs(1))).await {
        Outcome::Success => Ok(()),
        Outcome::Failure(m) => Err(m),
    }
}

/// Runs `preStop`, if any, within `grace`.
pub async fn pre_stop(node: &Node, pod: &Pod, c: &Container, id: &ContainerId, grace: Duration) {
    let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else { return };
    if let Err(m) = run(node, pod, c, id, h, grace).await {
        node.events.record(&pod_ref(pod, Some(&c.name)), Kind::Warning, "FailedPreStopHook", &format!("PreStopHook failed: {m}")).await;
    }
}

/// Runs `postStart`; kills the run when it fails.
pub async fn post_start(node: &Node, pod: &Pod, c: &Container, id: &ContainerId, h: &LifecycleHandler) {
    if let Err(m) = run(node, pod, c, id, h, Duration::from_secs(30)).await {
        node.events.record(&pod_ref(pod, Some(&c.name)), Kind::Warning, "FailedPostStartHook", &format!("PostStartHook failed: {m}")).await;
        let _ = node.runtime.stop_container(id, Duration::from_secs(2)).await;
    }
}
