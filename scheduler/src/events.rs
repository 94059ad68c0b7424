//! Events about pods (`Scheduled`, `FailedScheduling`, `Preempted`), written as core/v1 Events
//! so `kubectl describe pod` shows them, by a background writer the scheduling loop never
//! waits for.
//!
//! Invariants (client-go's event broadcaster, simplified):
//! - Recording never blocks: when the writer is behind, the event is dropped and counted
//!   (`scheduler_events_dropped_total`), as client-go drops when its channel is full.
//! - Warnings (`FailedScheduling`, which users read to learn why a pod waits) have their own
//!   queue and are written before any Normal event (`Scheduled`, `Preempted`), so a burst of
//!   bindings cannot crowd them out.
//! - A repeat of the same (object, reason, message) updates the first event's `count` and
//!   `lastTimestamp` instead of creating another (the correlator's aggregation), so a pod that
//!   stays unschedulable shows `(x5 over 2m)` rather than five lines.

use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::Event;
use keel_leader::Clock;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something expected happened.
    Normal,
    /// Something the user may need to act on.
    Warning,
}

/// One event to write.
#[derive(Clone, Debug)]
pub struct Note {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid.
    pub uid: String,
    /// Normal or Warning.
    pub kind: Kind,
    /// `Scheduled`, `FailedScheduling`, `Preempted`.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

/// The recording end, cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    warnings: mpsc::Sender<Note>,
    normal: mpsc::Sender<Note>,
    metrics: Metrics,
}

impl Recorder {
    /// Queues `note` for writing, or drops it if the writer is behind.
    pub fn record(&self, note: Note) {
        let tx = match note.kind {
            Kind::Warning => &self.warnings,
            Kind::Normal => &self.normal,
        };
        if tx.try_send(note).is_err() {
            self.metrics.events_dropped.inc();
        }
    }
}

/// How many distinct events are remembered for aggregation.
const REMEMBERED: usize = 4096;

/// Starts the writer: `component` is the `source.component` (`default-scheduler`),
/// `instance` the `reportingInstance` (this process's identity).
pub fn start(
    client: kube::Client,
    component: String,
    instance: String,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    timeout: Duration,
) -> Recorder {
    let (warnings, warnings_rx) = mpsc::channel(1024);
    let (normal, normal_rx) = mpsc::channel(1024);
    tokio::spawn(write(client, component, instance, clock, warnings_rx, normal_rx, timeout));
    Recorder { warnings, normal, metrics }
}

struct Seen {
    event: String,
    count: i64,
}

async fn write(
    client: kube::Client,
    component: String,
    instance: String,
    clock: Arc<dyn Clock>,
    mut warnings: mpsc::Receiver<Note>,
    mut normal: mpsc::Receiver<Note>,
    timeout: Duration,
) {
    let mut seen: HashMap<(String, &'static str, String), Seen> = HashMap::new();
    loop {
        let n = tokio::select! {
            biased;
            Some(n) = warnings.recv() => n,
            Some(n) = normal.recv() => n,
            else => return,
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &n.namespace);
        let now = clock.now();
        let key = (n.uid.clone(), n.reason, n.message.clone());
        if let Some(s) = seen.get_mut(&key) {
            s.count += 1;
            let patch = Patch::Merge(json!({"count": s.count, "lastTimestamp": now.to_string()}));
            match tokio::time::timeout(timeout, api.patch(&s.event, &PatchParams::default(), &patch)).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => tracing::debug!(error = %e, event = %s.event, "could not update an event; writing a new one"),
                Err(_) => tracing::debug!(event = %s.event, "timed out updating an event; writing a new one"),
            }
            seen.remove(&key);
        }
        let name = format!("{}.{:x}", n.name, now.as_nanosecond());
        let event: Event = match serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": n.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": n.namespace, "name": n.name, "uid": n.uid},
            "reason": n.reason,
            "message": n.message,
            "type": match n.kind { Kind::Normal => "Normal", Kind::Warning => "Warning" },
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": instance,
            "action": "Scheduling",
            "firstTimestamp": now.to_string(),
            "lastTimestamp": now.to_string(),
            "count": 1,
        })) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "could not build an event");
                continue;
            }
        };
        match tokio::time::timeout(timeout, api.create(&PostParams::default(), &event)).await {
            Ok(Ok(_)) => {
                if seen.len() >= REMEMBERED {
                    seen.clear();
                }
                seen.insert(key, Seen { event: name, count: 1 });
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, pod = %format!("{}/{}", n.namespace, n.name), reason = n.reason, "could not write an event")
            }
            Err(_) => tracing::warn!(pod = %format!("{}/{}", n.namespace, n.name), reason = n.reason, "timed out writing an event"),
        }
    }
}
