//! turmoil's simulated TCP, plugged into the store's seams: a [`SimDialer`] for peers, a
//! listener stream for tonic servers, and channels for simulated clients.

use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use keel_store::seams::{Dialer, PeerIo};
use keel_store::tls::conn::ConnInfo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

/// Dials peers over the simulated network.
pub struct SimDialer;

impl Dialer for SimDialer {
    fn dial(&self, addr: SocketAddr, _secure: bool) -> BoxFuture<'static, std::io::Result<Box<dyn PeerIo>>> {
        async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as Box<dyn PeerIo>)
        }
        .boxed()
    }
}

/// An accepted simulated connection, as tonic's servers want it.
pub struct SimConn {
    inner: turmoil::net::TcpStream,
    remote: SocketAddr,
}

impl Connected for SimConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo { remote: Some(self.remote), cert_cn: None }
    }
}

impl AsyncRead for SimConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connections accepted on `port` of this simulated host, as a stream for `serve_with_incoming`.
pub async fn incoming(port: u16) -> std::io::Result<impl Stream<Item = std::io::Result<SimConn>> + Send + 'static> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    Ok(futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(inner, remote)| SimConn { inner, remote });
        Some((next, l))
    }))
}

/// A lazily connected client channel to `addr` over the simulated network, with the deadlines
/// a real client would set (a partition otherwise wedges a call forever).
pub fn channel(addr: SocketAddr) -> Channel {
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1:2379"))
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        // h2 remembers a stream it reset for a *real* second, so whether a late frame on it is
        // ignored or answered with RST_STREAM would depend on the machine's speed; forgotten at
        // once, it is always answered (see the README's determinism rules).
        .http2_max_concurrent_reset_streams(0);
    ep.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| async move {
        let s = turmoil::net::TcpStream::connect(addr).await?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
    }))
}
