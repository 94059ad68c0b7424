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

    /// True when a write may have happened although it failed: anything but the apiserver's
    /// definite refusal (a 4xx Status). A 5xx (etcd's "request timed out" through the
    /// apiserver, a 504 Timeout) or a connection that broke after the request went out leaves
    /// the object possibly written — kube's Job controller treats such a create as made.
    pub fn is_indeterminate(&self) -> bool {
        match self {
            Error::Api(kube::Error::Api(s)) => !(400..500).contains(&s.code),
            Error::Api(_) => true,
            Error::Partial { first, .. } => first.is_indeterminate(),
            Error::Conflict(_) | Error::Invalid { .. } | Error::NotSynced(_) | Error::Fenced { .. } => false,
        }
    }

    /// True when the server refused a create because the namespace is being deleted
    /// (`NamespaceTerminating` cause, as kube-apiserver's NamespaceLifecycle admission says).
    pub fn is_namespace_terminating(&self) -> bool {
        matches!(self, Error::Api(kube::Error::Api(s)) if s.code == 403 && s.message.contains("because it is being terminated"))
    }
}

/// Results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str) -> Error {
        Error::Api(kube::Error::Api(kube::core::Status::failure("m", reason).with_code(code).boxed()))
    }

    #[test]
    fn only_a_definite_refusal_means_the_write_did_not_happen() {
        let table = [
            (status(503, "ServiceUnavailable"), true),
            (status(504, "Timeout"), true),
            (status(500, "InternalError"), true),
            (status(403, "Forbidden"), false),
            (status(409, "AlreadyExists"), false),
            (status(422, "Invalid"), false),
            (status(429, "TooManyRequests"), false),
            (Error::Fenced { identity: "x".into() }, false),
            (Error::NotSynced("pods"), false),
        ];
        for (e, want) in table {
            assert_eq!(e.is_indeterminate(), want, "{e}");
        }
    }
}
