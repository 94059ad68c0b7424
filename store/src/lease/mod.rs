//! Leases: which leases exist, their TTLs, the keys attached to them, and when they expire.
//!
//! Grant, revoke and key attachment are replicated state (changed only by applying commands);
//! expiry deadlines are local (`tokio::time::Instant`, so simulated time drives them) and are
//! acted on only by the member that proposes revokes. A restart restores every lease with its full
//! TTL, as etcd does, so a lease never expires earlier because the member was down.
//!
//! Readers (TimeToLive, Leases, KeepAlive) see only durable state: a grant is visible once the
//! log index that granted it is durable, and a revoked lease stays visible (in `revoked`) until
//! the revoke's index is durable, since a crash before that would bring it back.

use crate::error::{Error, Result};
use crate::mvcc::{KeyIndex, codec};
use crate::storage::{Backend, WriteBatch};
use crate::types::{LeaseId, LogIndex, Revision, Term};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// etcd's largest TTL (`MaxLeaseTTL`), in seconds.
pub const MAX_TTL_SECS: i64 = 9_000_000_000;

/// One lease.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Granted TTL in seconds (after the minimum was applied).
    pub ttl: i64,
    /// Keys currently attached.
    pub keys: BTreeSet<Bytes>,
    /// When it expires unless renewed.
    pub expiry: Instant,
    /// Log index of the grant.
    pub granted_at: LogIndex,
}

/// All leases.
#[derive(Debug, Default)]
pub struct Leases {
    map: BTreeMap<LeaseId, Lease>,
    min_ttl: i64,
    /// Leases revoked at a log index that may not be durable yet: (index, id, lease).
    revoked: Vec<(LogIndex, LeaseId, Lease)>,
    /// The leader term whose start every deadline was last extended for (0: none yet).
    led_term: Term,
}

fn deadline(now: Instant, ttl: i64) -> Instant {
    now + Duration::from_secs(ttl.clamp(0, MAX_TTL_SECS) as u64)
}

impl Leases {
    /// Restore leases from the backend and re-attach keys from the index.
    pub fn load(backend: &dyn Backend, index: &KeyIndex, at: Revision, min_ttl: i64, now: Instant) -> Result<Leases> {
        let mut map = BTreeMap::new();
        for (k, v) in backend.scan(&[codec::LEASE_PREFIX], &[codec::LEASE_PREFIX + 1], usize::MAX)? {
            let (Some(id), Some(ttl)) = (k.get(1..).and_then(codec::decode_i64), codec::decode_i64(&v)) else {
                return Err(Error::corrupt(format!("lease record {k:?}")));
            };
            map.insert(LeaseId(id), Lease { ttl, keys: BTreeSet::new(), expiry: deadline(now, ttl), granted_at: LogIndex(0) });
        }
        let mut leases = Leases { map, min_ttl, revoked: Vec::new(), led_term: Term(0) };
        let all = crate::mvcc::KeyRange::From(Bytes::from_static(b"\0"));
        for (key, e) in index.range(&all, at.0) {
            if e.lease != 0 {
                leases.attach(LeaseId(e.lease), key.clone());
            }
        }
        Ok(leases)
    }

    /// The smallest TTL granted; shorter requests are raised to it.
    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    /// True when the lease exists.
    pub fn contains(&self, id: LeaseId) -> bool {
        self.map.contains_key(&id)
    }

    /// Grant a lease at log index `index`; returns the TTL actually granted.
    pub fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant, index: LogIndex, batch: &mut WriteBatch) -> Result<i64> {
        if ttl > MAX_TTL_SECS {
            return Err(Error::LeaseTtlTooLarge);
        }
        if id.0 == 0 {
            return Err(Error::InvalidArgument("etcdserver: lease ID must be non-zero".into()));
        }
        if self.map.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        batch.put(codec::lease_key(id.0), codec::encode_i64(ttl));
        self.map.insert(id, Lease { ttl, keys: BTreeSet::new(), expiry: deadline(now, ttl), granted_at: index });
        Ok(ttl)
    }

    /// Remove a lease at log index `index`; returns the keys that were attached (the caller
    /// deletes them).
    pub fn revoke(&mut self, id: LeaseId, index: LogIndex, batch: &mut WriteBatch) -> Result<BTreeSet<Bytes>> {
        let lease = self.map.remove(&id).ok_or(Error::LeaseNotFound)?;
        batch.delete(codec::lease_key(id.0));
        let keys = lease.keys.clone();
        self.revoked.push((index, id, lease));
        Ok(keys)
    }

    /// Forget revokes that are durable (log index `<= durable`).
    pub fn prune(&mut self, durable: LogIndex) {
        self.revoked.retain(|(index, _, _)| *index > durable);
    }

    /// The lease as readers may see it when log records up to `durable` are durable.
    pub fn visible(&self, id: LeaseId, durable: LogIndex) -> Option<&Lease> {
        match self.map.get(&id) {
            Some(l) if l.granted_at <= durable => Some(l),
            Some(_) => None,
            None => self.revoked.iter().rev().find(|(index, rid, _)| *rid == id && *index > durable).map(|(_, _, l)| l),
        }
    }

    /// Every lease ID readers may see, ascending.
    pub fn visible_ids(&self, durable: LogIndex) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self.map.iter().filter(|(_, l)| l.granted_at <= durable).map(|(id, _)| *id).collect();
        ids.extend(self.revoked.iter().filter(|(index, _, _)| *index > durable).map(|(_, id, _)| *id));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Attach `key` to lease `id` (no-op for 0 or an unknown lease).
    pub fn attach(&mut self, id: LeaseId, key: Bytes) {
        if let Some(l) = self.map.get_mut(&id) {
            // Own copy: a request's key may be a slice of a large receive buffer.
            l.keys.insert(Bytes::copy_from_slice(&key));
        }
    }

    /// Detach `key` from lease `id`.
    pub fn detach(&mut self, id: LeaseId, key: &[u8]) {
        if let Some(l) = self.map.get_mut(&id) {
            l.keys.remove(key);
        }
    }

    /// Keep a lease alive; returns its TTL. An expired (not yet revoked) lease is not found; one
    /// whose revoke is not durable yet still answers its TTL.
    pub fn renew(&mut self, id: LeaseId, now: Instant, durable: LogIndex) -> Result<i64> {
        if !self.map.contains_key(&id) {
            return self.visible(id, durable).map(|l| l.ttl).ok_or(Error::LeaseNotFound);
        }
        let l = self.map.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if l.granted_at > durable {
            return Err(Error::LeaseNotFound);
        }
        if l.expiry <= now {
            return Err(Error::LeaseNotFound);
        }
        l.expiry = deadline(now, l.ttl);
        Ok(l.ttl)
    }

    /// One lease in the writer's view (durable or not).
    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.map.get(&id)
    }

    /// Before a leader acts on deadlines in `term`: the first time in each term it leads, every
    /// deadline is extended to a full TTL from `now` (renewals went to whoever led before, so
    /// its own deadlines are stale — even if it led before, lost the lead unnoticed and won it
    /// back). True when it extended.
    pub fn lead(&mut self, term: Term, now: Instant) -> bool {
        if self.led_term == term {
            return false;
        }
        self.led_term = term;
        self.extend_all(now);
        true
    }

    /// A new leader's first act: no lease ends sooner than a full TTL from `now`.
    pub fn extend_all(&mut self, now: Instant) {
        for l in self.map.values_mut() {
            l.expiry = l.expiry.max(deadline(now, l.ttl));
        }
    }

    /// Leases whose deadline has passed.
    pub fn expired(&self, now: Instant) -> Vec<LeaseId> {
        self.map.iter().filter(|(_, l)| l.expiry <= now).map(|(id, _)| *id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const L7: LeaseId = LeaseId(7);
    fn at(i: u64) -> LogIndex {
        LogIndex(i)
    }

    #[tokio::test(start_paused = true)]
    async fn grant_renew_expire() {
        let mut ls = Leases { min_ttl: 2, ..Default::default() };
        let mut b = WriteBatch::default();
        let now = Instant::now();
        assert_eq!(ls.grant(L7, 1, now, at(1), &mut b).unwrap(), 2, "raised to the minimum TTL");
        assert_eq!(ls.grant(L7, 5, now, at(2), &mut b), Err(Error::LeaseExists));
        assert_eq!(ls.grant(LeaseId(8), MAX_TTL_SECS + 1, now, at(2), &mut b), Err(Error::LeaseTtlTooLarge));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(ls.renew(L7, Instant::now(), at(1)).unwrap(), 2);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(ls.expired(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(ls.expired(Instant::now()), vec![L7]);
        assert_eq!(ls.renew(L7, Instant::now(), at(1)), Err(Error::LeaseNotFound));
    }

    #[tokio::test(start_paused = true)]
    async fn readers_see_only_durable_grants_and_revokes() {
        let mut ls = Leases { min_ttl: 2, ..Default::default() };
        let mut b = WriteBatch::default();
        let now = Instant::now();
        ls.grant(L7, 60, now, at(5), &mut b).unwrap();
        assert!(ls.visible(L7, at(4)).is_none(), "a grant is not visible before it is durable");
        assert_eq!(ls.visible_ids(at(5)), vec![L7]);
        ls.revoke(L7, at(6), &mut b).unwrap();
        assert_eq!(ls.visible(L7, at(5)).map(|l| l.ttl), Some(60), "a revoke is not visible before it is durable");
        assert_eq!(ls.renew(L7, now, at(5)), Ok(60));
        assert!(ls.visible(L7, at(6)).is_none());
        ls.prune(at(6));
        assert!(ls.visible_ids(at(5)).is_empty(), "pruned once durable");
    }
}
