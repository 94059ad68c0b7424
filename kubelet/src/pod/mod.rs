//! Pods: the pure cores ([`status`], [`qos`], [`backoff`], [`probe`], [`eviction`], [`env`](mod@env),
//! [`volumes`], [`quantity`]) and the shells that drive them: [`manager`] (which pods this node
//! runs: the apiserver's, bound here, and the manifest folder's static pods), [`worker`] (one
//! level-triggered task per pod), [`prober`], [`lifecycle`] (postStart/preStop hooks),
//! [`spec`] (pod spec → runtime container config), [`static_pods`].

pub mod backoff;
pub mod env;
pub mod eviction;
pub mod lifecycle;
pub mod manager;
pub mod probe;
pub mod prober;
pub mod qos;
pub mod quantity;
pub mod spec;
pub mod static_pods;
pub mod status;
pub mod token;
pub mod volumes;
pub mod worker;

use crate::clock::Clock;
use crate::events::Events;
use crate::runtime::Runtime;
use backoff::BackoffConfig;
use k8s_openapi::api::core::v1::Pod;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Pod settings (from flags).
#[derive(Debug, Clone, Copy)]
pub struct PodConfig {
    /// How often a pod worker looks again without being woken (kubelet's PLEG relist: 1 s).
    pub resync: Duration,
    /// Restart back-off.
    pub backoff: BackoffConfig,
}

/// What every pod worker of one node shares.
pub struct Node {
    /// The node's name.
    pub name: String,
    /// The apiserver.
    pub client: kube::Client,
    /// The runtime.
    pub runtime: Arc<dyn Runtime>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// Events.
    pub events: Events,
    /// Settings.
    pub config: PodConfig,
    /// The node's address (status.hostIP).
    pub host_ip: String,
    /// Where pods' volumes live (`<root-dir>/pods`).
    pub pods_dir: PathBuf,
    /// Allocatable (cpu millis, memory bytes), for resourceFieldRef without limits.
    pub allocatable: (u64, u64),
    /// The pods this node runs now, by (namespace, name), for the kubelet's HTTP server.
    pub index: PodIndex,
    /// The process's metrics.
    pub metrics: crate::metrics::Metrics,
}

/// (namespace, name) → the pod this node runs under that name.
pub type PodIndex = Arc<std::sync::Mutex<std::collections::BTreeMap<(String, String), Arc<Pod>>>>;

/// Where a pod came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The apiserver (bound to this node).
    Api,
    /// A manifest file (static pod); its status goes to its mirror pod.
    File,
}

/// What the manager hands a worker: the latest desired pod.
#[derive(Debug, Clone)]
pub struct PodUpdate {
    /// The pod.
    pub pod: Arc<Pod>,
    /// It is gone from its source: stop it and clean up.
    pub removed: bool,
    /// Its source.
    pub source: Source,
    /// The name its status is written to (the mirror pod's for static pods).
    pub status_name: String,
    /// A terminal verdict (eviction).
    pub verdict: Option<status::Verdict>,
}
