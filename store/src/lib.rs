//! keel-store: an etcd v3 compatible key-value store.
//!
//! ```text
//!  clients (etcdctl, etcd client libraries, curl)
//!     |  gRPC + HTTP on one port
//!     v
//!  server/ (thin services) ---- http/ (health, metrics, JSON gateway)
//!     |  reads (after a read     | mutations (Command)
//!     |  barrier)                v
//!     |                 raft/ Replica --- peers on 2380 (raft/peer, raft/network)
//!     |                    |  log: raft/log_store (group fsync)
//!     v                    v  committed entries
//!  StateMachine <------- raft/state_machine (apply in log order, publish)
//!   |- mvcc/  (key index + revision records)      |
//!   |- lease/                                     +--> watch/ hub --> watch streams
//!     |
//!  storage/ (Backend trait: sled on disk, memory for tests)
//! ```
//!
//! Modules:
//! - [`config`]: etcd's flags and `ETCD_*` variables.
//! - [`node`]: composition of one member (the only place that wires concrete parts).
//! - [`server`]: gRPC services; [`http`]: HTTP endpoints and the JSON gateway.
//! - [`apply`]: commands and the state machine they change.
//! - [`raft`]: replication with openraft (log, apply loop, peers, membership, snapshots).
//! - [`mvcc`], [`lease`], [`watch`], [`auth`]: the cores.
//! - [`tls`]: rustls on both ports.
//! - [`storage`]: backends. [`seams`]: randomness. [`types`]: typed IDs. [`error`]: the error table.

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
pub mod storage;
pub mod tls;
pub mod types;
pub mod watch;
