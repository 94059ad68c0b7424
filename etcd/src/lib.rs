//! `keel-etcd`: the workspace's one Rust client of the etcd v3 API. The apiserver talks to the
//! store only through it, the benches build their Txns with it, and the simulation can plug
//! turmoil's TCP in through its [`Dial`] seam.
//!
//! ```text
//!  Client ── kv / watch / lease (tonic, one HTTP/2 connection, deadlines, keepalive)
//!    │            │
//!    │            └─ Failover (tower connector): dials endpoint after endpoint through Dial
//!    │                 └─ Dial: Tcp here; turmoil's TCP in sim/; an in-memory pipe in tests
//!    ├─ txn      pure builders: prefix_end, compare_mod, put_if, delete_if, outcome
//!    ├─ range    one page, or every key under a prefix at one revision (paged)
//!    └─ watch    a watch that resumes from its last revision when the stream breaks
//! ```
//!
//! Modules: [`dial`] (the connector seam and endpoint failover), [`client`] (the calls),
//! [`txn`] (guarded Txn builders, no I/O), [`watch`] (resumable watches), [`error`].
//!
//! The module graph is a tree: `client` uses `dial`, `txn`, `error`; `watch` uses `client`;
//! `txn`, `dial` and `error` use nothing of the crate.

pub mod client;
pub mod dial;
pub mod error;
pub mod txn;
pub mod watch;

pub use client::{Client, Config, Page, WatchStream};
pub use dial::{Dial, Io, Tcp};
pub use error::Error;
pub use keel_proto as proto;
pub use keel_proto::mvccpb::KeyValue;
pub use txn::{Guarded, prefix_end};
pub use watch::{Resumable, WatchItem};
