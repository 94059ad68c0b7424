//! An apiserver hosted in-process, the way the simulation hosts it: [`keel_apiserver::Server`]
//! started over a real keel-store (a process, from keel-testkit) and served over in-memory
//! pipes, with a `kube::Client` whose connector opens a new pipe for each connection.

#![allow(dead_code)] // each test crate uses its own part

use futures::StreamExt;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_apiserver::seams::{Clock, Ids, SystemClock};
use keel_apiserver::{Config, Seams, Server};
use keel_testkit::Cluster;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot};

/// One end of an in-memory connection, as hyper's client wants it.
pub struct Pipe(TokioIo<DuplexStream>);

impl hyper::rt::Read for Pipe {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: hyper::rt::ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Pipe {
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

impl Connection for Pipe {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// The in-process apiserver, its store and a client.
pub struct InProcess {
    /// The server (dropping it stops its tasks).
    pub server: Arc<Server>,
    /// A kube client over in-memory pipes to it.
    pub client: kube::Client,
    /// The store process.
    pub cluster: Cluster,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    /// Stops serving and drops the server: its tasks end, its connections close.
    pub async fn stop(mut self) -> (kube::Client, Cluster) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.serving.take() {
            let _ = h.await;
        }
        assert_eq!(Arc::strong_count(&self.server), 1, "only the test holds the server now");
        drop(self.server);
        (self.client, self.cluster)
    }
}

/// Starts a store member (a process), then the apiserver in this process over it.
pub async fn start() -> InProcess {
    start_with(Arc::new(SystemClock), 7).await
}

/// [`start`] with a clock and an id seed of the test's choosing.
pub async fn start_with(clock: Arc<dyn Clock>, seed: u64) -> InProcess {
    start_configured(Config::default(), clock, seed).await
}

/// [`start`] with settings of the test's choosing.
pub async fn start_config(config: Config) -> InProcess {
    start_configured(config, Arc::new(SystemClock), 7).await
}

async fn start_configured(config: Config, clock: Arc<dyn Clock>, seed: u64) -> InProcess {
    let cluster = tokio::task::spawn_blocking(|| Cluster::builder().apiservers(0).start()).await.expect("start the store");
    let store =
        keel_etcd::Client::connect(&[cluster.etcd_servers()], &keel_etcd::Config::default(), Arc::new(keel_etcd::Tcp)).expect("client");
    let server = Arc::new(Server::start(config, store, Seams { clock, ids: Ids::seeded(seed) }));
    server.ready().await.expect("the server bootstraps");
    let (conns_tx, conns_rx) = mpsc::channel::<DuplexStream>(64);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let hosted = server.clone();
    let serving = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conns_rx).map(Ok::<_, std::io::Error>);
        hosted
            .serve(incoming, async move {
                let _ = stop_rx.await;
            })
            .await;
    });
    let connector = tower::service_fn(move |_: http::Uri| {
        let conns = conns_tx.clone();
        Box::pin(async move {
            let (client_end, server_end) = tokio::io::duplex(1 << 16);
            conns.send(server_end).await.map_err(|_| std::io::Error::other("the server is gone"))?;
            Ok::<_, std::io::Error>(Pipe(TokioIo::new(client_end)))
        })
    });
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let base = http::Uri::from_static("http://keel.in-process");
    let service = tower::ServiceBuilder::new().layer(kube::client::middleware::BaseUriLayer::new(base)).service(http);
    let client = kube::Client::new(service, "default");
    InProcess { server, client, cluster, stop: Some(stop_tx), serving: Some(serving) }
}
