//! keel-sim: deterministic fault simulation of Keel clusters, and the checkers that judge what
//! clients saw.
//!
//! The harness:
//! - [`cluster`]: real `keel-store` members as turmoil hosts, each with a disk kept outside the
//!   host (what was synced survives a crash); [`disk`]: the Raft log's disk, whose syncs take
//!   simulated time and whose unsynced tail a crash tears;
//! - [`net`]: turmoil's TCP plugged into the store's seams and into tonic;
//! - [`workload`]: simulated clients (KV, Kubernetes-style, compaction, leases, liveness);
//!   [`watchers`]: informers, watchers of every shape, the reference, the final history;
//! - [`nemesis`]: the seeded fault schedule and how faults are applied and healed;
//! - [`membership`]: the admin client that adds, promotes and removes members during faults;
//! - [`invariants`]: Raft invariants checked after every step;
//! - [`record`]: what clients saw; [`run`]: one seed from start to verdict; [`checks`]: the
//!   verdict;
//! - [`cp`]: the `controlplane` scenario: apiservers, leader-elected schedulers and
//!   controller-managers and simulated kubelets on turmoil hosts, the Deployment workload and
//!   the control plane's checkers.
//!
//! The judges:
//! - [`history`]: operations as clients record them (invoke and return times; a call that timed
//!   out has no result: it may or may not have taken effect);
//! - [`model`]: etcd's KV as a sequential model, revisions and leases included;
//! - [`linearizable_kv`]: is the history linearizable against the model (Wing–Gong search with
//!   memoisation)?
//! - [`watch`]: the watch guarantees (ordered, unique, reliable, atomic, bookmarkable, prev_kv,
//!   resumable, events equal to the KV history), for watches of every shape;
//! - [`lost_writes`]: no acknowledged write is missing from the store's final history.

// Without tokio_unstable turmoil cannot seed each host's tokio RNG, and a seed would not replay
// (a RUSTFLAGS variable replaces the flags in .cargo/config.toml).
#[cfg(all(not(tokio_unstable), not(doc)))]
compile_error!("keel-sim needs --cfg tokio_unstable (set in .cargo/config.toml; do not override it with RUSTFLAGS)");

pub mod checks;
pub mod cluster;
#[cfg(feature = "controlplane")]
pub mod cp;
pub mod disk;
pub mod history;
pub mod invariants;
pub mod linearizable_kv;
pub mod lost_writes;
pub mod membership;
pub mod model;
pub mod nemesis;
pub mod net;
pub mod record;
pub mod run;
pub mod watch;
pub mod watchers;
pub mod workload;
