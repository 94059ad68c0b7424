//! `keel-apiserver`: the Kubernetes REST API over an etcd v3 store, the only part of Keel's
//! control plane that talks to the store (as kube-apiserver is for etcd).
//!
//! ```text
//!  kubectl / kube-rs ──HTTPS :6443──▶ api (routes, media types, Table/JSON)
//!                                      ├─ discovery   /version /api /apis (legacy + aggregated)
//!                                      ├─ crud        create get update patch delete
//!                                      ├─ list        paged lists at one revision, deletecollection
//!                                      │    ├─ meta       uid, timestamps, generation, names
//!                                      │    ├─ defaults   what Kubernetes fills in
//!                                      │    ├─ validation 422 Invalid with field causes
//!                                      │    ├─ smp        strategic merge patch (merge and JSON patch: json-patch)
//!                                      │    ├─ strict     unknown fields (fieldValidation=Strict)
//!                                      │    ├─ selector   label and field selectors
//!                                      │    └─ table      server-side printing for kubectl get
//!                                      └─ watch       chunked event streams
//!                                           └─ cache   one store watch per resource, a window of changes
//!                                           │
//!                                      store (etcd v3 gRPC: Txn on mod_revision, Range, Watch)
//!                                           │  encryption: secrets sealed with AES-GCM on the way in
//!                                           ▼
//!                                 keel-store or etcd (--etcd-servers)
//! ```
//!
//! Modules: [`api`], [`crud`], [`list`], [`watch`], [`cache`] (the watch cache), [`compactor`] (kube-apiserver's compaction loop), [`gc`] (dependents on delete), [`discovery`], [`registry`] (the served resources),
//! [`encryption`] (secrets at rest), [`scale`] (the `/scale` subresource), [`pods`] (binding and eviction), [`openapi`], [`protobuf`] (request bodies), [`managed`] (managedFields, server-side apply), [`smp`] (strategic merge patch), [`meta`], [`defaults`], [`validation`], [`strict`], [`selector`], [`table`], [`store`], [`tls`], [`serve`],
//! [`seams`] (clock and ids), [`error`] (the one error type and its `Status` mapping).

pub mod api;
pub mod cache;
pub mod compactor;
pub mod crud;
pub mod defaults;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod gc;
pub mod list;
pub mod managed;
pub mod meta;
pub mod openapi;
pub mod pods;
pub mod protobuf;
pub mod registry;
pub mod scale;
pub mod seams;
pub mod selector;
pub mod serve;
pub mod smp;
pub mod store;
pub mod strict;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;

pub use api::Api;
pub use error::ApiError;
