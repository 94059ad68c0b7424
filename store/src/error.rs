//! The store's one error type, and the one place that maps it to gRPC status codes with etcd's
//! exact messages (`etcdserver/api/v3rpc/rpctypes/error.go`). Clients such as etcdctl and
//! kube-apiserver match on these strings, so they must not be reworded.
//!
//! [`Error`]'s variants are what a client is told; all but one are etcd's. The one left,
//! [`Error::Internal`], is this member's own failure, of a kind named by [`Internal`]. Applying a
//! committed entry keeps them apart by type: [`crate::apply::StateMachine::apply`] answers a
//! client error inside its result and a failure of the member as [`Fatal`], which stops Raft
//! on this member (its state machine cannot go on without the entry applied).

use tonic::{Code, Status};

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A request named a key but the key was empty.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a non-empty value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn branch or compare list longer than `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn writes one key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A request larger than `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A read or watch below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The backend quota is exceeded (NOSPACE alarm).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The named lease does not exist (or already expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// LeaseGrant with an ID that is in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// LeaseGrant with a TTL above etcd's maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A watch create with a client-chosen ID already used on the stream.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateWatchId,
    /// A watch create whose range holds no key (`key >= range_end`).
    #[error("mvcc: watcher range is empty")]
    WatcherRangeEmpty,
    /// The member is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The request did not finish within its deadline.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// No leader is known (elections in progress, or no quorum).
    #[error("etcdserver: no leader")]
    NoLeader,
    /// A request only the leader can serve reached another member.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// MoveLeader to a member that cannot lead (a learner, or this leader itself).
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MemberAdd or MemberUpdate with no peer URLs or a malformed one (etcd's `types.NewURLs`).
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// MemberAdd with peer URLs another member has.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// MemberAdd whose ID (etcd's hash of the peer URLs and the second) a member already has.
    #[error("etcdserver: member ID already exist")]
    MemberIdExists,
    /// MemberPromote of a voting member.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// MemberPromote of a learner that has not caught up with the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// MemberAdd of a second learner.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// A membership change the cluster refused (e.g. one is already in progress).
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    /// An RPC a learner does not serve.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// An error another member answered with that has no variant here, passed on as it came.
    #[error("{1}")]
    Remote(Code, String),
    /// The member named in a request is not part of the cluster.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// Election.Leader / Observe on an election nobody leads.
    #[error("election: no leader")]
    ElectionNoLeader,
    /// Proclaim or Resign by a caller that does not lead.
    #[error("election: not leader")]
    ElectionNotLeader,
    /// Proclaim or Resign without a leader key.
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// AuthEnable without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while `root` lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of an existing user.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// A user name was needed but empty (also: a request without credentials while auth is on).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// The named user does not exist.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd of an existing role.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// The named role does not exist.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// A role name was needed but empty.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Authenticate with a wrong user or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Authenticate as a user added with `no_password`. etcd has no gRPC status for its
    /// `auth.ErrNoPasswordUser`, so it answers Unknown with the auth store's own words.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// RoleGrantPermission without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// The caller may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not hold.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not hold.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is off.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// An unknown, expired, revoked or badly signed token.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// A change that would lock everybody out (deleting `root` while auth is on, …).
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The auth store changed between the permission check and the apply.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// The RPC exists in etcd's API but Keel does not serve it yet.
    #[error("{0} is not implemented in Keel yet")]
    Unimplemented(&'static str),
    /// A malformed request that etcd would reject without a dedicated message.
    #[error("{0}")]
    InvalidArgument(String),
    /// This member failed at something that is not the client's doing.
    #[error("etcdserver: {0}")]
    Internal(#[from] Internal),
}

/// What failed inside the member.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Internal {
    /// The storage backend failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A stored record (log entry, revision record, lease, membership, auth store) does not
    /// decode, or one that must exist is missing.
    #[error("storage error: {0}")]
    Corrupt(String),
    /// Raft stopped on this member (its log failed, or it is shutting down).
    #[error("raft stopped: {0}")]
    RaftStopped(String),
    /// The leader answered a forwarded request with something that does not fit it.
    #[error("unexpected answer from the leader: {0}")]
    Peer(&'static str),
    /// A command produced the output of another kind of command.
    #[error("a command produced the wrong kind of output")]
    WrongOutput,
    /// An applied entry handed its proposer no result.
    #[error("an applied entry produced no result")]
    NoOutput,
    /// A blocking task (a hash, a backend rewrite) panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(String),
    /// The system's secure random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// A password could not be hashed.
    #[error("hashing a password: {0}")]
    Hash(String),
    /// A server (client, peer or metrics port) stopped with an error.
    #[error("serving failed: {0}")]
    Serve(String),
}

/// A failure while applying a committed entry: the state machine cannot go past it, so Raft
/// stops on this member (openraft is told through its storage error).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("applying a committed entry failed: {0}")]
pub struct Fatal(pub Internal);

impl Error {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::EmptyKey
            | Error::KeyNotFound
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::TooManyOps
            | Error::DuplicateKey
            | Error::RequestTooLarge
            | Error::MemberBadUrls
            | Error::InvalidArgument(_)
            | Error::UserEmpty
            | Error::RoleEmpty
            | Error::AuthFailed
            | Error::PermissionNotGiven
            | Error::InvalidAuthMgmt
            | Error::AuthOldRevision => Code::InvalidArgument,
            Error::RootUserNotExist
            | Error::RootRoleNotExist
            | Error::UserAlreadyExist
            | Error::UserNotFound
            | Error::RoleAlreadyExist
            | Error::RoleNotFound
            | Error::RoleNotGranted
            | Error::PermissionNotGranted
            | Error::AuthNotEnabled => Code::FailedPrecondition,
            Error::PermissionDenied => Code::PermissionDenied,
            Error::InvalidAuthToken => Code::Unauthenticated,
            Error::NoPasswordUser => Code::Unknown,
            Error::Compacted | Error::FutureRevision | Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::NoSpace => Code::ResourceExhausted,
            Error::LeaseNotFound | Error::MemberNotFound => Code::NotFound,
            Error::LeaseExists => Code::FailedPrecondition,
            Error::DuplicateWatchId | Error::WatcherRangeEmpty => Code::InvalidArgument,
            Error::Stopped | Error::Timeout | Error::NoLeader | Error::UnhealthyCluster | Error::NotSupportedForLearner => {
                Code::Unavailable
            }
            Error::NotLeader
            | Error::BadLeaderTransferee
            | Error::PeerUrlExists
            | Error::MemberIdExists
            | Error::MemberNotLearner
            | Error::LearnerNotReady
            | Error::TooManyLearners => Code::FailedPrecondition,
            Error::Remote(code, _) => *code,
            Error::Unimplemented(_) => Code::Unimplemented,
            // etcd's election server returns these as plain errors, which gRPC reports as Unknown.
            Error::ElectionNoLeader | Error::ElectionNotLeader | Error::MissingLeaderKey => Code::Unknown,
            Error::Internal(_) => Code::Internal,
        }
    }
}

/// Errors that carry no data, for recognising them in another member's answer.
const PLAIN: &[Error] = &[
    Error::EmptyKey,
    Error::KeyNotFound,
    Error::ValueProvided,
    Error::LeaseProvided,
    Error::TooManyOps,
    Error::DuplicateKey,
    Error::RequestTooLarge,
    Error::Compacted,
    Error::FutureRevision,
    Error::NoSpace,
    Error::LeaseNotFound,
    Error::LeaseExists,
    Error::LeaseTtlTooLarge,
    Error::Stopped,
    Error::Timeout,
    Error::NoLeader,
    Error::NotLeader,
    Error::BadLeaderTransferee,
    Error::MemberBadUrls,
    Error::PeerUrlExists,
    Error::MemberIdExists,
    Error::MemberNotLearner,
    Error::LearnerNotReady,
    Error::TooManyLearners,
    Error::UnhealthyCluster,
    Error::NotSupportedForLearner,
    Error::MemberNotFound,
    Error::RootUserNotExist,
    Error::RootRoleNotExist,
    Error::UserAlreadyExist,
    Error::UserEmpty,
    Error::UserNotFound,
    Error::RoleAlreadyExist,
    Error::RoleNotFound,
    Error::RoleEmpty,
    Error::AuthFailed,
    Error::NoPasswordUser,
    Error::PermissionNotGiven,
    Error::PermissionDenied,
    Error::RoleNotGranted,
    Error::PermissionNotGranted,
    Error::AuthNotEnabled,
    Error::InvalidAuthToken,
    Error::InvalidAuthMgmt,
    Error::AuthOldRevision,
];

impl Error {
    /// The error another member answered with (over the peer protocol).
    pub fn from_status(s: &Status) -> Error {
        PLAIN
            .iter()
            .find(|e| e.code() == s.code() && e.to_string() == s.message())
            .cloned()
            .unwrap_or_else(|| Error::Remote(s.code(), s.message().to_string()))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<crate::storage::StorageError> for Internal {
    fn from(e: crate::storage::StorageError) -> Internal {
        Internal::Storage(e.to_string())
    }
}

impl From<crate::storage::StorageError> for Error {
    fn from(e: crate::storage::StorageError) -> Error {
        Error::Internal(e.into())
    }
}

impl Error {
    /// A record that does not decode (or is missing).
    pub fn corrupt(what: impl std::fmt::Display) -> Error {
        Error::Internal(Internal::Corrupt(what.to_string()))
    }

    /// Raft stopped under the request.
    pub fn raft_stopped(why: impl std::fmt::Display) -> Error {
        Error::Internal(Internal::RaftStopped(why.to_string()))
    }

    /// A blocking task failed.
    pub fn task(e: impl std::fmt::Display) -> Error {
        Error::Internal(Internal::Task(e.to_string()))
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_etcd() {
        let table = [
            (Error::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (Error::FutureRevision, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (Error::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (Error::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (Error::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (Error::MemberBadUrls, Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
            (Error::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (Error::LeaseExists, Code::FailedPrecondition, "etcdserver: lease already exists"),
            (Error::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            (Error::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (Error::NotLeader, Code::FailedPrecondition, "etcdserver: not leader"),
            (Error::PermissionDenied, Code::PermissionDenied, "etcdserver: permission denied"),
            (Error::InvalidAuthToken, Code::Unauthenticated, "etcdserver: invalid auth token"),
            (Error::AuthFailed, Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
            (Error::NoPasswordUser, Code::Unknown, "auth: authentication failed, password was given for no password user"),
            (Error::AuthOldRevision, Code::InvalidArgument, "etcdserver: revision of auth store is old"),
            (Error::UserEmpty, Code::InvalidArgument, "etcdserver: user name is empty"),
            (Error::RootUserNotExist, Code::FailedPrecondition, "etcdserver: root user does not exist"),
            (
                Error::LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
        ];
        for (err, code, msg) in table {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), msg);
            assert_eq!(Error::from_status(&status).to_string(), msg, "recognised when another member answers with it");
        }
        let odd = Status::new(Code::Aborted, "something else");
        assert_eq!(Error::from_status(&odd), Error::Remote(Code::Aborted, "something else".into()));
    }
}
