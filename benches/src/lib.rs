//! keel-benches: measuring Keel against etcd with the same client.
//!
//! - [`load`]: the workloads of the `keel-load` generator (put, range, txn, watch, lease,
//!   mixed), each driving any etcd v3 endpoint over gRPC and recording latencies in an HDR
//!   histogram.
//! - [`report`]: the human table and the one-JSON-line-per-run output, and the generator's own
//!   CPU use (so a run can show the generator was not the bottleneck).

pub mod load;
pub mod report;
