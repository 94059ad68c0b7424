//! `keel-scheduler`: assigns pods to nodes through keel-apiserver, as kube-scheduler's default
//! profile does, with Lease-based leader election so several replicas can run and exactly one
//! acts.
//!
//! ```text
//!            keel-apiserver (list/watch pods, nodes · POST pods/binding · PATCH pods/status · events)
//!                ▲      │                                        ▲
//!   informer ────┘      ▼                                        │
//!   (reflectors) ──Update──► driver (one task) ──────────────────┘ binder / events (tasks)
//!                              │  cache (nodes + assumed pods)
//!                              │  queue (active / backoff / unschedulable)
//!                              └─ schedule (plugins → score → select) ─ preempt
//!   keel-leader ── Leadership::is_leader() checked before every bind and eviction
//!   http: /healthz /readyz /metrics
//! ```
//!
//! Pure cores (no I/O, table-tested): [`quantity`], [`resources`], [`pod`], [`node`],
//! [`plugins`] (one module per kube-scheduler plugin), [`score`], [`schedule`],
//! [`message`], [`preempt`], [`queue`], [`cache`].
//! Shell: [`informer`], [`driver`], [`binder`], [`events`], [`metrics`], [`flags`]; the
//! endpoints, the client and the signals come from `keel-component`.
//! The composition root is `main.rs`: it alone builds the `kube::Client`, the clock and the
//! seeded randomness.

pub mod binder;
pub mod cache;
pub mod driver;
pub mod error;
pub mod events;
pub mod flags;
pub mod informer;
pub mod message;
pub mod metrics;
pub mod node;
pub mod plugins;
pub mod pod;
pub mod preempt;
pub mod quantity;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod score;

pub use error::Error;
