//! `keel-controller-manager`: Keel's kube-controller-manager. Controllers are level-triggered
//! reconcilers over shared informers (one watch per resource for the whole process), fed by
//! de-duplicating, rate-limited work queues; they talk to keel-apiserver only, through kube-rs.
//!
//! ```text
//!  main.rs ── keel-leader Elector ──► election::run_while_leading ──► manager::run (each term)
//!              Leadership ──► fence::client: every write checked (is_leader) when sent,
//!                                   │        acknowledged writes logged with holder + term
//!   shared::Shared (informer::Informer per resource: watcher → Store + indexes → handlers)
//!        │ handlers enqueue keys                      ▲ caches read by reconcilers
//!        ▼                                            │
//!   queue::Queue (dedup, delay, backoff) ─► runner (N workers) ─► <controller>::reconcile
//!                                                               └► apiserver writes, events
//! ```
//!
//! Leadership: [`election`] (controllers run only while leading), [`fence`] (the controllers'
//! client: writes fenced and reported).
//!
//! Shared machinery: [`key`] (object keys, uids), [`clock`] (wall-time seam), [`error`],
//! [`queue`], [`runner`], [`informer`], [`shared`], [`context`], [`metrics`], [`events`],
//! [`expectations`], [`flags`], [`ownership`] (controllerRefs), [`selector`], [`pod`] (pod status and
//! deletion ranking), [`podcontrol`] (pod creation, slow start).
//!
//! Controllers: [`replicaset`], [`deployment`], [`nodelifecycle`] (with its taint eviction),
//! [`serviceaccount`], [`daemonset`], [`endpoints`] (Endpoints and EndpointSlices),
//! [`namespace`], [`gc`] (the garbage collector), [`rootca`] (`kube-root-ca.crt` in every
//! namespace), [`aggregation`] (ClusterRole aggregation), [`resourcequota`] (quota recount).

pub mod aggregation;
pub mod clock;
pub mod context;
pub mod daemonset;
pub mod deployment;
pub mod election;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod expectations;
pub mod fence;
pub mod flags;
pub mod gc;
pub mod informer;
pub mod key;
pub mod manager;
pub mod metrics;
pub mod namespace;
pub mod nodelifecycle;
pub mod ownership;
pub mod pod;
pub mod podcontrol;
pub mod queue;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod runner;
pub mod selector;
pub mod serviceaccount;
pub mod shared;

pub use error::{Error, Result};
