//! `keel-leader`: leader election over a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it for kube-scheduler and kube-controller-manager, plus the
//! fencing rule client-go leaves to its callers.
//!
//! ```text
//!   Elector::run (one task)                       Leadership (clone-able handle)
//!   every retryPeriod:                            is_leader()  ← check before every act
//!     GET Lease ──► decide::observe ──► decide::decide     holder(), transitions()
//!        │                                 │               changed().await
//!        │          Create / Renew / TakeOver / Follow
//!        └──► create / replace (resourceVersion-guarded) ──► renewed_at = send time
//!   on shutdown: stop leading, then release (empty holder)
//! ```
//!
//! The rule that makes two leaders impossible: a leader acts only while
//! `now < last renewal sent + renewDeadline` ([`may_act`]), and a follower takes over only after
//! the record stayed unchanged for `leaseDuration` from when it *saw* it. With
//! `renewDeadline < leaseDuration` (validated) the leader has stopped before anyone may start.
//! The margin (`leaseDuration − renewDeadline`, 5 s by default) is what an act already sent may
//! take to land.
//!
//! Modules: [`mod@decide`] (pure decisions, table-tested), [`config`] (which Lease, the three
//! durations, their validation), [`elector`] (the loop and the handle).
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> Result<(), keel_leader::Error> {
//! use std::sync::Arc;
//! let config = keel_leader::Config::new("kube-system", "kube-controller-manager", "host_1234");
//! let (elector, leadership) = keel_leader::Elector::new(client, config, Arc::new(keel_leader::SystemClock))?;
//! tokio::spawn(elector.run(std::future::pending()));
//! if leadership.is_leader() { /* act */ }
//! # Ok(()) }
//! ```

pub mod config;
pub mod decide;
pub mod elector;

pub use config::Config;
pub use decide::{Decision, Observed, Record, decide, may_act, observe};
pub use elector::{Elector, Leadership};

/// Wall time, for the Lease's `acquireTime`/`renewTime` (informational: expiry is judged on
/// the monotonic clock). The composition root chooses the implementation.
pub trait Clock: Send + Sync + 'static {
    /// The current wall time.
    fn now(&self) -> jiff::Timestamp;
}

/// The machine's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// What can go wrong in the election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The durations or names are unusable (client-go's messages).
    #[error("invalid leader election settings: {0}")]
    Config(String),
    /// A request about the Lease failed (other than the conflicts the election expects).
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// What the client said.
        #[source]
        source: kube::Error,
    },
}
