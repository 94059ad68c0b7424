//! Events (`v1` Events, what `kubectl describe` shows under "Events:") that controllers record
//! about the objects they act on: `SuccessfulCreate`, `ScalingReplicaSet`, `FailedCreate`, …
//!
//! Recording never blocks a reconcile: events go through a bounded channel to one sender task,
//! and are dropped (with a log line) when the channel is full or the apiserver refuses them,
//! as client-go's broadcaster does. Repeats of the same (object, type, reason, message) within
//! [`REPEAT_WINDOW`] are not sent again.

use crate::clock::SharedClock;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Identical events inside this window are sent once.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);
const BUFFER: usize = 1000;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Routine.
    Normal,
    /// Something went wrong.
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

struct Pending {
    about: ObjectReference,
    kind: Kind,
    reason: String,
    message: String,
    component: &'static str,
}

/// Records events for one or more controllers. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Pending>>,
    component: &'static str,
}

/// A reference to `obj` for an event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let m = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// A recorder whose sender task posts through `client`; run the returned future.
    pub fn new(client: Client, clock: SharedClock) -> (Recorder, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::channel(BUFFER);
        (Recorder { tx: Some(tx), component: "kube-controller-manager" }, send_loop(client, clock, rx))
    }

    /// A recorder that drops everything (unit tests).
    pub fn disabled() -> Recorder {
        Recorder { tx: None, component: "" }
    }

    /// The same recorder, reporting as `component` (`replicaset-controller`, …).
    pub fn for_component(&self, component: &'static str) -> Recorder {
        Recorder { tx: self.tx.clone(), component }
    }

    /// Records an event about `obj`.
    pub fn record<K: Resource<DynamicType = ()>>(&self, obj: &K, kind: Kind, reason: &str, message: impl Into<String>) {
        self.record_ref(reference(obj), kind, reason, message)
    }

    /// Records an event about the object `about`.
    pub fn record_ref(&self, about: ObjectReference, kind: Kind, reason: &str, message: impl Into<String>) {
        let Some(tx) = &self.tx else { return };
        let p = Pending { about, kind, reason: reason.to_string(), message: message.into(), component: self.component };
        if tx.try_send(p).is_err() {
            tracing::debug!("event dropped: buffer full");
        }
    }
}

async fn send_loop(client: Client, clock: SharedClock, mut rx: mpsc::Receiver<Pending>) {
    let mut recent: HashMap<(String, &'static str, String, String), tokio::time::Instant> = HashMap::new();
    while let Some(p) = rx.recv().await {
        let now_mono = tokio::time::Instant::now();
        let key = (p.about.uid.clone().unwrap_or_default(), p.kind.as_str(), p.reason.clone(), p.message.clone());
        if recent.get(&key).is_some_and(|t| now_mono.duration_since(*t) < REPEAT_WINDOW) {
            continue;
        }
        recent.retain(|_, t| now_mono.duration_since(*t) < REPEAT_WINDOW);
        recent.insert(key, now_mono);
        let ns = p.about.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let now = Time(clock.now());
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", p.about.name.clone().unwrap_or_default())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: p.about,
            reason: Some(p.reason),
            message: Some(p.message),
            type_: Some(p.kind.as_str().into()),
            source: Some(EventSource { component: Some(p.component.into()), host: None }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(p.component.into()),
            reporting_instance: Some(p.component.into()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::debug!("event not recorded: {e}");
        }
    }
}
