//! [`Mvcc`]: the key index and the backend kept in step. Writes go through a [`WriteCtx`] that
//! holds the request's revision, so everything one request changes shares it.
//!
//! Readers pass the revision they read at; the writer may already have applied (but not yet made
//! durable) newer revisions, which readers never see because every lookup is "as of" a revision.

use super::codec::{self, META_COMPACTED, REV_PREFIX};
use super::index::{Entry, KeyIndex, KeyRange, Rev};
use super::range;
use crate::error::{Error, Result};
use crate::storage::{Backend, WriteBatch, scan_each};
use crate::types::{LeaseId, Revision};
use bytes::Bytes;
use keel_proto::etcdserverpb::RangeRequest;
use keel_proto::mvccpb::{Event, KeyValue, event::EventType};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// How many records one backend scan reads at a time.
const SCAN_CHUNK: usize = 4096;

/// Everything one request changes, collected while it is applied.
pub struct WriteCtx<'a> {
    /// The revision this request writes at.
    pub rev: i64,
    /// The next sub-revision; > 0 means the request changed something.
    pub sub: i64,
    /// Backend writes for this request.
    pub batch: &'a mut WriteBatch,
    /// Watch events, in order, each with its previous key-value (watchers that did not ask
    /// for it get it stripped) unless listed in `unread`.
    pub events: Vec<Event>,
    /// Puts whose previous key-value was not read: no one had asked for it yet.
    pub unread: Vec<UnreadPrev>,
}

/// A put's event whose previous key-value was left unread, as etcd leaves it: a put reads
/// only the key index unless the request asks for the previous value. The watch hub has it
/// read (see [`Mvcc::fill_prev`]) only when a watcher wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadPrev {
    /// The event's position in its list.
    pub event: usize,
    /// Where the previous key-value is stored.
    pub rev: Rev,
}

impl WriteCtx<'_> {
    /// The revision this request's reads see: the store's before its first write, its own
    /// revision after (so later ops of a txn see earlier ones).
    pub fn view(&self, current: Revision) -> Revision {
        if self.sub > 0 { Revision(self.rev) } else { current }
    }
}

/// The result of a Range before the header is added.
#[derive(Debug, Default)]
pub struct RangeResult {
    /// Key-values returned.
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut results off.
    pub more: bool,
    /// Keys in the range at that revision, before limit and filters.
    pub count: i64,
}

/// One key-value of a [`RangePlan`].
enum Planned {
    /// Known already.
    Ready(KeyValue),
    /// To be read from the backend.
    Load(Rev),
}

/// A Range with its keys chosen, values still to load (see [`Mvcc::plan_range`]).
pub struct RangePlan {
    backend: Arc<dyn Backend>,
    items: Vec<Planned>,
    count: i64,
}

impl RangePlan {
    /// Load the values and apply sort, filters and limit. A record compacted away since the plan
    /// was made means the read revision is now below the compacted one.
    pub fn load(self, req: &RangeRequest) -> Result<RangeResult> {
        if req.count_only {
            return Ok(RangeResult { kvs: Vec::new(), more: false, count: self.count });
        }
        let mut kvs = Vec::with_capacity(self.items.len());
        for item in self.items {
            kvs.push(match item {
                Planned::Ready(kv) => kv,
                Planned::Load(rev) => {
                    let raw = self.backend.get(&codec::rev_key(rev))?.ok_or(Error::Compacted)?;
                    codec::decode_record(&raw).ok_or_else(|| Error::corrupt(format!("record for revision {rev:?}")))?.0
                }
            });
        }
        let more = range::finish(req, &mut kvs);
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResult { kvs, more, count: self.count })
    }
}

/// The MVCC store.
pub struct Mvcc {
    backend: Arc<dyn Backend>,
    index: KeyIndex,
    current: i64,
    /// The revision of the last compaction, -1 before the first (etcd's `compactMainRev`: a
    /// fresh store accepts `Compact(0)`, and HashKV reports -1).
    compacted: i64,
    /// Records written by the request being applied, not yet in the backend (a txn may read
    /// its own writes, and the next request of a group reads them). Emptied by
    /// [`Mvcc::write_out`].
    pending: BTreeMap<Rev, (KeyValue, bool)>,
}

impl Mvcc {
    /// Open the store on `backend`, rebuilding the key index from the revision records.
    pub fn open(backend: Arc<dyn Backend>) -> Result<Mvcc> {
        let mut index = KeyIndex::default();
        let mut current = 1;
        scan_each(&*backend, &[REV_PREFIX], &[REV_PREFIX + 1], SCAN_CHUNK, |k, v| {
            let (Some(rev), Some((kv, tombstone))) = (codec::parse_rev_key(k), codec::decode_record(v)) else {
                return Err(Error::corrupt(format!("revision record {k:?}")));
            };
            current = current.max(rev.main);
            index.push(kv.key.clone(), Entry { rev, create: kv.create_revision, version: kv.version, lease: kv.lease, tombstone });
            Ok(ControlFlow::Continue(()))
        })?;
        let compacted = backend.get(META_COMPACTED)?.and_then(|v| codec::decode_i64(&v)).unwrap_or(-1);
        Ok(Mvcc { backend, index, current: current.max(compacted), compacted, pending: BTreeMap::new() })
    }

    /// The newest applied revision.
    pub fn current(&self) -> Revision {
        Revision(self.current)
    }

    /// The revision history was compacted at (0 if never).
    pub fn compacted(&self) -> Revision {
        Revision(self.compacted.max(0))
    }

    /// etcd's first revision: the last compaction's, -1 before any (what HashKV reports as
    /// `compact_revision` and what a Range inside a Txn is checked against).
    pub fn first_rev(&self) -> Revision {
        Revision(self.compacted)
    }

    /// The key index (read-only).
    pub fn index(&self) -> &KeyIndex {
        &self.index
    }

    fn load(&self, e: &Entry) -> Result<KeyValue> {
        self.load_at(e.rev)
    }

    fn load_at(&self, rev: Rev) -> Result<KeyValue> {
        if let Some((kv, _)) = self.pending.get(&rev) {
            return Ok(kv.clone());
        }
        let raw = self.backend.get(&codec::rev_key(rev))?.ok_or_else(|| Error::corrupt(format!("missing record for revision {rev:?}")))?;
        let (kv, _) = codec::decode_record(&raw).ok_or_else(|| Error::corrupt(format!("record for revision {rev:?}")))?;
        Ok(kv)
    }

    fn meta(key: &Bytes, e: &Entry) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: e.create,
            mod_revision: e.rev.main,
            version: e.version,
            value: Bytes::new(),
            lease: e.lease,
        }
    }

    /// Check that `rev` (0 = latest) can be read when the newest readable revision is `latest`,
    /// and resolve it.
    pub fn read_revision(&self, rev: i64, latest: Revision) -> Result<Revision> {
        let latest = latest.0;
        if rev <= 0 {
            return Ok(Revision(latest));
        }
        if rev > latest {
            return Err(Error::FutureRevision);
        }
        if rev < self.compacted {
            return Err(Error::Compacted);
        }
        Ok(Revision(rev))
    }

    /// Serve a Range as of revision `latest` (the newest revision readers may see).
    pub fn range(&self, req: &RangeRequest, latest: Revision) -> Result<RangeResult> {
        self.plan_range(req, latest)?.load(req)
    }

    /// The first half of a Range, done under the state lock: pick the keys (and take values
    /// still held in the overlay). [`RangePlan::load`] then reads the values from the backend
    /// without the lock, so a large range does not hold up writers.
    pub fn plan_range(&self, req: &RangeRequest, latest: Revision) -> Result<RangePlan> {
        let at = self.read_revision(req.revision, latest)?.0;
        let kr = KeyRange::new(&req.key, &req.range_end);
        let limit = range::fetch_limit(req);
        let mut count = 0i64;
        let mut items = Vec::new();
        let need_value =
            !req.keys_only && !req.count_only || req.sort_target() == keel_proto::etcdserverpb::range_request::SortTarget::Value;
        for (key, e) in self.index.range(&kr, at) {
            count += 1;
            if req.count_only || (limit > 0 && items.len() >= limit) {
                continue;
            }
            items.push(match self.pending.get(&e.rev) {
                Some((kv, _)) if need_value => Planned::Ready(kv.clone()),
                _ if need_value => Planned::Load(e.rev),
                _ => Planned::Ready(Self::meta(key, e)),
            });
        }
        Ok(RangePlan { backend: self.backend.clone(), items, count })
    }

    /// Live key-values in `kr` as of revision `at`.
    pub fn live_in(&self, kr: &KeyRange, at: Revision) -> Result<Vec<KeyValue>> {
        self.index.range(kr, at.0).map(|(_, e)| self.load(e)).collect()
    }

    /// The live key-value of `key` as of revision `at`.
    pub fn live(&self, key: &[u8], at: Revision) -> Result<Option<KeyValue>> {
        match self.index.get(key, at.0) {
            Some(e) => Ok(Some(self.load(e)?)),
            None => Ok(None),
        }
    }

    /// The live key-value of `key` in the writer's view (before the current request).
    pub fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.live(key, self.current())
    }

    /// The lease of `key` in the writer's view without touching the disk.
    pub fn latest_entry(&self, key: &[u8]) -> Option<Entry> {
        self.index.get(key, self.current).copied()
    }

    /// Start a write at the next revision.
    pub fn begin<'a>(&self, batch: &'a mut WriteBatch) -> WriteCtx<'a> {
        WriteCtx { rev: self.current + 1, sub: 0, batch, events: Vec::new(), unread: Vec::new() }
    }

    /// Finish a write: the revision is taken only if something changed.
    pub fn commit(&mut self, ctx: &WriteCtx<'_>) {
        if ctx.sub > 0 {
            self.current = ctx.rev;
        }
    }

    /// Put `key`. `value`/`lease` are final (ignore_* already resolved). Returns the key's
    /// previous index entry, and its previous key-value when `want_prev` (otherwise that is
    /// left unread, in `ctx.unread`). The caller has checked the lease exists.
    pub fn put(
        &mut self,
        ctx: &mut WriteCtx<'_>,
        key: Bytes,
        value: Bytes,
        lease: LeaseId,
        want_prev: bool,
    ) -> Result<(Option<Entry>, Option<KeyValue>)> {
        // A request's bytes are slices of the whole received gRPC buffer: the index keeps its
        // own copy of the key, or every key would pin a buffer of kilobytes forever.
        let key = Bytes::copy_from_slice(&key);
        let rev = Rev { main: ctx.rev, sub: ctx.sub };
        let lease = lease.0;
        let (before, entry) = self.index.write(key.clone(), ctx.view(self.current()).0, |before| {
            let (create, version) = before.map_or((rev.main, 1), |p| (p.create, p.version + 1));
            Entry { rev, create, version, lease, tombstone: false }
        });
        ctx.sub += 1;
        // (A failed read is a storage error, which stops the state machine: the index entry
        // already pushed is never seen.)
        let prev = match &before {
            Some(e) if want_prev => Some(self.load(e)?),
            Some(e) => {
                ctx.unread.push(UnreadPrev { event: ctx.events.len(), rev: e.rev });
                None
            }
            None => None,
        };
        let kv = KeyValue { key, create_revision: entry.create, mod_revision: ctx.rev, version: entry.version, value, lease };
        ctx.batch.put(codec::rev_key(rev), codec::encode_record(&kv, false));
        self.pending.insert(rev, (kv.clone(), false));
        ctx.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: prev.clone() });
        Ok((before, prev))
    }

    /// Read the previous key-values left unread in `events`. One whose revision has been
    /// compacted away stays empty, as etcd leaves it (the apply loop reads them before a
    /// compaction, so that is not expected); a read that fails is logged and also stays empty.
    pub fn fill_prev(&self, events: &mut [Event], unread: &[UnreadPrev]) {
        for u in unread {
            if let Some(event) = events.get_mut(u.event) {
                event.prev_kv = match self.load_at(u.rev) {
                    Ok(kv) => Some(kv),
                    Err(e) => {
                        tracing::error!(error = %e, "reading a previous value for a watch event failed");
                        None
                    }
                };
            }
        }
    }

    /// Delete every live key in `kr`. Returns the deleted key-values.
    pub fn delete(&mut self, ctx: &mut WriteCtx<'_>, kr: &KeyRange) -> Result<Vec<KeyValue>> {
        let prevs = self.live_in(kr, ctx.view(self.current()))?;
        for prev in &prevs {
            // A watcher's previous key-value is the key as of the revision before (etcd reads it
            // at `mod_revision - 1`): for a key written earlier in this same txn, that is what
            // it held before the txn, or nothing.
            let watch_prev = if prev.mod_revision == ctx.rev {
                self.index.get(&prev.key, ctx.rev - 1).map(|e| self.load(e)).transpose()?
            } else {
                Some(prev.clone())
            };
            let rev = Rev { main: ctx.rev, sub: ctx.sub };
            ctx.sub += 1;
            let kv = KeyValue { key: prev.key.clone(), mod_revision: ctx.rev, ..Default::default() };
            ctx.batch.put(codec::rev_key(rev), codec::encode_record(&kv, true));
            self.pending.insert(rev, (kv.clone(), true));
            self.index.push(prev.key.clone(), Entry { rev, create: 0, version: 0, lease: 0, tombstone: true });
            ctx.events.push(Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: watch_prev });
        }
        Ok(prevs)
    }

    /// Hand the records of a group of requests to the backend in one batch (not yet durable).
    pub fn write_out(&mut self, batch: WriteBatch) -> Result<()> {
        if !batch.is_empty() {
            self.backend.write(batch)?;
        }
        // Only once the backend has the records may the overlay let go of them.
        self.pending.clear();
        Ok(())
    }

    /// Check a compaction request against the current state.
    pub fn check_compact(&self, rev: Revision) -> Result<()> {
        let rev = rev.0;
        if rev <= self.compacted {
            return Err(Error::Compacted);
        }
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        Ok(())
    }

    /// Compact history at `rev`: drop every record no read at `>= rev` needs. Records at exactly
    /// `rev` stay, so a watch may still start at the compacted revision.
    pub fn compact(&mut self, rev: Revision, batch: &mut WriteBatch) -> Result<()> {
        self.check_compact(rev)?;
        let rev = rev.0;
        // The index knows every record, so compaction deletes exactly what it dropped: no scan
        // of the history, and the cost follows what is freed, not the store's size.
        for r in self.index.compact(rev) {
            self.pending.remove(&r);
            batch.delete(codec::rev_key(r));
        }
        batch.put(META_COMPACTED.to_vec(), codec::encode_i64(rev));
        self.compacted = rev;
        Ok(())
    }

    /// History events with `from <= revision <= to`, at most `max_events` but never splitting a
    /// revision, and the last revision they cover. `prev_kv` attaches each event's previous key-value where history still has it.
    pub fn events(&self, from: Revision, to: Revision, max_events: usize, prev_kv: bool) -> Result<(Vec<Event>, Revision)> {
        let (from, to) = (from.0, to.0);
        let mut out: Vec<Event> = Vec::new();
        if from > to {
            return Ok((out, Revision(to)));
        }
        let start = codec::rev_key(Rev { main: from, sub: 0 });
        let end = codec::rev_key(Rev { main: to + 1, sub: 0 });
        let mut last_main = 0;
        let mut covered = to;
        let mut push = |rev: Rev, kv: KeyValue, tombstone: bool, out: &mut Vec<Event>| -> Result<ControlFlow<()>> {
            if out.len() >= max_events && rev.main != last_main {
                covered = last_main;
                return Ok(ControlFlow::Break(()));
            }
            last_main = rev.main;
            // etcd attaches no previous key-value to a create event (a put of a key's first
            // version), even when the same txn deleted an earlier version just before it.
            let creates = !tombstone && kv.create_revision == kv.mod_revision;
            let prev = if prev_kv && !creates { self.index.get(&kv.key, rev.main - 1).map(|e| self.load(e)).transpose()? } else { None };
            let ty = if tombstone { EventType::Delete } else { EventType::Put };
            out.push(Event { r#type: ty as i32, kv: Some(kv), prev_kv: prev });
            Ok(ControlFlow::Continue(()))
        };
        let mut stopped = false;
        scan_each(&*self.backend, &start, &end, SCAN_CHUNK, |k, v| {
            let (Some(rev), Some((kv, tombstone))) = (codec::parse_rev_key(k), codec::decode_record(v)) else {
                return Ok(ControlFlow::Continue(()));
            };
            let flow = push(rev, kv, tombstone, &mut out)?;
            stopped = flow.is_break();
            Ok::<_, Error>(flow)
        })?;
        // Records not yet handed to the backend are newer than every record in it.
        if !stopped {
            let range = Rev { main: from, sub: 0 }..Rev { main: to + 1, sub: 0 };
            for (rev, (kv, tombstone)) in self.pending.range(range) {
                if push(*rev, kv.clone(), *tombstone, &mut out)?.is_break() {
                    break;
                }
            }
        }
        Ok((out, Revision(covered)))
    }

    /// True when records wait to be handed to the backend (see [`Mvcc::write_out`]).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// etcd's HashKV: a hash of every record up to `rev` (0 = latest), and the revision it covers.
    /// The caller writes pending records out first, so the hash does not depend on timing.
    pub fn hash_kv(&self, rev: Revision) -> Result<(u32, Revision)> {
        debug_assert!(!self.has_pending(), "hash_kv with records not yet in the backend");
        let rev = if rev.0 <= 0 { self.current } else { rev.0 };
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        if rev < self.compacted {
            return Err(Error::Compacted);
        }
        let mut h = crc32fast::Hasher::new();
        let to = codec::rev_key(Rev { main: rev + 1, sub: 0 });
        scan_each(&*self.backend, &[REV_PREFIX], &to, SCAN_CHUNK, |k, v| {
            h.update(k);
            h.update(v);
            Ok::<_, Error>(ControlFlow::Continue(()))
        })?;
        Ok((h.finalize(), Revision(rev)))
    }
}
