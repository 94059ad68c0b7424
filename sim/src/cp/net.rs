//! The control plane's connections over turmoil's TCP: the apiservers reach the store members
//! through keel-etcd's connector seam ([`StoreDial`]), and every component's `kube::Client` is
//! kube's own HTTP stack over [`ApiConnector`], which dials the apiservers in turn (the load
//! balancer `keel up` puts in front of them).
//!
//! Invariants:
//! - Every client request carries the header [`ACTOR_HEADER`] naming the host and incarnation
//!   that sent it, so the apiservers can record who acted (see [`super::acts`]).
//! - A reconnect starts at the apiserver after the one the last connection went to, so a dead
//!   apiserver is left on the next reconnect, as with a TCP load balancer.

use futures::future::BoxFuture;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// The request header naming the sender (`scheduler-1#2`: replica 1, second incarnation).
pub const ACTOR_HEADER: &str = "x-keel-sim-actor";

/// Port every simulated apiserver serves plain HTTP on.
pub const API_PORT: u16 = 6443;

/// keel-etcd's dial seam over the simulated network.
pub struct StoreDial;

impl keel_etcd::Dial for StoreDial {
    fn dial(&self, authority: &str) -> BoxFuture<'static, std::io::Result<Box<dyn keel_etcd::Io>>> {
        let authority = authority.to_string();
        Box::pin(async move {
            let addr: SocketAddr = authority
                .parse()
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an address: {authority}")))?;
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as Box<dyn keel_etcd::Io>)
        })
    }
}

/// A simulated TCP stream as hyper's client wants it.
pub struct SimIo(TokioIo<turmoil::net::TcpStream>);

impl Read for SimIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for SimIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for SimIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Dials the apiservers in turn (see the module doc).
#[derive(Clone)]
pub struct ApiConnector {
    apiservers: Arc<[SocketAddr]>,
    next: Arc<AtomicUsize>,
}

impl ApiConnector {
    /// A connector over `apiservers`, starting at the `first`.
    pub fn new(apiservers: Vec<SocketAddr>, first: usize) -> ApiConnector {
        ApiConnector { apiservers: apiservers.into(), next: Arc::new(AtomicUsize::new(first)) }
    }
}

impl tower::Service<http::Uri> for ApiConnector {
    type Response = SimIo;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<SimIo>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let n = me.apiservers.len();
            let start = me.next.load(Ordering::Relaxed);
            let mut last = std::io::Error::new(std::io::ErrorKind::NotConnected, "no apiserver");
            for i in 0..n {
                let at = (start + i) % n;
                match tokio::time::timeout(Duration::from_secs(1), turmoil::net::TcpStream::connect(me.apiservers[at])).await {
                    Ok(Ok(s)) => {
                        me.next.store((at + 1) % n, Ordering::Relaxed);
                        return Ok(SimIo(TokioIo::new(s)));
                    }
                    Ok(Err(e)) => last = e,
                    Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                }
            }
            Err(last)
        })
    }
}

/// A `kube::Client` for `actor` over `connector`: kube's own stack as keel-component builds it
/// on a supplied connector (base URI, extra headers, timeouts, hyper's pooled client), with the
/// actor header as one of the configuration's extra headers.
pub fn kube_client(actor: &str, connector: ApiConnector) -> Result<kube::Client, String> {
    let url: http::Uri = format!("http://{}:{API_PORT}", connector.apiservers.first().map_or("0.0.0.0".into(), |a| a.ip().to_string()))
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let mut config = kube::Config::new(url);
    config.headers.push((
        http::HeaderName::from_static(ACTOR_HEADER),
        http::HeaderValue::from_str(actor).map_err(|e| format!("actor name {actor:?}: {e}"))?,
    ));
    keel_component::client::from_config_with_connector(config, connector).map_err(|e| e.to_string())
}
