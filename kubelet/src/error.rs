//! The crate's one error type. Each variant says which party is at fault, because the pod worker
//! turns some of them into a container's waiting reason (the pod spec's fault) and retries others
//! (the apiserver's or the host's).

use std::path::PathBuf;

/// Everything that can go wrong in the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused or could not be reached; retried by the caller's loop.
    #[error("apiserver: {0}")]
    Kube(#[from] kube::Error),
    /// A file or directory under the kubelet's root dir (or a host file it reads) failed.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A host program the runtime drives (`ip`) failed; the message is its stderr.
    #[error("{program} {args}: {stderr}")]
    Command {
        /// The program.
        program: String,
        /// Its arguments, space-separated.
        args: String,
        /// What it printed.
        stderr: String,
    },
    /// The pod spec asks for something the kubelet cannot do (missing command, unknown volume
    /// source, a configMap key that does not exist): `reason` becomes the container's waiting
    /// reason (`CreateContainerConfigError`, `CreateContainerError`), never a crash.
    #[error("{reason}: {message}")]
    PodSpec {
        /// The Kubernetes waiting reason.
        reason: &'static str,
        /// What is wrong, for the event and the status message.
        message: String,
    },
    /// The runtime could not do what was asked (no free pod IP, a namespace call failed).
    #[error("runtime: {0}")]
    Runtime(String),
    /// A record the kubelet wrote to disk could not be parsed back.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// A flag or manifest value could not be parsed.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which flag or field.
        what: String,
        /// Why.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// A pod-spec error with Kubernetes' `CreateContainerConfigError` reason.
    pub fn config(message: impl Into<String>) -> Error {
        Error::PodSpec { reason: "CreateContainerConfigError", message: message.into() }
    }
}
