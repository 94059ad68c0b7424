//! Core/v1 Events, as kubelet's recorder writes them (`source.component: kubelet`, `source.host`:
//! the node): `Scheduled`-style reasons such as `Created`, `Started`, `Killing`, `BackOff`,
//! `Unhealthy`, `FailedMount`, `Failed`. Repeats of the same (object, reason, message) within
//! 10 minutes bump `count` and `lastTimestamp` on the first event instead of creating another,
//! and are sent at most once per 10 s per key, so a crash-looping pod cannot flood the apiserver.
//!
//! Invariant: recording never fails the caller; an apiserver error is logged and dropped.

use crate::clock::Clock;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Seen {
    name: String,
    namespace: String,
    count: i32,
    first: Timestamp,
    sent: tokio::time::Instant,
}

/// The kubelet's event recorder.
#[derive(Clone)]
pub struct Events {
    client: Option<kube::Client>,
    node: String,
    clock: Arc<dyn Clock>,
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl Events {
    /// A recorder posting through `client` (`None`: only logs, for unit tests).
    pub fn new(client: Option<kube::Client>, node: &str, clock: Arc<dyn Clock>) -> Events {
        Events { client, node: node.to_string(), clock, seen: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// Records an event about `object`.
    pub async fn record(&self, object: &ObjectReference, kind: Kind, reason: &str, message: &str) {
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let key = format!(
            "{}/{}/{}/{:?}/{reason}/{message}",
            ns,
            object.name.clone().unwrap_or_default(),
            object.uid.clone().unwrap_or_default(),
            object.field_path
        );
        tracing::info!(object = ?object.name, reason, message, "event");
        let Some(client) = &self.client else { return };
        let now = self.clock.now();
        let repeat = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|_, s| s.sent.elapsed() < Duration::from_secs(600));
            match seen.get_mut(&key) {
                Some(s) if s.sent.elapsed() < Duration::from_secs(10) => {
                    s.count += 1;
                    return;
                }
                Some(s) => {
                    s.count += 1;
                    s.sent = tokio::time::Instant::now();
                    Some((s.name.clone(), s.namespace.clone(), s.count, s.first))
                }
                None => None,
            }
        };
        if let Some((name, namespace, count, _)) = repeat {
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now)});
            if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::debug!(error = %e, "event update");
            }
            return;
        }
        let name = format!("{}.{:x}", object.name.clone().unwrap_or_else(|| "object".into()), now.as_nanosecond() as u64);
        let ev = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: object.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(
                match kind {
                    Kind::Normal => "Normal",
                    Kind::Warning => "Warning",
                }
                .into(),
            ),
            source: Some(EventSource { component: Some("kubelet".into()), host: Some(self.node.clone()) }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.insert(key, Seen { name, namespace: ns, count: 1, first: now, sent: tokio::time::Instant::now() });
            }
            Err(e) => tracing::debug!(error = %e, "event create"),
        }
    }
}

/// A reference to a pod (or, with `container`, to one of its containers, as kubelet's
/// `spec.containers{name}` field path).
pub fn pod_ref(pod: &k8s_openapi::api::core::v1::Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone().or(Some("default".into())),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| format!("spec.containers{{{c}}}")),
    }
}
