//! The connector seam: how bytes reach a store member. [`Dial`] opens one byte stream to an
//! endpoint (`host:port`); [`Tcp`] is the real network, the simulation passes turmoil's TCP and
//! tests can pass an in-memory pipe. Only a composition root (a `main.rs`, `sim/`) picks one.
//!
//! [`Failover`] turns a list of endpoints into the one connector a tonic channel uses: each
//! (re)connect dials the endpoints in turn, starting after the one the last connection went
//! to, each attempt bounded by the connect timeout. So a member that dies or hangs (its
//! connection fails or misses keepalives) is left for the next one on the following reconnect,
//! the way etcd's own client moves between endpoints.

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a member.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Opens byte streams to endpoints.
pub trait Dial: Send + Sync + 'static {
    /// A new stream to `authority` (`host:port`).
    fn dial(&self, authority: &str) -> BoxFuture<'static, std::io::Result<Box<dyn Io>>>;
}

/// The real network: TCP with Nagle off (requests are small and latency-bound).
pub struct Tcp;

impl Dial for Tcp {
    fn dial(&self, authority: &str) -> BoxFuture<'static, std::io::Result<Box<dyn Io>>> {
        let authority = authority.to_string();
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(authority).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as Box<dyn Io>)
        })
    }
}

/// `host:port` of an endpoint given as `host:port` or `http://host:port[/]`.
pub fn authority(endpoint: &str) -> Result<String, crate::Error> {
    let bad = |reason: &str| crate::Error::Endpoint { endpoint: endpoint.to_string(), reason: reason.to_string() };
    let rest = match endpoint.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(bad("TLS to the store is not supported; use http://")),
        Some(_) => return Err(bad("the scheme must be http")),
        None => endpoint,
    };
    let host_port = rest.trim_end_matches('/');
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() && !host_port.contains('/') => Ok(host_port.to_string()),
        _ => Err(bad("expected host:port")),
    }
}

/// The connector of a client's channel: dials the endpoints in turn (see the module doc).
#[derive(Clone)]
pub struct Failover {
    endpoints: Arc<[String]>,
    next: Arc<AtomicUsize>,
    dial: Arc<dyn Dial>,
    attempt_timeout: Duration,
}

impl Failover {
    /// A connector over `endpoints` (authorities, at least one).
    pub fn new(endpoints: Vec<String>, dial: Arc<dyn Dial>, attempt_timeout: Duration) -> Failover {
        Failover { endpoints: endpoints.into(), next: Arc::new(AtomicUsize::new(0)), dial, attempt_timeout }
    }
}

impl tower::Service<http::Uri> for Failover {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let n = me.endpoints.len();
            let start = me.next.load(Ordering::Relaxed);
            let mut last = std::io::Error::new(std::io::ErrorKind::NotConnected, "no etcd endpoint");
            for i in 0..n {
                let at = (start + i) % n;
                let endpoint = &me.endpoints[at];
                match tokio::time::timeout(me.attempt_timeout, me.dial.dial(endpoint)).await {
                    Ok(Ok(io)) => {
                        // The next reconnect (this connection broke) tries another member first.
                        me.next.store((at + 1) % n, Ordering::Relaxed);
                        return Ok(TokioIo::new(io));
                    }
                    Ok(Err(e)) => last = std::io::Error::new(e.kind(), format!("{endpoint}: {e}")),
                    Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{endpoint}: connect timed out")),
                }
                tracing::debug!("etcd endpoint {endpoint}: {last}");
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tower::Service;

    #[test]
    fn endpoints_are_host_port_over_http() {
        assert_eq!(authority("127.0.0.1:2379").ok().as_deref(), Some("127.0.0.1:2379"));
        assert_eq!(authority("http://member-1:2379/").ok().as_deref(), Some("member-1:2379"));
        assert!(authority("https://127.0.0.1:2379").is_err());
        assert!(authority("127.0.0.1").is_err());
        assert!(authority("http://h:2379/path").is_err());
        assert!(authority("unix:///sock").is_err());
    }

    /// Refuses the endpoints it is told to and records every attempt.
    struct Script {
        down: Vec<&'static str>,
        tried: Mutex<Vec<String>>,
    }

    impl Dial for Script {
        fn dial(&self, authority: &str) -> BoxFuture<'static, std::io::Result<Box<dyn Io>>> {
            self.tried.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(authority.to_string());
            let refuse = self.down.contains(&authority);
            Box::pin(async move {
                if refuse {
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
                }
                let (a, _b) = tokio::io::duplex(64);
                Ok(Box::new(a) as Box<dyn Io>)
            })
        }
    }

    #[tokio::test]
    async fn a_reconnect_moves_past_dead_members_and_starts_after_the_last_one_used() {
        let script = Arc::new(Script { down: vec!["b:1"], tried: Mutex::new(Vec::new()) });
        let mut f = Failover::new(vec!["a:1".into(), "b:1".into(), "c:1".into()], script.clone(), Duration::from_secs(1));
        let uri = http::Uri::from_static("http://etcd");
        assert!(f.call(uri.clone()).await.is_ok());
        assert!(f.call(uri.clone()).await.is_ok());
        assert!(f.call(uri).await.is_ok());
        let tried = script.tried.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        assert_eq!(tried, vec!["a:1", "b:1", "c:1", "a:1"]);
    }

    #[tokio::test]
    async fn every_member_down_is_an_error_naming_the_last() {
        let script = Arc::new(Script { down: vec!["a:1", "b:1"], tried: Mutex::new(Vec::new()) });
        let mut f = Failover::new(vec!["a:1".into(), "b:1".into()], script, Duration::from_secs(1));
        let err = f.call(http::Uri::from_static("http://etcd")).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("b:1"), "{err}");
    }
}
