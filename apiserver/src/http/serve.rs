//! The connection loop: serves the router (HTTP/2 and HTTP/1.1, with upgrades) on every
//! connection a stream yields, in plain HTTP or behind TLS (rustls), until `shutdown` resolves.
//! The stream is any source of byte streams: accepted TCP connections ([`tcp`]), the
//! simulation's TCP, or in-memory pipes in tests. Connections run in a set owned by the loop,
//! so they end when it returns.

use crate::http::audit::PeerAddr;
use axum::Router;
use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A connection the server can speak HTTP over.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The client certificate chain the TLS handshake verified, in every request's extensions
/// (what authentication reads; absent on plain connections or without a certificate).
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<rustls::pki_types::CertificateDer<'static>>>);

/// The client's address, when the connection is TCP (the audit log's `sourceIPs`; other
/// connections, the simulation's or in-memory ones, have none to give).
fn peer_addr(io: &dyn std::any::Any) -> Option<PeerAddr> {
    io.downcast_ref::<tokio::net::TcpStream>().and_then(|s| s.peer_addr().ok()).map(|a| PeerAddr(a.ip()))
}

async fn speak<C: Conn>(io: C, router: Router, peer: Option<PeerCertificates>, addr: Option<PeerAddr>) {
    use tower::ServiceExt;
    let service = TowerToHyperService::new(router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        if let Some(p) = &peer {
            req.extensions_mut().insert(p.clone());
        }
        if let Some(a) = addr {
            req.extensions_mut().insert(a);
        }
        req
    }));
    if let Err(e) = Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(io), service).await {
        tracing::debug!("connection: {e}");
    }
}

/// Serves `router` on each connection of `incoming` (behind `tls` when given) until `shutdown`.
pub async fn serve<S, C>(incoming: S, tls: Option<Arc<ServerConfig>>, router: Router, shutdown: impl Future<Output = ()>)
where
    S: Stream<Item = std::io::Result<C>>,
    C: Conn,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    tokio::pin!(incoming);
    loop {
        let next = tokio::select! {
            biased;
            () = &mut shutdown => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            next = incoming.next() => next,
        };
        let io = match next {
            Some(Ok(io)) => io,
            Some(Err(e)) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            None => return,
        };
        let router = router.clone();
        let addr = peer_addr(&io);
        match acceptor.clone() {
            Some(acceptor) => conns.spawn(async move {
                match acceptor.accept(io).await {
                    Ok(stream) => {
                        let peer = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| PeerCertificates(Arc::new(c.iter().map(|d| d.clone().into_owned()).collect())));
                        speak(stream, router, peer, addr).await
                    }
                    Err(e) => tracing::debug!("TLS handshake: {e}"),
                }
            }),
            None => conns.spawn(speak(io, router, None, addr)),
        };
    }
}

/// The connections a TCP listener accepts (Nagle off: API calls are small and latency-bound).
pub fn tcp(listener: tokio::net::TcpListener) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((next, l))
    })
}
