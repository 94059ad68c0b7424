//! How MVCC state is laid out in the backend's single ordered byte map.
//!
//! | key | value |
//! |---|---|
//! | `k` + main (8 bytes BE) + sub (8 bytes BE) | kind byte (0 put, 1 delete) + `mvccpb.KeyValue` |
//! | `l` + lease ID (8 bytes BE) | granted TTL in seconds (8 bytes BE) |
//! | `m/<name>` | metadata (compacted revision, …), 8 bytes BE |
//!
//! Revisions are big-endian so the backend's byte order is revision order, and a history scan
//! is one range read.

use super::index::Rev;
use keel_proto::mvccpb::KeyValue;
use prost::Message;

/// First key of the revision records.
pub const REV_PREFIX: u8 = b'k';
/// First key of the lease records.
pub const LEASE_PREFIX: u8 = b'l';
/// Metadata key: the compacted revision.
pub const META_COMPACTED: &[u8] = b"m/compacted";

/// Backend key of a revision record.
pub fn rev_key(rev: Rev) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(REV_PREFIX);
    k.extend_from_slice(&(rev.main as u64).to_be_bytes());
    k.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    k
}

/// The revision of a record key, if it is one.
pub fn parse_rev_key(k: &[u8]) -> Option<Rev> {
    if k.len() != 17 || k[0] != REV_PREFIX {
        return None;
    }
    let main = u64::from_be_bytes(k[1..9].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(k[9..17].try_into().ok()?) as i64;
    Some(Rev { main, sub })
}

/// Encode a revision record.
pub fn encode_record(kv: &KeyValue, tombstone: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + kv.encoded_len());
    v.push(u8::from(tombstone));
    kv.encode(&mut v).unwrap_or_default();
    v
}

/// Decode a revision record into its key-value and tombstone flag.
pub fn decode_record(v: &[u8]) -> Option<(KeyValue, bool)> {
    let (&kind, rest) = v.split_first()?;
    let kv = KeyValue::decode(rest).ok()?;
    Some((kv, kind == 1))
}

/// Backend key of a lease record.
pub fn lease_key(id: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(LEASE_PREFIX);
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

/// An i64 as stored in metadata and lease records.
pub fn encode_i64(v: i64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// The inverse of [`encode_i64`].
pub fn decode_i64(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_sort_like_revisions() {
        let revs = [Rev { main: 1, sub: 0 }, Rev { main: 1, sub: 2 }, Rev { main: 2, sub: 0 }, Rev { main: 256, sub: 0 }];
        let keys: Vec<_> = revs.iter().map(|r| rev_key(*r)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for r in revs {
            assert_eq!(parse_rev_key(&rev_key(r)), Some(r));
        }
    }
}
