//! The crate's one error type.

/// What can stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The flags do not make sense together.
    #[error("invalid flags: {0}")]
    Flags(String),
    /// The kubeconfig, the client or the serving certificate could not be set up.
    #[error(transparent)]
    Component(#[from] keel_component::Error),
    /// Leader election could not be set up.
    #[error(transparent)]
    Leader(#[from] keel_leader::Error),
    /// The serving port could not be opened.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
