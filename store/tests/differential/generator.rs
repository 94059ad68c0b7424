//! The seeded request generator: valid and invalid requests over a small key space with the
//! edge keys (`\0`, `\xff`, prefixes of each other), so writes collide, ranges overlap and txns
//! repeat keys.

use bytes::Bytes;
use keel_proto::etcdserverpb::compare::{CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
};

use super::watch::WatchOp;

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// SplitMix64: everything a run does follows from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One request to send to both servers.
#[derive(Clone, Debug)]
pub enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    Grant(LeaseGrantRequest),
    Revoke(LeaseRevokeRequest),
    TimeToLive(LeaseTimeToLiveRequest),
    Leases(LeaseLeasesRequest),
    /// A watch stream: creates, then progress and cancel requests.
    Watch(WatchOp),
    /// Maintenance.Status.
    Status,
}

/// Keys that collide: prefixes of each other, the smallest and largest bytes.
const KEYS: &[&[u8]] = &[b"\0", b"\0\0", b"a", b"a\0", b"ab", b"abc", b"b", b"ba", b"c", b"k/1", b"k/2", b"k/3", b"\xff", b"\xff\xff"];
/// Range ends: none, from-key, all, and ends around the keys.
const ENDS: &[&[u8]] = &[b"", b"", b"", b"\0", b"a", b"b", b"c", b"k0", b"\xff", b"\xff\xff\xff"];

/// What the generator knows about the servers' state (revisions grow the same on both).
#[derive(Default)]
pub struct Model {
    /// The newest revision a response reported.
    pub revision: i64,
    /// Leases granted and not revoked.
    pub leases: Vec<i64>,
    /// Lease IDs ever granted (revoked ones give "requested lease not found").
    pub next_lease: i64,
    /// The revision of the last successful compaction (0: none yet).
    pub compacted: i64,
    /// A compaction succeeded (maybe `Compact(0)`, which leaves `compacted` at 0).
    pub compacted_any: bool,
}

pub struct Gen {
    pub rng: Rng,
    pub model: Model,
    max_request_bytes: usize,
}

impl Gen {
    pub fn new(seed: u64, max_request_bytes: usize) -> Gen {
        Gen {
            rng: Rng::new(seed),
            model: Model { revision: 1, leases: Vec::new(), next_lease: 1000, compacted: 0, compacted_any: false },
            max_request_bytes,
        }
    }

    fn key(&mut self) -> Bytes {
        if self.rng.chance(2) {
            return Bytes::new(); // empty key: refused
        }
        Bytes::from_static(KEYS[self.rng.below(KEYS.len() as u64) as usize])
    }

    fn end(&mut self) -> Bytes {
        Bytes::from_static(ENDS[self.rng.below(ENDS.len() as u64) as usize])
    }

    fn value(&mut self) -> Bytes {
        match self.rng.below(20) {
            0 => Bytes::new(),
            1 if self.rng.chance(30) => Bytes::from(vec![b'x'; self.max_request_bytes + 1]), // too large
            2 => Bytes::from(vec![0u8, 255, 0]),
            _ => Bytes::from(format!("v{}", self.rng.below(1000))),
        }
    }

    /// A revision around the interesting ones: 0, negative, the past, the current, the future.
    fn revision(&mut self) -> i64 {
        let cur = self.model.revision;
        match self.rng.below(8) {
            0 => -1 - self.rng.below(3) as i64,
            1 => cur + 1 + self.rng.below(3) as i64,
            2 => cur,
            3 | 4 => 1 + self.rng.below(cur.max(1) as u64) as i64,
            _ => 0,
        }
    }

    fn lease(&mut self) -> i64 {
        match self.rng.below(10) {
            0 => 424242, // never granted
            1..=3 if !self.model.leases.is_empty() => *self.rng.pick(&self.model.leases.clone()),
            _ => 0,
        }
    }

    fn range(&mut self) -> RangeRequest {
        RangeRequest {
            key: self.key(),
            range_end: self.end(),
            limit: if self.rng.chance(25) { self.rng.below(4) as i64 - 1 } else { 0 },
            revision: if self.rng.chance(30) { self.revision() } else { 0 },
            sort_order: if self.rng.chance(25) { self.rng.below(4) as i32 } else { SortOrder::None as i32 },
            sort_target: if self.rng.chance(25) { self.rng.below(5) as i32 } else { SortTarget::Key as i32 },
            serializable: self.rng.chance(20),
            keys_only: self.rng.chance(15),
            count_only: self.rng.chance(10),
            min_mod_revision: if self.rng.chance(10) { self.revision() } else { 0 },
            max_mod_revision: if self.rng.chance(10) { self.revision() } else { 0 },
            min_create_revision: if self.rng.chance(10) { self.revision() } else { 0 },
            max_create_revision: if self.rng.chance(10) { self.revision() } else { 0 },
        }
    }

    fn put(&mut self) -> PutRequest {
        PutRequest {
            key: self.key(),
            value: self.value(),
            lease: self.lease(),
            prev_kv: self.rng.chance(40),
            ignore_value: self.rng.chance(8),
            ignore_lease: self.rng.chance(8),
        }
    }

    fn delete(&mut self) -> DeleteRangeRequest {
        DeleteRangeRequest { key: self.key(), range_end: self.end(), prev_kv: self.rng.chance(40) }
    }

    fn compare(&mut self) -> Compare {
        let target = self.rng.below(5) as i32;
        let union = match CompareTarget::try_from(target).unwrap_or(CompareTarget::Version) {
            CompareTarget::Version => TargetUnion::Version(self.rng.below(4) as i64),
            CompareTarget::Create => TargetUnion::CreateRevision(self.revision()),
            CompareTarget::Mod => TargetUnion::ModRevision(self.revision()),
            CompareTarget::Value => TargetUnion::Value(self.value()),
            CompareTarget::Lease => TargetUnion::Lease(self.lease()),
        };
        Compare {
            result: self.rng.below(4) as i32,
            target,
            key: self.key(),
            range_end: if self.rng.chance(20) { self.end() } else { Bytes::new() },
            target_union: if self.rng.chance(3) { None } else { Some(union) },
        }
    }

    fn request_op(&mut self, depth: u32) -> RequestOp {
        let request = match self.rng.below(if depth < 2 { 9 } else { 8 }) {
            0 | 1 => Some(Request::RequestRange(self.range())),
            2..=4 => Some(Request::RequestPut(self.put())),
            5 | 6 => Some(Request::RequestDeleteRange(self.delete())),
            7 if self.rng.chance(5) => None, // an empty op
            7 => Some(Request::RequestRange(self.range())),
            _ => Some(Request::RequestTxn(self.txn(depth + 1))),
        };
        RequestOp { request }
    }

    fn txn(&mut self, depth: u32) -> TxnRequest {
        let n = |g: &mut Gen| g.rng.below(if depth == 0 { 4 } else { 3 });
        let compares = n(self);
        let compare = (0..compares).map(|_| self.compare()).collect();
        let success = (0..n(self)).map(|_| self.request_op(depth)).collect();
        let failure = (0..n(self)).map(|_| self.request_op(depth)).collect();
        TxnRequest { compare, success, failure }
    }

    /// A watch's start revision: now (0), negative, the future, compacted, or the past.
    fn start_revision(&mut self) -> i64 {
        let (cur, compacted) = (self.model.revision, self.model.compacted.max(1));
        match self.rng.below(8) {
            0 => 0,
            // Not after a Compact(0): etcd 3.4 then answers such a watch with a compaction
            // response that does not cancel it (`compact_revision` 0), and it stays dead
            // (a difference listed in store/README.md).
            1 if !(self.model.compacted_any && self.model.compacted == 0) => -1 - self.rng.below(3) as i64,
            2 => cur + 1 + self.rng.below(2) as i64,
            3 if compacted > 1 => 1 + self.rng.below((compacted - 1) as u64) as i64,
            // Not the compacted revision itself: etcd 3.4 drops the tombstones at it, later
            // etcd and Keel keep them (a difference listed in store/README.md).
            _ => {
                let from = if self.model.compacted > 0 { compacted + 1 } else { 1 };
                from + self.rng.below((cur - from + 1).max(1) as u64) as i64
            }
        }
    }

    fn watch_create(&mut self, watch_id: i64) -> WatchCreateRequest {
        let filters = match self.rng.below(5) {
            0 => vec![FilterType::Noput as i32],
            1 => vec![FilterType::Nodelete as i32],
            2 if self.rng.chance(30) => vec![FilterType::Noput as i32, FilterType::Nodelete as i32],
            _ => vec![],
        };
        WatchCreateRequest {
            key: self.key(),
            range_end: self.end(),
            start_revision: self.start_revision(),
            progress_notify: self.rng.chance(20),
            filters,
            prev_kv: self.rng.chance(50),
            watch_id,
            fragment: false,
        }
    }

    fn watch(&mut self) -> Op {
        // Client-chosen IDs sometimes, and then sometimes the same one twice.
        let id = if self.rng.chance(20) { 1 + self.rng.below(3) as i64 } else { 0 };
        let mut creates = vec![self.watch_create(id)];
        if self.rng.chance(30) {
            let second = if id != 0 && self.rng.chance(50) { id } else { 0 };
            creates.push(self.watch_create(second));
        }
        Op::Watch(WatchOp { creates, progress: self.rng.chance(40), cancel: self.rng.chance(50), cancel_unknown: self.rng.chance(15) })
    }

    /// A txn of `n` ranges: over `--max-txn-ops` or just at it.
    fn many_ops(&mut self, n: usize) -> Op {
        let success = (0..n).map(|_| RequestOp { request: Some(Request::RequestRange(self.range())) }).collect();
        Op::Txn(TxnRequest { compare: vec![], success, failure: vec![] })
    }

    /// The next request.
    pub fn op(&mut self) -> Op {
        match self.rng.below(100) {
            0..=20 => Op::Range(self.range()),
            21..=24 => self.watch(),
            25..=49 => Op::Put(self.put()),
            50..=59 => Op::Delete(self.delete()),
            60..=84 => Op::Txn(self.txn(0)),
            85..=87 => Op::Compact(CompactionRequest { revision: self.revision(), physical: self.rng.chance(50) }),
            88..=91 => {
                // TTLs long enough that no lease expires during a run (expiry timing is the
                // servers' own); an ID seen before gives "lease already exists".
                let id = if self.rng.chance(15) && self.model.next_lease > 1000 {
                    1000 + self.rng.below((self.model.next_lease - 1000) as u64) as i64
                } else {
                    self.model.next_lease
                };
                let ttl = if self.rng.chance(10) { 9_000_000_001 } else { 3600 + self.rng.below(3600) as i64 };
                Op::Grant(LeaseGrantRequest { ttl, id })
            }
            92..=94 => {
                let id =
                    if self.rng.chance(20) || self.model.leases.is_empty() { 424242 } else { *self.rng.pick(&self.model.leases.clone()) };
                Op::Revoke(LeaseRevokeRequest { id })
            }
            95..=97 => Op::TimeToLive(LeaseTimeToLiveRequest { id: self.lease(), keys: self.rng.chance(50) }),
            98 => match self.rng.below(20) {
                0 => self.many_ops(MAX_TXN_OPS + 1),
                1 => self.many_ops(MAX_TXN_OPS),
                2..=9 => Op::Status,
                _ => self.watch(),
            },
            _ => Op::Leases(LeaseLeasesRequest {}),
        }
    }
}
