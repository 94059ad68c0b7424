//! `keel-component`: what Kubernetes' `k8s.io/component-base` is for its components, for
//! Keel's scheduler, kubelet and controller-manager.
//!
//! ```text
//!  main.rs of a component
//!     ├─ client::from_kubeconfig(--kubeconfig) ─▶ kube::Client   (or client::with_connector: any byte stream)
//!     ├─ health::Health (named checks, ready flag) ─┐
//!     ├─ metrics::Registry (prometheus-client)  ────┼─▶ serve::router ─▶ serve::serve(listener, tls, …)
//!     │                                              │      /healthz /livez /readyz /metrics (+ the component's own routes)
//!     └─ shutdown::signal() (SIGINT / SIGTERM)       └─ serve::self_signed: a serving certificate when none is given
//! ```
//!
//! Modules: [`client`], [`health`], [`kubeconfig`] (writing one for a client certificate),
//! [`metrics`], [`serve`], [`shutdown`]. Leader election is a
//! crate of its own (`keel-leader`).

pub mod client;
pub mod health;
pub mod kubeconfig;
pub mod metrics;
pub mod serve;
pub mod shutdown;

/// What can go wrong setting a component up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or does not describe a usable cluster and user.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What kube said.
        #[source]
        source: kube::Error,
    },
    /// The kube client could not be built from a valid kubeconfig (TLS material, auth).
    #[error("building the kube client: {0}")]
    Client(#[source] kube::Error),
    /// A serving certificate could not be made or loaded.
    #[error("serving certificate: {0}")]
    Certificate(String),
}
