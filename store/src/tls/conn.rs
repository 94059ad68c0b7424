//! Connections: the listener side (plain or TLS, handshakes run concurrently so a slow or
//! hostile client cannot hold up the others; what the client sends passes through the
//! [`Rewriter`] for etcdctl 3.4's URL authorities) and the dialing side for peers.

use super::authority::Rewriter;
use futures::Stream;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once per listener; more connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;

/// An accepted connection.
pub struct Conn {
    io: Io,
    /// Every byte the client sends passes through it before the HTTP server reads it.
    rewriter: Box<Rewriter>,
}

impl Conn {
    fn new(io: Io) -> Conn {
        Conn { io, rewriter: Box::default() }
    }
}

/// The transport of an accepted connection.
enum Io {
    /// Plain TCP (`http://` URLs).
    Plain(TcpStream),
    /// TLS over TCP (`https://` URLs); true when the client certificate's CN names the user
    /// (`--client-cert-auth`).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, bool),
}

/// What the services learn about a connection (tonic puts it in every request's extensions).
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The common name of the client's verified certificate.
    pub cert_cn: Option<String>,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match &self.io {
            Io::Plain(s) => ConnInfo { remote: s.peer_addr().ok(), cert_cn: None },
            Io::Tls(s, cn_is_user) => {
                let (tcp, session) = s.get_ref();
                let cert_cn =
                    session.peer_certificates().and_then(|c| c.first()).filter(|_| *cn_is_user).and_then(|c| super::common_name(c));
                ConnInfo { remote: tcp.peer_addr().ok(), cert_cn }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.rewriter.poll_read(Pin::new(&mut this.io), cx, buf)
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

/// Connections accepted on `listener`, through TLS when `tls` is given (`cn_is_user`: the client
/// certificate's CN names the user). A failed handshake (no certificate, a revoked or untrusted
/// one) is logged and the connection dropped; at most [`MAX_HANDSHAKES`] run at once.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    cn_is_user: bool,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    let acceptor = tls.map(TlsAcceptor::from);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match &acceptor {
                None => {
                    if tx.send(Ok(Conn::new(Io::Plain(tcp)))).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => {
                                let _ = tx.send(Ok(Conn::new(Io::Tls(Box::new(s), cn_is_user)))).await;
                            }
                            Ok(Err(e)) => tracing::warn!(%remote, error = %e, "rejected connection (TLS handshake failed)"),
                            Err(_) => tracing::warn!(%remote, "rejected connection (TLS handshake timed out)"),
                        }
                    });
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The real network: TCP from the peer listener's address (when it names one), TLS with the
/// member's peer config for `https://` peers.
pub struct TcpDialer {
    /// Where outgoing connections come from, so peers see one address per member.
    pub local: Option<std::net::IpAddr>,
    /// How `https://` peers are dialed (`None`: peer TLS is not configured).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl crate::seams::Dialer for TcpDialer {
    fn dial(&self, addr: SocketAddr, secure: bool) -> futures::future::BoxFuture<'static, io::Result<Box<dyn crate::seams::PeerIo>>> {
        let (local, tls) = (self.local, self.tls.clone());
        Box::pin(async move {
            let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            // Only from an address of the peer's IP version (as hyper's connector does).
            if let Some(ip) = local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            let tcp = socket.connect(addr).await?;
            tcp.set_nodelay(true)?;
            if !secure {
                return Ok(Box::new(tcp) as Box<dyn crate::seams::PeerIo>);
            }
            let cfg = tls.ok_or_else(|| io::Error::other("the peer URL is https, but peer TLS is not configured"))?;
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            Ok(Box::new(TlsConnector::from(cfg).connect(name, tcp).await?) as Box<dyn crate::seams::PeerIo>)
        })
    }
}
