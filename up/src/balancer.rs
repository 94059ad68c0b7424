//! The load balancer in front of the apiservers (the seed's picture; k3s and kubeadm clusters
//! put one there too): a TCP proxy, so TLS and HTTP/2 pass through untouched and every
//! apiserver's certificate is the one clients check. Each new connection goes to the next
//! backend in turn; a backend that refuses a connection is skipped for [`SKIP_FOR`] and the
//! next one tried, so clients fail over when an apiserver dies (their open watches break and
//! reconnect through here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a backend that refused a connection is left out.
pub const SKIP_FOR: Duration = Duration::from_secs(2);
/// How long one connection attempt to a backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The backends and what is known of them.
pub struct Backends {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
    // When each backend may be tried again (None: healthy as far as we know).
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Backends {
    /// Backends in round-robin order.
    pub fn new(addrs: Vec<SocketAddr>) -> Arc<Backends> {
        let n = addrs.len();
        Arc::new(Backends { addrs, next: AtomicUsize::new(0), down_until: Mutex::new(vec![None; n]) })
    }

    /// The order in which to try the backends for one new connection: round-robin start,
    /// backends marked down last (they are still tried if every other one fails).
    async fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.addrs.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let down = self.down_until.lock().await;
        let (mut up, mut skipped): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        for k in 0..n {
            let i = (start + k) % n;
            if down[i].is_some_and(|t| t > now) { skipped.push(i) } else { up.push(i) }
        }
        up.extend(skipped);
        up
    }

    async fn mark(&self, i: usize, ok: bool) {
        self.down_until.lock().await[i] = if ok { None } else { Some(Instant::now() + SKIP_FOR) };
    }

    /// A connection to some backend, or None if none answers.
    pub async fn connect(&self) -> Option<(usize, TcpStream)> {
        for i in self.order(Instant::now()).await {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addrs[i])).await {
                Ok(Ok(s)) => {
                    self.mark(i, true).await;
                    return Some((i, s));
                }
                _ => self.mark(i, false).await,
            }
        }
        None
    }
}

/// Accepts on `listener` and proxies every connection to a backend until the process stops.
pub async fn run(listener: TcpListener, backends: Arc<Backends>) {
    loop {
        let (mut client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                say!("keel: load balancer accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let backends = backends.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Some((_, mut server)) = backends.connect().await else { return };
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: u8) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).await.is_ok() {
                        if s.write_all(&[b[0], tag]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn ask(lb: SocketAddr) -> Option<u8> {
        let mut s = TcpStream::connect(lb).await.ok()?;
        s.write_all(b"x").await.ok()?;
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.ok()?;
        (b[0] == b'x').then_some(b[1])
    }

    #[tokio::test]
    async fn connections_take_turns_and_skip_a_dead_backend() {
        let (a, _ta) = echo_server(1).await;
        let (b, tb) = echo_server(2).await;
        // A port nobody listens on: a dead apiserver.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let lb = listener.local_addr().expect("addr");
        tokio::spawn(run(listener, Backends::new(vec![a, dead, b])));
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(ask(lb).await.expect("an answer through the balancer"));
        }
        assert!(seen.contains(&1) && seen.contains(&2), "both live backends serve: {seen:?}");
        // Kill b: every connection still gets an answer, from a.
        tb.abort();
        let _ = tb.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..4 {
            assert_eq!(ask(lb).await, Some(1));
        }
    }
}
