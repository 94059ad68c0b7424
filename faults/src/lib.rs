//! `keel-faults`: the control plane's guarantees, checked on what a cluster under faults
//! actually did — and the real-process fault test that produces it (issue 23, item 3).
//!
//! ```text
//!           ┌────────────── real (feature "real", default) ───────────────┐
//!  seed ──▶ schedule ──▶ inject: kill -9 / SIGSTOP / iptables partitions   │
//!   │                      │   of a `keel up` cluster's parts (cluster)   │
//!   └────▶ workload ──▶ kubectl / kube-rs writes ──▶ acknowledged writes  │
//!                          │                                             │
//!        recorder: watch /registry/ from revision 1 ──▶ store events     │
//!        logs: components' acts (holder, term)  ───────▶ acts           │
//!           └──────────────────────────┬──────────────────────────────┘
//!                                      ▼
//!                   history (neutral: no processes, no I/O)
//!                                      ▼
//!            locate ──▶ check::* (one guarantee per file) ──▶ violations
//! ```
//!
//! The checkers, [`history`], [`locate`], [`objects`], [`schedule`] and [`workload`] are
//! pure: the simulation (sim/) builds the same [`history::History`] from its own probes and
//! reuses them with `default-features = false`. Everything that touches processes, sockets,
//! files or the clock lives in `real` (feature `real`).
//!
//! Modules: [`history`] (the neutral record), [`objects`] (fields of stored objects, kube's
//! defaults and arithmetic), [`locate`] (acts placed in revision order), [`check`] (the
//! checkers), [`schedule`] (seeded fault schedules), [`workload`] (seeded workload plans),
//! [`rng`] (the seeded generator both use), `real` (the harness).

pub mod check;
pub mod history;
pub mod locate;
pub mod objects;
pub mod rng;
pub mod schedule;
pub mod workload;

#[cfg(feature = "real")]
pub mod real;

#[cfg(test)]
mod testutil;

pub use check::{Bounds, all};
pub use history::{AckedWrite, Act, ActKind, Component, Expect, History, HolderId, Op, Revision, StoreEvent, Term, Violation};
