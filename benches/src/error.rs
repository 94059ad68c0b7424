//! The crate's one error type (the library's parts; the binaries and the `load` workloads
//! report through anyhow).

/// What the density run's library parts can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the apiserver failed.
    #[error("apiserver: {0}")]
    Kube(#[from] kube::Error),
    /// Reading or writing a file.
    #[error("{what}: {source}")]
    Io {
        /// What was read or written.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The cluster did not get where it had to in time.
    #[error("{0}")]
    Timeout(String),
    /// Setting up or checking a benchmark (a client from a kubeconfig, seeding, a worker).
    #[error("{0}")]
    Setup(String),
    /// Drawing the plot.
    #[error("plot: {0}")]
    Plot(String),
}
