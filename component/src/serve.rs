//! The component's own HTTP(S) endpoint (kube-scheduler's 10259, kube-controller-manager's
//! 10257, the kubelet's 10250): `/healthz`, `/livez`, `/readyz` and `/metrics`, plus whatever
//! routes the component merges into the [`router`]. The listener is passed in; serving stops
//! when `shutdown` resolves.

use crate::Error;
use crate::health::{Health, Report};
use crate::metrics::{self, Shared};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone)]
struct Endpoints {
    health: Health,
    registry: Shared,
}

/// `/healthz`, `/livez`, `/readyz` (each with `?verbose`) and `/metrics`.
pub fn router(health: Health, registry: Shared) -> Router {
    Router::new()
        .route("/healthz", get(live))
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .route("/metrics", get(render))
        .with_state(Endpoints { health, registry })
}

fn answer(r: Report) -> (StatusCode, String) {
    (if r.ok { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR }, r.body)
}

async fn live(State(e): State<Endpoints>, Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    answer(e.health.live(q.contains_key("verbose")))
}

async fn ready(State(e): State<Endpoints>, Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    answer(e.health.ready(q.contains_key("verbose")))
}

async fn render(State(e): State<Endpoints>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::render(&e.registry))
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown`. Connections
/// already accepted finish on their own.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = Builder::new(TokioExecutor::new());
            match acceptor {
                Some(a) => {
                    let Ok(stream) = a.accept(tcp).await else { return };
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                }
                None => {
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

/// A TLS configuration with a freshly generated self-signed certificate for `hosts` (IP
/// addresses or DNS names), as kube's components serve when given no certificate files.
pub fn self_signed(hosts: &[String]) -> Result<Arc<rustls::ServerConfig>, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Certificate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(|e| bad(&e))?;
    let params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| bad(&e))?;
    let cert = params.self_signed(&key).map_err(|e| bad(&e))?;
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .map_err(|e| bad(&e))?;
    Ok(Arc::new(config))
}

/// A TLS configuration from PEM files (`--tls-cert-file`, `--tls-private-key-file`).
pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    use rustls::pki_types::pem::PemObject;
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| Error::Certificate(format!("{}: {e}", what.display()));
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    Ok(Arc::new(config))
}
