//! The apiserver's outgoing client to kubelets (kube's `pkg/kubelet/client`), for what only a
//! node can answer: `pods/log`, `pods/exec`, `nodes/proxy` and metrics.k8s.io.
//!
//! ```text
//!  rest::connect / rest::metrics ──▶ KubeletClient::send ──TLS (client cert)──▶ kubelet :10250
//!        │ location: node address + port, container         │ one HTTP/1.1 connection per call,
//!        │ metrics: /stats/summary → NodeMetrics/PodMetrics  │ answer streamed; 101 → raw bytes
//! ```
//!
//! Invariants: every call has its own connection (no pool), so a `logs -f` or an exec holds it
//! exactly as long as its client and nothing is buffered beyond hyper's frames; a connection's
//! task runs in the server's task set and ends when either side closes; connecting (TCP and
//! TLS) is bounded by `--kubelet-timeout`, what follows is not (streams last).
//!
//! Modules: [`location`] (pure: address, port, container), [`tls`] (the client
//! configuration), [`metrics`] (pure: Summary API → metrics.k8s.io).

pub mod location;
pub mod metrics;
pub mod tls;

use crate::error::ApiError;
use crate::tasks::Spawner;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use location::Location;
use std::sync::Arc;
use std::time::Duration;

/// The kubelet client's settings (kube-apiserver's `--kubelet-*` flags).
#[derive(Clone)]
pub struct Config {
    /// The TLS configuration ([`tls::client_config`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `--kubelet-preferred-address-types`.
    pub preferred: Vec<String>,
    /// `--kubelet-timeout`: how long connecting (TCP and TLS) may take.
    pub connect_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // No client certificate, no verification (kube-apiserver's defaults); with no file
            // to read this cannot fail.
            tls: tls::client_config(None, None).ok(),
            preferred: location::DEFAULT_PREFERRED.iter().map(|s| s.to_string()).collect(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Largest `/stats/summary` read.
const SUMMARY_BYTES_MAX: usize = 16 << 20;

/// The pause between the first two summaries of a kubelet: its `usageNanoCores` is the rate
/// since the previous call, 0 on the first.
const FIRST_SAMPLE_GAP: Duration = Duration::from_secs(1);

/// Talks to kubelets.
pub struct KubeletClient {
    config: Config,
    spawner: Spawner,
    /// Kubelets asked for a summary before (by address), so their cpu rates mean something.
    /// A std mutex: held for one insert, never across an await.
    sampled: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// Why a kubelet could not be reached, as kube words a failed dial.
fn unreachable(loc: &Location, why: impl std::fmt::Display) -> ApiError {
    ApiError::from_kubelet(500, &format!("error dialing backend: dial tcp {}: {why}", loc.authority()))
}

impl KubeletClient {
    /// A client whose connections run in `spawner`'s set.
    pub fn new(config: Config, spawner: Spawner) -> KubeletClient {
        KubeletClient { config, spawner, sampled: Default::default() }
    }

    /// `--kubelet-preferred-address-types`.
    pub fn preferred(&self) -> &[String] {
        &self.config.preferred
    }

    /// Sends `req` (its URI a path and query) to the kubelet at `loc` on a connection of its
    /// own; the answer's body streams. A `101 Switching Protocols` answer can be upgraded with
    /// `hyper::upgrade::on`.
    pub async fn send(&self, loc: &Location, mut req: http::Request<Body>) -> Result<http::Response<Incoming>, ApiError> {
        let Some(tls) = self.config.tls.clone() else { return Err(unreachable(loc, "no TLS configuration for kubelets")) };
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((loc.host.as_str(), loc.port)).await.map_err(|e| unreachable(loc, e))?;
            let _ = tcp.set_nodelay(true);
            let name = rustls::pki_types::ServerName::try_from(loc.host.clone()).map_err(|e| unreachable(loc, e))?;
            tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| unreachable(loc, e))
        };
        let tls = tokio::time::timeout(self.config.connect_timeout, connect).await.map_err(|_| unreachable(loc, "i/o timeout"))??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(loc, e))?;
        self.spawner.spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("kubelet connection: {e}");
            }
        });
        if let Ok(host) = http::HeaderValue::from_str(&loc.authority()) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::from_kubelet(500, &format!("error reading from kubelet {}: {e}", loc.authority())))
    }

    /// GET of `path_and_query` with the body read whole (at most `limit` bytes): for JSON
    /// answers such as `/stats/summary`. A non-2xx answer is the kubelet's error.
    pub async fn get_bytes(&self, loc: &Location, path_and_query: &str, limit: usize) -> Result<bytes::Bytes, ApiError> {
        let req = http::Request::get(path_and_query).body(Body::empty()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let resp = self.send(loc, req).await?;
        let code = resp.status().as_u16();
        let body = read_limited(resp.into_body(), limit).await?;
        if !(200..300).contains(&code) {
            return Err(ApiError::from_kubelet(code, &String::from_utf8_lossy(&body)));
        }
        Ok(body)
    }
}

impl KubeletClient {
    /// The kubelet's `/stats/summary`; the first time a kubelet is asked, it is asked twice
    /// a second apart so the cpu rates are real.
    pub async fn summary(&self, loc: &Location) -> Result<serde_json::Value, ApiError> {
        let first = self.sampled.lock().unwrap_or_else(|e| e.into_inner()).insert(loc.authority());
        if first {
            self.get_bytes(loc, "/stats/summary", SUMMARY_BYTES_MAX).await?;
            tokio::time::sleep(FIRST_SAMPLE_GAP).await;
        }
        let body = self.get_bytes(loc, "/stats/summary", SUMMARY_BYTES_MAX).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::from_kubelet(500, &format!("the kubelet's summary at {}: {e}", loc.authority())))
    }
}

/// A body read whole, at most `limit` bytes (the rest is dropped).
pub async fn read_limited(body: Incoming, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ApiError::from_kubelet(500, &format!("reading the kubelet's answer: {e}"))),
    }
}
