//! Newtypes for the numbers that flow between the store's modules, so a revision is never
//! passed where a lease ID was meant. The wire (etcd's protobufs) keeps plain integers; the
//! services convert at the edge.

use std::fmt;

/// A main MVCC revision: one per mutating request (a txn gets one), starting at 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub i64);

/// A lease ID as clients see it (etcdctl prints it in hex). Never 0 once granted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

/// A watcher's ID, unique within one Watch stream (-1 speaks for all of a stream's watchers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub i64);

/// A member's 64-bit ID, stable for the member's life; also openraft's node ID. Serialized as
/// the bare number, so the Raft log and stored memberships read as they did with `u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub u64);

/// A cluster's 64-bit ID, derived from its initial membership and token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u64);

/// The index of a Raft log entry (0: none yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(pub u64);

/// A Raft term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

impl Revision {
    /// The revision after this one.
    pub fn next(self) -> Revision {
        Revision(self.0 + 1)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::LowerHex for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_id_serializes_as_the_bare_number_also_as_a_map_key() {
        let id = MemberId(0x8e9e05c52164694d);
        assert_eq!(serde_json::to_string(&id).unwrap(), "10276657743932975437");
        let map = std::collections::BTreeMap::from([(id, 1)]);
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"10276657743932975437":1}"#);
        assert_eq!(serde_json::from_str::<std::collections::BTreeMap<MemberId, i32>>(&json).unwrap(), map);
        assert_eq!(id.to_string(), "8e9e05c52164694d", "etcdctl's hex");
    }
}
