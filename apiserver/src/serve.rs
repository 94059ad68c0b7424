//! Serving the router: HTTPS (rustls; HTTP/2 and HTTP/1.1) on the secure port, and plain HTTP
//! on an opt-in local port for development. The listeners are passed in (the composition root
//! binds them), and the servers stop when `shutdown` resolves.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Serves `router` over TLS on `listener` until `shutdown`.
pub async fn https(listener: TcpListener, tls: Arc<ServerConfig>, router: Router, shutdown: impl Future<Output = ()>) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            biased;
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let _ = Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(stream), service).await;
        });
    }
}

/// Serves `router` in plain HTTP on `listener` until `shutdown`.
pub async fn http(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()> + Send + 'static) {
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
        tracing::warn!("plain HTTP server: {e}");
    }
}
