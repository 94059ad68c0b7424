//! The kubelet's HTTPS server (port 10250): `/healthz` and `/metrics` (keel-component's
//! router), `/pods`, `/containerLogs/{namespace}/{pod}/{container}` ([`logs`]),
//! `/exec/{namespace}/{pod}/{container}` over WebSocket ([`exec`]), `/stats/summary`
//! ([`stats`]).
//!
//! Authentication: with `--client-ca-file`, the TLS handshake requires a client certificate
//! signed by that CA (the apiserver's `--kubelet-client-certificate`), for every path; without
//! it, anyone who reaches the port is served, as kubelet does with `--anonymous-auth` and
//! AlwaysAllow authorization (said once at start). Authorization beyond that is not checked.

pub mod exec;
pub mod logs;
pub mod stats;

use crate::error::{Error, Result};
use crate::pod::Node;
use crate::runtime::{ContainerRecord, PodUid};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct Server {
    /// The node (runtime, pod index, clock).
    pub node: Arc<Node>,
    /// CPU samples for usageNanoCores.
    pub samples: Arc<std::sync::Mutex<stats::Samples>>,
}

/// A handler's error as kubelet answers: a status code and a plain-text message.
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl Server {
    /// The pod `namespace/name` this node runs and its container records.
    pub async fn pod(&self, namespace: &str, name: &str) -> std::result::Result<(Arc<Pod>, Vec<ContainerRecord>), Failure> {
        let pod = self.node.index.lock().unwrap_or_else(|e| e.into_inner()).get(&(namespace.to_string(), name.to_string())).cloned();
        let pod = pod.ok_or_else(|| {
            Failure(StatusCode::NOT_FOUND, format!("pod \"{name}\" in namespace \"{namespace}\" not found on node \"{}\"", self.node.name))
        })?;
        let uid = PodUid(pod.metadata.uid.clone().unwrap_or_default());
        let records = self.node.runtime.containers(&uid).await.map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok((pod, records))
    }
}

async fn pods(State(s): State<Server>) -> impl IntoResponse {
    let items: Vec<Pod> = s.node.index.lock().unwrap_or_else(|e| e.into_inner()).values().map(|p| (**p).clone()).collect();
    axum::Json(serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
}

async fn no_container(Path((ns, pod)): Path<(String, String)>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, format!("a container name is required: /containerLogs/{ns}/{pod}/<container>"))
}

/// The kubelet's routes merged with keel-component's `/healthz` and `/metrics`.
pub fn router(server: Server, base: Router) -> Router {
    let own = Router::new()
        .route("/pods", get(pods))
        .route("/containerLogs/{namespace}/{pod}", get(no_container))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs::handler))
        .route("/exec/{namespace}/{pod}/{container}", get(exec::handler).post(exec::handler))
        .route("/stats/summary", get(stats::handler))
        .with_state(server);
    base.merge(own)
}

/// The TLS configuration: the serving certificate (files, or self-signed for the node's names)
/// and, with a client CA, mandatory client-certificate authentication.
pub fn tls(
    cert: Option<(&std::path::Path, &std::path::Path)>,
    client_ca: Option<&std::path::Path>,
    hosts: &[String],
) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| Error::Invalid { what: "TLS configuration".into(), message: e.to_string() };
    let (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match cert {
        Some((c, k)) => {
            let chain =
                CertificateDer::pem_file_iter(c).map_err(|e| bad(&e))?.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
            (chain, PrivateKeyDer::from_pem_file(k).map_err(|e| bad(&e))?)
        }
        None => {
            let key = rcgen::KeyPair::generate().map_err(|e| bad(&e))?;
            let params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| bad(&e))?;
            let cert = params.self_signed(&key).map_err(|e| bad(&e))?;
            (vec![cert.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| bad(&e))?)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| bad(&e))?;
    let mut config = match client_ca {
        None => builder.with_no_client_auth().with_single_cert(chain, key).map_err(|e| bad(&e))?,
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(|e| bad(&e))?;
            builder.with_client_cert_verifier(verifier).with_single_cert(chain, key).map_err(|e| bad(&e))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
