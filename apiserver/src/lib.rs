//! `keel-apiserver`: the Kubernetes REST API over an etcd v3 store, the only part of Keel's
//! control plane that talks to the store (as kube-apiserver is for etcd). A library:
//! [`Server::start`] over a [`keel_etcd::Client`] and the [`Seams`], [`Server::serve`] over any
//! stream of connections; `main.rs` only parses flags, binds listeners and calls them.
//!
//! ```text
//!  kubectl / kube-rs ──HTTPS :6443──▶ http      routes, request parsing (Call), JSON/Table answers,
//!                                      │        discovery, OpenAPI, protobuf bodies, TLS, serve loop
//!                                      ▼ (http::Backend)
//!                                     rest      get create update patch apply delete list watch
//!                                      │        scale binding eviction gc; guarded_update; smp, managedFields
//!                      ┌───────────────┴──────────────┐
//!                      ▼                              ▼
//!                   registry                        storage   keys, codec+encryption, guarded Txn,
//!   one Strategy per kind (pods, nodes, …):          │       watch cache, compactor, event leases
//!   defaults, validation, columns, field             ▼
//!   selectors, status reset, delete behaviour     keel-etcd ──gRPC──▶ keel-store or etcd
//! ```
//!
//! `rest` also reaches kubelets (logs, exec, node proxy, metrics) through [`kubelet`], the
//! outgoing HTTPS client (`rest ──▶ kubelet ──TLS :10250──▶ keel-kubelet`).
//!
//! Module graph (an arrow is "uses"; no circles): `server` → `http`, `rest`, `storage`, `tasks`,
//! `kubelet`; `rest` → `http`, `registry`, `storage`, `tasks`, `kubelet`; `http` → `registry`;
//! `storage` → `registry`, `tasks`, `keel_etcd`; `kubelet` → `tasks`; `registry` → nothing of
//! the crate but `error`. Every module may use [`error`] and [`seams`].
//!
//! Modules: [`server`] (Server, Config, Seams), [`http`], [`rest`], [`registry`], [`storage`],
//! [`kubelet`] (the client to kubelets),
//! [`tasks`] (the task set that stops with the server), [`seams`] (clock and ids), [`error`]
//! (the one error type and its `Status` mapping).

pub mod error;
pub mod http;
pub mod kubelet;
pub mod registry;
pub mod rest;
pub mod seams;
pub mod server;
pub mod storage;
pub mod tasks;

pub use error::ApiError;
pub use server::{Config, Seams, Server};
