//! openraft's type configuration for Keel, and the few types it carries: the log entry payload
//! ([`LogCmd`]), the apply result ([`ApplyReply`]), a member's addresses ([`PeerInfo`]) and the
//! snapshot handle ([`SnapshotFile`]). Nothing outside `raft/` names openraft's generics.

use crate::apply::Outcome;
use crate::error::Error;
use crate::types::MemberId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A log entry's payload: an encoded [`crate::apply::Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCmd(pub Bytes);

impl fmt::Display for LogCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command({} bytes)", self.0.len())
    }
}

/// What applying an entry produced, handed to the proposer on the same member. Never sent:
/// it serializes as nothing (openraft only requires that it could be).
#[derive(Debug, Default)]
pub struct ApplyReply(pub Option<Result<Outcome, Error>>);

impl Serialize for ApplyReply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for ApplyReply {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(ApplyReply(None))
    }
}

/// A member's name and addresses, kept in the Raft membership so every member knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `--name` (empty until the member has started and published it).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until published).
    pub client_urls: Vec<String>,
}

/// A snapshot's data: a file in Keel's snapshot format ([`super::snapshot`]).
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// Where it is.
    pub path: PathBuf,
}

openraft::declare_raft_types!(
    /// Keel's Raft types: member IDs as node IDs, and standard Raft leader IDs (one leader per
    /// term, as etcd's `raft_term` promises).
    pub TypeConfig:
        D = LogCmd,
        R = ApplyReply,
        NodeId = MemberId,
        Node = PeerInfo,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, MemberId>,
        AsyncRuntime = Runtime,
);

/// Tokio, with openraft's randomness (election timeouts, tick jitter) drawn from a seed the
/// member is given ([`crate::seams::Seams::rng`]), so a simulation replays exactly. Openraft
/// keeps the seed task-local: [`super::Raft`] must be created inside [`Runtime::scope`]; every task
/// openraft spawns inherits a seed derived from it.
pub type Runtime = openraft::rt::deterministic_rng::DeterministicRng<openraft_rt_tokio::TokioRuntime>;

/// Short names for openraft's types under [`TypeConfig`].
pub mod typ {
    use super::TypeConfig;
    use openraft::alias;

    pub type LogId = alias::LogIdOf<TypeConfig>;
    pub type Vote = alias::VoteOf<TypeConfig>;
    pub type Entry = alias::EntryOf<TypeConfig>;
    pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
    pub type Snapshot = alias::SnapshotOf<TypeConfig, super::SnapshotFile>;
    pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
    pub type Membership = openraft::Membership<crate::types::MemberId, super::PeerInfo>;
    pub type RaftError<E = openraft::errors::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
    pub type RpcError = openraft::errors::RPCError<TypeConfig>;
    pub type StreamingError = openraft::errors::StreamingError<TypeConfig>;
    pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
    pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
    pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
    pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
    pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
    pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
    pub type Metrics = openraft::RaftMetrics<TypeConfig>;
}
