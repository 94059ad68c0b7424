//! The container runtime seam. The pod worker decides *what* should run; a [`Runtime`] makes it
//! so and reports what runs. Two implementations:
//!
//! - [`linux`]: each container is the host program its `command` names, in new PID, mount, UTS
//!   and IPC namespaces, in the pod's network namespace on a bridge, under cgroup limits; it
//!   records every container run on disk so a restarted kubelet finds (adopts) them.
//! - [`simulated`]: no processes; containers "run" as their pod's `sim.keel.dev/*` annotations
//!   say, so one process can host hundreds of nodes.
//!
//! Invariants every implementation keeps: `start_container` never starts a run whose id
//! (pod uid, name, attempt) already exists; `containers` reports every run not yet removed, in
//! attempt order, including exited ones (their exit code and reason survive a kubelet restart);
//! `stop_container` returns only after the run has exited.

pub mod cgroup;
pub mod ipam;
pub mod linux;
pub mod simulated;
mod types;

pub use types::*;

use crate::error::Result;
use crate::pod::probe::{Outcome, ProbeKind};
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// What this runtime can do on this host; anything missing is said once at start and in the
/// node's Ready condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Volumes are materialized as files (false for the simulated runtime).
    pub volumes: bool,
    /// Containers run their `command` as a host program, so one without `command` cannot run.
    pub needs_command: bool,
    /// What is missing on this host, one phrase each (`no cgroup pids controller`).
    pub degraded: Vec<String>,
}

/// A process started inside a container for `/exec` or an exec probe.
pub struct ExecProcess {
    /// Its stdin, when asked for.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its stdout.
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// Its stderr.
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
    /// Resolves to its exit code when it ends.
    pub wait: BoxFuture<'static, Result<i32>>,
    /// Kills it (a timed-out probe, a closed stream).
    pub kill: Box<dyn FnOnce() + Send>,
}

/// A container runtime.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// What works on this host.
    fn features(&self) -> Features;

    /// Sets up (or finds) the pod's sandbox: its network namespace and IP. Idempotent.
    async fn ensure_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox>;

    /// The sandbox of `pod`, if it exists.
    async fn sandbox(&self, pod: &PodUid) -> Option<Sandbox>;

    /// Starts one container run.
    async fn start_container(&self, cfg: &ContainerConfig) -> Result<ContainerId>;

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; returns once it has exited.
    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<()>;

    /// Forgets an exited run (its records, cgroups and log stay only as long as this).
    async fn remove_container(&self, id: &ContainerId) -> Result<()>;

    /// Every run of `pod`'s containers, oldest attempt first per container.
    async fn containers(&self, pod: &PodUid) -> Result<Vec<ContainerRecord>>;

    /// Every pod the runtime holds anything for (to clean up pods the API no longer has).
    async fn pods(&self) -> Result<Vec<PodUid>>;

    /// Removes the pod's sandbox and everything left of it; its containers must have exited.
    async fn remove_pod(&self, pod: &PodUid) -> Result<()>;

    /// Runs one probe check against a running container.
    async fn probe(&self, id: &ContainerId, kind: ProbeKind, action: &ProbeAction, timeout: Duration) -> Outcome;

    /// Starts `argv` inside a running container (its namespaces and root).
    async fn exec(&self, id: &ContainerId, argv: &[String], stdin: bool, tty: bool) -> Result<ExecProcess>;

    /// Resource use of one running container.
    async fn usage(&self, id: &ContainerId) -> Option<Usage>;

    /// The log file of a container run, when this runtime keeps logs.
    fn log_path(&self, pod: &PodRef, name: &str, attempt: u32) -> Option<std::path::PathBuf>;
}
