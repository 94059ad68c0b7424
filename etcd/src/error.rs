//! The crate's one error type.

/// What a call to the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An endpoint is not `host:port` or `http://host:port`, or none was given.
    #[error("etcd endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The revision asked for is older than the store's compaction (etcd's OutOfRange,
    /// `required revision has been compacted`).
    #[error("required revision has been compacted")]
    Compacted,
    /// The revision asked for is newer than the store's (etcd's OutOfRange,
    /// `required revision is a future revision`).
    #[error("required revision is a future revision")]
    FutureRevision,
    /// The store answered with an error, or could not be reached before the deadline.
    #[error("etcd: {:?}: {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        match s.code() {
            // etcd answers both with OutOfRange; only the message tells them apart.
            tonic::Code::OutOfRange if s.message().contains("future revision") => Error::FutureRevision,
            tonic::Code::OutOfRange => Error::Compacted,
            _ => Error::Rpc(s),
        }
    }
}
