//! keel-benches: measuring Keel against etcd with the same client, and the control plane at
//! scale.
//!
//! ```text
//!   keel-load ──► load ──► report            (the store over gRPC)
//!   keel-cm-bench ─┐
//!   keel-density ──┴► controlplane ──► processes: store|etcd, apiserver, kubelet (N simulated
//!        │                                       nodes), scheduler, controller-manager
//!        └► density (plan) ─► density::run ─► promtext, startup, procstat ─► density::report, plot
//!   keel-overload ─► controlplane ─► overload (schedule) ─► overload::run ─► verdicts
//!   keel-authz-bench ─► authz (plan) ─► authz::run (store + one apiserver per mode) ─► authz::summary
//! ```
//!
//! - [`load`]: the workloads of the `keel-load` generator (put, range, txn, watch, lease,
//!   mixed), each driving any etcd v3 endpoint over gRPC and recording latencies in an HDR
//!   histogram.
//! - [`report`]: the human table and the one-JSON-line-per-run output, and the generator's own
//!   CPU use (so a run can show the generator was not the bottleneck).
//! - [`authz`]: the authorization benchmark (issue 19): AlwaysAllow against Node,RBAC over the
//!   same store, interleaved rounds, medians.
//! - [`controlplane`]: starting the whole control plane as processes and waiting for its nodes.
//! - [`density`]: the density/load run (issue 24): its plan, its async shell, its SLI report.
//! - [`overload`]: the overload test (issue 24): a steady create rate, 5× it, back; 429s, lost
//!   writes, live processes, the mutating p99's recovery.
//! - [`promtext`]: `apiserver_request_duration_seconds` from `/metrics`, intervals, quantiles.
//! - [`startup`]: pod startup latency and scheduler throughput from a pod watch.
//! - [`procstat`]: CPU and RSS of a process, the load average.
//! - [`plot`]: the density run's PNG.
//! - [`error`]: the library's error type.

pub mod authz;
pub mod controlplane;
pub mod density;
pub mod error;
pub mod load;
pub mod overload;
pub mod plot;
pub mod procstat;
pub mod promtext;
pub mod report;
pub mod startup;

pub use error::Error;
