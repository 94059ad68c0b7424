//! The informers: one kube-runtime watcher per resource (pods, nodes), each feeding a
//! reflector store (the complete current set, for relists and readers) and forwarding every
//! event to the scheduling loop over one channel.
//!
//! Invariants: events reach the loop in the order the watch delivered them; a relist is
//! bracketed by `Init` … `InitDone` so the loop can drop what disappeared during a gap; watch
//! errors are retried with kube-runtime's default back-off (and logged), never fatal; the
//! channel is bounded, so a slow loop slows the watches instead of growing memory.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

/// One informer event for the loop.
#[derive(Debug)]
pub enum Update {
    /// A pod event.
    Pod(Box<watcher::Event<Pod>>),
    /// A node event.
    Node(Box<watcher::Event<Node>>),
}

/// Readers of the informers' stores.
#[derive(Clone)]
pub struct Stores {
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every node.
    pub nodes: Store<Node>,
}

/// Starts the pod and node informers; their events go to `tx`.
pub fn start(client: kube::Client, tx: mpsc::Sender<Update>) -> Stores {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    // Managed fields are big and never read here.
    let pod_stream = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().modify(|p| p.metadata.managed_fields = None),
    );
    let node_stream = reflector::reflector(
        node_writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff().modify(|n| n.metadata.managed_fields = None),
    );
    tokio::spawn(forward(pod_stream, tx.clone(), Update::Pod, "pods"));
    tokio::spawn(forward(node_stream, tx, Update::Node, "nodes"));
    Stores { pods, nodes }
}

async fn forward<K, S>(stream: S, tx: mpsc::Sender<Update>, wrap: fn(Box<watcher::Event<K>>) -> Update, what: &'static str)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut failing = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => {
                if failing {
                    tracing::info!(resource = what, "watch recovered");
                    failing = false;
                }
                if tx.send(wrap(Box::new(ev))).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!(resource = what, error = %e, "cannot list/watch through the apiserver; retrying with back-off");
                }
                failing = true;
            }
        }
    }
}
