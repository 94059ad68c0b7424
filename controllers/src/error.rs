//! The crate's one error type. A reconcile that returns an error is retried with per-key
//! exponential backoff by its work queue; none of these ever stops the process.

use thiserror::Error;

/// Why a reconcile (or the manager) failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The apiserver answered with an error or could not be reached.
    #[error("apiserver: {0}")]
    Api(#[from] kube::Error),
    /// Someone else wrote the object first (HTTP 409): re-read and try again.
    #[error("conflict writing {0}")]
    Conflict(String),
    /// An object's spec cannot be acted upon (bad selector, unknown strategy…); reported as an
    /// Event on the object, retried only when the object changes.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// Which object.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// A cache the reconcile needs has not finished its first list yet.
    #[error("cache of {0} not synced")]
    NotSynced(&'static str),
    /// A write was not sent: this instance does not hold the leader Lease, or its last
    /// renewal is older than the renew deadline (see `fence`).
    #[error("not the leader: {identity} may not write now (lease not held or not renewed within the renew deadline)")]
    Fenced {
        /// This instance's identity.
        identity: String,
    },
    /// Some of a batch of writes failed; the first error is kept.
    #[error("{failed} of {attempted} {what} failed: {first}")]
    Partial {
        /// What was written (e.g. "pod creations").
        what: &'static str,
        /// How many failed.
        failed: usize,
        /// How many were tried.
        attempted: usize,
        /// The first failure.
        first: Box<Error>,
    },
}

impl Error {
    /// True for a 404 from the apiserver.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api(kube::Error::Api(s)) if s.code == 404)
    }

    /// True for a 409 from the apiserver (conflict or already exists).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_)) || matches!(self, Error::Api(kube::Error::Api(s)) if s.code == 409)
    }

    /// True for a 409 AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists")
    }

    /// True when the server refused a create because the namespace is being deleted
    /// (`NamespaceTerminating` cause, as kube-apiserver's NamespaceLifecycle admission says).
    pub fn is_namespace_terminating(&self) -> bool {
        matches!(self, Error::Api(kube::Error::Api(s)) if s.code == 403 && s.message.contains("because it is being terminated"))
    }
}

/// Results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
