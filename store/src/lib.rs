//! keel-store: an etcd v3 compatible key-value store.
//!
//! ```text
//!  clients (etcdctl, etcd client libraries, curl)
//!     |  gRPC + HTTP on one port, every RPC timed by one tower layer (server/metrics)
//!     v
//!  server/ services ---------- http/ (health, metrics, JSON gateway: the same service calls)
//!     |  each call: rpc rule (learner, auth) -> validate -> read or propose
//!     |  reads (after a read       | mutations (Command)
//!     |  barrier)                  v
//!     |                  raft/ Replica --- peers on 2380 (raft/network out, server/peer in)
//!     |                     |  log: raft/log_store (group fsync) on raft/log_disk
//!     v                     v  committed entries
//!  Applied core <------- raft/state_machine (apply in log order, then publish)
//!   |- StateMachine (apply/): mvcc/ (key index + revision records), lease/, auth/
//!   |- visible revision, applied index, term, alarm/learner/auth flags
//!   '- watch/ hub --> watch streams (server/watch); watch/syncer feeds laggards from mvcc
//!     |
//!  storage/ (Backend trait: sled on disk, memory for tests)
//! ```
//!
//! Start-up builds the parts in dependency order (see [`node`]): the state machine, the
//! [`applied::Applied`] core over it, openraft with the state machine and the log, the
//! [`raft::Replica`], the services' [`server::context::Context`], the services. No part holds
//! one built after it.
//!
//! Modules:
//! - [`config`]: etcd's flags and `ETCD_*` variables; [`duration`]: Go's duration syntax.
//! - [`node`]: composition of one member (the only place that wires concrete parts).
//! - [`server`]: gRPC services and their access rules; [`http`]: HTTP endpoints and the gateway.
//! - [`applied`]: what the member has applied, shared by the writer and every reader.
//! - [`apply`]: commands and the state machine they change.
//! - [`raft`]: replication with openraft (log, apply loop, outgoing peer calls, membership,
//!   snapshots).
//! - [`mvcc`], [`lease`], [`watch`], [`auth`]: the cores.
//! - [`snapshot`]: snapshot files as etcd writes them (a bbolt file with etcd's buckets), for
//!   `etcdctl snapshot save|status|restore` and `keel-store snapshot restore`.
//! - [`tls`]: rustls on both ports.
//! - [`storage`]: backends. [`seams`]: randomness, clocks, dialing. [`types`]: typed IDs.
//!   [`error`]: the error table.
//!
//! Module graph (`a -> b`: `a` uses `b`; no circles, leaves last):
//!
//! ```text
//!  node    -> server http raft applied apply config auth mvcc storage seams types watch error
//!  http    -> server auth types error
//!  server  -> raft applied apply config auth mvcc snapshot tls seams types error
//!  snapshot -> raft apply auth mvcc storage error
//!  raft    -> applied apply auth config seams storage types error
//!  applied -> apply auth watch seams storage types error
//!  apply   -> auth lease mvcc storage types error
//!  config  -> auth tls duration
//!  auth    -> duration seams storage error
//!  lease   -> mvcc storage types error
//!  watch   -> mvcc seams types error
//!  mvcc    -> storage types error
//!  tls     -> seams
//!  error   -> storage
//!  storage, seams, types, duration: leaves
//! ```

pub mod applied;
pub mod apply;
pub mod auth;
pub mod config;
pub mod duration;
pub mod error;
pub mod http;
pub mod lease;
pub mod mvcc;
pub mod node;
pub mod raft;
pub mod seams;
pub mod server;
pub mod snapshot;
pub mod storage;
pub mod tls;
pub mod types;
pub mod watch;
