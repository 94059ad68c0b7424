//! keel-store: an etcd v3 compatible key-value store.
//!
//! ```text
//!  clients (etcdctl, etcd client libraries, curl)
//!     |  gRPC + HTTP on one port
//!     v
//!  server/ (thin services) ---- http/ (health, metrics, JSON gateway)
//!     |  reads                 | mutations (Command)
//!     v                        v
//!  StateMachine <------- apply/writer (apply, append to wal/, group fsync, publish)
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
//! - [`apply`]: commands, the state machine, the group-commit writer.
//! - [`mvcc`], [`lease`], [`watch`]: the cores.
//! - [`wal`]: the write-ahead log where writes become durable.
//! - [`storage`]: backends. [`seams`]: randomness. [`types`]: typed IDs. [`error`]: the error table.

pub mod apply;
pub mod config;
pub mod error;
pub mod http;
pub mod lease;
pub mod mvcc;
pub mod node;
pub mod seams;
pub mod server;
pub mod storage;
pub mod types;
pub mod wal;
pub mod watch;
