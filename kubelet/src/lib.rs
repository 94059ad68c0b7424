//! `keel-kubelet`: Keel's node agent. It registers its Node, heartbeats through a Lease, runs
//! the pods bound to it through a [`runtime::Runtime`], probes them, reports their status, and
//! serves their logs and exec on port 10250.
//!
//! ```text
//!            apiserver (kube::Client)
//!   ┌───────────┬──────────┴────────────┬────────────────────┐
//!   │ Node, Lease, node status          │ pods (one watch)    │ pod status, events, mirror pods
//!   ▼                                    ▼                     ▲
//!  node::agent ─ conditions (pure)   pod::manager::Feed ──▶ node::pods (desired set, eviction,
//!                                                             static pods) ──▶ pod::manager
//!                                                                              │ one per pod
//!                                                                              ▼
//!                 pod::status, qos, backoff, probe,   ◀──────── pod::worker ── pod::prober
//!                 eviction, env, volumes (pure)                   │
//!                                                                 ▼
//!                               runtime::Runtime ── linux (shim: namespaces, cgroups, bridge)
//!                                                └─ simulated (annotations; 1,000 nodes/process)
//!  server (HTTPS :10250): /containerLogs /exec (WebSocket v5) /stats/summary /pods /healthz /metrics
//! ```
//!
//! Modules: [`node`] (agent, pods loop, conditions, host), [`pod`] (cores and shells),
//! [`runtime`] (the seam, Linux and simulated), [`server`], [`logs`] (CRI log files),
//! [`events`], [`metrics`], [`clock`] (wall-time seam), [`error`].

pub mod clock;
pub mod error;
pub mod events;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod pod;
pub mod runtime;
pub mod server;
