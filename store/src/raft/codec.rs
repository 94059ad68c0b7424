//! Binary encoding of log entries (for the log file and AppendEntries), and JSON for openraft's
//! small structures. An entry is `[term u64][index u64][kind u8][payload]`: a command's bytes as
//! they are, a membership as JSON, a blank as nothing.

use super::types::{LogCmd, typ};
use bytes::{Buf, BufMut, Bytes};
use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;

const BLANK: u8 = 0;
const NORMAL: u8 = 1;
const MEMBERSHIP: u8 = 2;

/// Encode one entry.
pub fn encode_entry(e: &typ::Entry, out: &mut Vec<u8>) {
    out.put_u64(e.log_id.leader_id.term);
    out.put_u64(e.log_id.index);
    match &e.payload {
        EntryPayload::Blank => out.put_u8(BLANK),
        EntryPayload::Normal(cmd) => {
            out.put_u8(NORMAL);
            out.extend_from_slice(&cmd.0);
        }
        EntryPayload::Membership(m) => {
            out.put_u8(MEMBERSHIP);
            // Serializing a membership of plain strings and integers cannot fail.
            out.extend_from_slice(&serde_json::to_vec(m).unwrap_or_default());
        }
    }
}

/// Encode one entry into a fresh buffer.
pub fn entry_bytes(e: &typ::Entry) -> Bytes {
    let mut out = Vec::with_capacity(17 + payload_len(e));
    encode_entry(e, &mut out);
    Bytes::from(out)
}

fn payload_len(e: &typ::Entry) -> usize {
    match &e.payload {
        EntryPayload::Normal(cmd) => cmd.0.len(),
        _ => 64,
    }
}

/// Decode one entry; `raw` is sliced, not copied, for the command bytes.
pub fn decode_entry(mut raw: Bytes) -> io::Result<typ::Entry> {
    if raw.len() < 17 {
        return Err(invalid("a log entry shorter than its header"));
    }
    let term = raw.get_u64();
    let index = raw.get_u64();
    let payload = match raw.get_u8() {
        BLANK => EntryPayload::Blank,
        NORMAL => EntryPayload::Normal(LogCmd(raw)),
        MEMBERSHIP => EntryPayload::Membership(serde_json::from_slice(&raw).map_err(|e| invalid(&format!("membership entry: {e}")))?),
        k => return Err(invalid(&format!("unknown log entry kind {k}"))),
    };
    Ok(typ::Entry::new(log_id(term, index), payload))
}

/// A log id from its term and index.
pub fn log_id(term: u64, index: u64) -> typ::LogId {
    typ::LogId::new_term_index(term, index)
}

/// JSON for openraft's structures.
pub fn to_json<T: Serialize>(t: &T) -> Vec<u8> {
    // openraft's message types are plain data; serialization does not fail.
    serde_json::to_vec(t).unwrap_or_default()
}

/// Parse JSON produced by [`to_json`].
pub fn from_json<T: DeserializeOwned>(raw: &[u8]) -> io::Result<T> {
    serde_json::from_slice(raw).map_err(|e| invalid(&format!("undecodable peer message: {e}")))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::PeerInfo;
    use crate::types::MemberId;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn entries_round_trip() {
        let members = typ::Membership::new(
            vec![BTreeSet::from([MemberId(1), MemberId(2)])],
            BTreeMap::from([(MemberId(1), PeerInfo::default()), (MemberId(2), PeerInfo::default())]),
        )
        .unwrap();
        for payload in [EntryPayload::Blank, EntryPayload::Normal(LogCmd(Bytes::from_static(b"cmd"))), EntryPayload::Membership(members)] {
            let e = typ::Entry::new(log_id(3, 9), payload);
            let back = decode_entry(entry_bytes(&e)).unwrap();
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
        assert!(decode_entry(Bytes::from_static(b"short")).is_err());
    }
}
