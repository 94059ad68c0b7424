//! The real-process harness: a `keel up` cluster on loopback, faults injected into its
//! processes, a workload through kubectl and kube-rs, and the store's history recorded from
//! revision 1 — turned into a [`crate::History`] for the checkers.
//!
//! ```text
//!  run::run(config)
//!    ├─ cluster::KeelUp        `keel up` (its supervisor restarts what we kill), keel-up.state → PIDs
//!    ├─ recorder::Recorder     keel-etcd watch of /registry/ from revision 1 → StoreEvents
//!    ├─ inject::Injector       schedule steps → kill -9 / SIGSTOP+SIGCONT / net::Partitions
//!    │    └─ net               iptables rules tagged per run, cgroup2 folders for kubelets; a guard removes them
//!    ├─ driver::Driver         workload steps → kubectl / kube-rs, acknowledged writes
//!    ├─ acts                   component log lines → Acts (holder, term)
//!    └─ metrics                /metrics act counters of each scheduler / controller-manager = its logged acts
//!  failover::measure(up)       kill -9 of each leader / an apiserver → time to the next act (keel-failover)
//! ```
//!
//! Everything started is stopped by PID, every iptables rule carries the run's tag and is
//! removed by a guard (on panic too), and runs are serialised by a lock file because `keel up`
//! takes fixed addresses (request faults-2).

// The harness waits on the real clock for real processes (tokio's clock; std's is disallowed).
pub mod acts;
pub mod cluster;
pub mod driver;
pub mod failover;
pub mod inject;
pub mod metrics;
pub mod net;
pub mod recorder;
pub mod run;

/// What can go wrong in the harness (not a violation: a violation is a finding).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another cluster holds the addresses `keel up` needs.
    #[error("{0} is in use: another keel up (or fault test) runs on this machine; stop it first")]
    Busy(String),
    /// A process or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not come up or recover in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// An external command (iptables, kubectl) failed where it must not.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr/stdout.
        output: String,
    },
    /// The store's history could not be recorded completely.
    #[error("the store history is incomplete: {0}")]
    History(String),
    /// The kube client could not be built or used.
    #[error("kube: {0}")]
    Kube(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, Error>;
