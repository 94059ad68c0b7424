//! Fencing and the record of acts: the controllers' `kube::Client` is [`client`]'s wrapper around
//! the real one, so no controller can write around it.
//!
//! Invariants:
//! - Every write (POST, PUT, PATCH, DELETE) is sent only if [`Fence::may_act`] holds at the
//!   moment it is handed to the HTTP client; otherwise it fails with [`Error::Fenced`] without
//!   reaching the apiserver, and `controller_manager_fenced_writes_total` counts it. With
//!   keel-leader's [`Leadership`] that means: never before this instance holds the Lease, never
//!   later than `last renewal sent + renewDeadline`, whatever the controllers' loops are doing.
//!   Reads and watches pass untouched.
//! - The holder identity and term (`leaseTransitions`) reported with a write are read when it is
//!   sent, not when it returns.
//! - Every acknowledged (2xx) write other than a status update or an Event is logged at info
//!   (`created pod=ns/name owner=ReplicaSet/ns/rs rv=42 holder=<id> transitions=<n>`, target
//!   `keel_controllers::acts`; deletes carry no `rv`: the answer holds the object's last version,
//!   not the deletion's revision) and counted in `controller_manager_writes_total{holder,
//!   transitions}`, so a checker can place each act in the store's revision order and prove
//!   that two managers never acted at once.

pub mod request;

use crate::error::Error;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use keel_leader::Leadership;
use kube::client::Body;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Who may write, and under which name and term.
pub trait Fence: Send + Sync + 'static {
    /// Whether this instance may write now.
    fn may_act(&self) -> bool;
    /// This instance's identity (its Lease `holderIdentity` when electing).
    fn identity(&self) -> &str;
    /// The Lease's `leaseTransitions` as last seen: the term of an act.
    fn transitions(&self) -> i32;
}

impl Fence for Leadership {
    fn may_act(&self) -> bool {
        self.is_leader()
    }

    fn identity(&self) -> &str {
        Leadership::identity(self)
    }

    fn transitions(&self) -> i32 {
        Leadership::transitions(self)
    }
}

/// `--leader-elect=false`: one instance the operator vouches for; always allowed, term 0.
#[derive(Clone, Debug)]
pub struct Unelected(pub String);

impl Fence for Unelected {
    fn may_act(&self) -> bool {
        true
    }

    fn identity(&self) -> &str {
        &self.0
    }

    fn transitions(&self) -> i32 {
        0
    }
}

/// Labels of the write counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HolderLabels {
    /// The identity that sent the write.
    pub holder: String,
    /// Its Lease's `leaseTransitions` when it was sent.
    pub transitions: String,
}

/// The fence's counters. Cheap to clone.
#[derive(Clone, Default)]
pub struct FenceMetrics {
    /// Acknowledged, reported writes.
    pub writes: Family<HolderLabels, Counter>,
    /// Writes refused because this instance might not act.
    pub fenced: Counter,
    /// client-go's `leader_election_master_status{name}`: 1 while running a term, else 0.
    pub leading: Family<Vec<(String, String)>, prometheus_client::metrics::gauge::Gauge>,
}

impl FenceMetrics {
    /// Registers `controller_manager_writes_total` and `controller_manager_fenced_writes_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "controller_manager_writes",
            "Acknowledged writes (not status, not events) by the identity that sent them and its lease transitions",
            self.writes.clone(),
        );
        registry.register(
            "controller_manager_fenced_writes",
            "Writes not sent because this instance did not hold (or could not prove) the leader lease",
            self.fenced.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "1 while this instance leads (runs its controllers), else 0",
            self.leading.clone(),
        );
    }

    /// Sets `leader_election_master_status{name=lease}`.
    pub fn set_leading(&self, lease: &str, leading: bool) {
        self.leading.get_or_create(&vec![("name".to_string(), lease.to_string())]).set(i64::from(leading));
    }
}

/// The controllers' client: `inner` with every write fenced by `fence` and reported.
pub fn client(inner: kube::Client, fence: Arc<dyn Fence>, metrics: FenceMetrics) -> kube::Client {
    let namespace = inner.default_namespace().to_string();
    let service = tower::service_fn(move |req: Request<Body>| {
        let (inner, fence, metrics) = (inner.clone(), fence.clone(), metrics.clone());
        async move { send(&inner, &*fence, &metrics, req).await }
    });
    kube::Client::new(service, namespace)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn send(inner: &kube::Client, fence: &dyn Fence, metrics: &FenceMetrics, req: Request<Body>) -> Result<Response<Body>, BoxError> {
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let Some(write) = request::classify(req.method(), &path) else {
        return Ok(inner.send(req).await?);
    };
    // The term is taken now, with the check: the act belongs to the term it was sent in.
    let (holder, transitions) = (fence.identity().to_string(), fence.transitions());
    if !fence.may_act() {
        metrics.fenced.inc();
        tracing::debug!(method = %req.method(), %path, %holder, "not sent: not the leader");
        return Err(Box::new(Error::Fenced { identity: holder }));
    }
    let resp = inner.send(req).await?;
    if !write.reported() || !resp.status().is_success() {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes: Bytes = body.collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let act = request::describe(&write, &value);
    metrics.writes.get_or_create(&HolderLabels { holder: holder.clone(), transitions: transitions.to_string() }).inc();
    tracing::info!(target: "keel_controllers::acts", "{act} holder={holder} transitions={transitions}");
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use kube::api::{ListParams, PostParams};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Switch(AtomicBool);

    impl Fence for Switch {
        fn may_act(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
        fn identity(&self) -> &str {
            "me"
        }
        fn transitions(&self) -> i32 {
            3
        }
    }

    /// A kube::Client over a fake apiserver that records what reached it.
    fn recording() -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let log = log.clone();
            async move {
                log.lock().map(|mut l| l.push(format!("{} {}", req.method(), req.uri().path()))).ok();
                let body = if req.method() == http::Method::GET {
                    r#"{"apiVersion":"v1","kind":"ConfigMapList","metadata":{"resourceVersion":"5"},"items":[]}"#
                } else {
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c-x1","namespace":"d","resourceVersion":"6"}}"#
                };
                Ok::<_, BoxError>(Response::new(Body::from(body.as_bytes().to_vec())))
            }
        });
        (kube::Client::new(service, "default"), seen)
    }

    #[tokio::test]
    async fn no_write_reaches_the_apiserver_unless_the_fence_allows_it_at_sending_time() {
        let (inner, seen) = recording();
        let fence = Arc::new(Switch(AtomicBool::new(false)));
        let metrics = FenceMetrics::default();
        let client = client(inner, fence.clone(), metrics.clone());
        let cms: Api<ConfigMap> = Api::namespaced(client, "d");
        let cm =
            ConfigMap { metadata: kube::api::ObjectMeta { generate_name: Some("c-".into()), ..Default::default() }, ..Default::default() };

        assert!(cms.list(&ListParams::default()).await.is_ok(), "reads pass while fenced");
        let refused = cms.create(&PostParams::default(), &cm).await;
        assert!(matches!(&refused, Err(kube::Error::Service(e)) if e.to_string().contains("not the leader")), "{refused:?}");
        assert_eq!(metrics.fenced.get(), 1);
        assert_eq!(seen.lock().map(|s| s.clone()).unwrap_or_default(), vec!["GET /api/v1/namespaces/d/configmaps"]);

        fence.0.store(true, Ordering::SeqCst);
        let created = cms.create(&PostParams::default(), &cm).await.ok().and_then(|c| c.metadata.name);
        assert_eq!(created.as_deref(), Some("c-x1"), "the answer reaches the caller intact");
        assert_eq!(seen.lock().map(|s| s.len()).unwrap_or(0), 2);
        let counted = metrics.writes.get_or_create(&HolderLabels { holder: "me".into(), transitions: "3".into() }).get();
        assert_eq!(counted, 1);
    }
}
