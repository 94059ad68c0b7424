//! Txn: validation before proposing (op limits, duplicate writes, per-op checks) and execution
//! when applied (compares, then one branch, all in one revision).

use super::{Command, StateMachine, validate as validate_cmd};
use crate::error::{Error, Result};
use crate::lease::Leases;
use crate::mvcc::{KeyRange, Mvcc, WriteCtx, compare};
use crate::types::{LeaseId, Revision};
use bytes::Bytes;
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::response_op::Response;
use keel_proto::etcdserverpb::{PutRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// A put's final value and lease once `ignore_value`/`ignore_lease` are resolved.
pub struct PutPlan {
    /// Value to write.
    pub value: Bytes,
    /// Lease to attach (0 for none).
    pub lease: LeaseId,
}

/// Which check a put fails first when both would: a plain Put checks its lease first, a put
/// inside a txn its key first (etcd's `applierV3backend.Put` and `checkRequestPut`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CheckOrder {
    /// KV.Put.
    LeaseFirst,
    /// A put inside a txn.
    KeyFirst,
}

/// Resolve and check a put against the current state, without changing anything.
pub fn check_put(mvcc: &Mvcc, leases: &Leases, req: &PutRequest, order: CheckOrder) -> Result<PutPlan> {
    let lease_ok = |lease: LeaseId| if lease.0 != 0 && !leases.contains(lease) { Err(Error::LeaseNotFound) } else { Ok(()) };
    if order == CheckOrder::LeaseFirst && !req.ignore_lease {
        lease_ok(LeaseId(req.lease))?;
    }
    let mut plan = PutPlan { value: req.value.clone(), lease: LeaseId(req.lease) };
    if req.ignore_value || req.ignore_lease {
        let prev = mvcc.latest(&req.key)?.ok_or(Error::KeyNotFound)?;
        if req.ignore_value {
            plan.value = prev.value;
        }
        if req.ignore_lease {
            plan.lease = LeaseId(prev.lease);
        }
    }
    lease_ok(plan.lease)?;
    Ok(plan)
}

/// True when the success or failure list itself holds a put (etcd's quota cost of a txn).
pub fn has_top_level_puts(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| matches!(op.request, Some(Request::RequestPut(_))))
}

/// The leases of every put in the txn (either branch, nested included).
pub fn put_leases(t: &TxnRequest) -> Vec<LeaseId> {
    let mut out = Vec::new();
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Request::RequestPut(p)) if p.lease != 0 => out.push(LeaseId(p.lease)),
            Some(Request::RequestTxn(t)) => out.extend(put_leases(t)),
            _ => {}
        }
    }
    out
}

/// True when any op of the txn (either branch, nested included) writes.
pub fn has_writes(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => true,
        Some(Request::RequestTxn(t)) => has_writes(t),
        _ => false,
    })
}

/// True when every range of a txn asks for a serializable read (etcd's `isTxnSerializable`):
/// then a read-only txn is answered locally, without a read barrier.
pub fn all_serializable(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(Request::RequestRange(r)) => r.serializable,
        Some(Request::RequestTxn(t)) => all_serializable(t),
        _ => true,
    })
}

/// etcd's `checkTxnRequest` and `checkIntervals`.
pub fn validate(t: &TxnRequest, max_ops: usize) -> Result<()> {
    check_ops(t, max_ops)?;
    check_dups(t)?;
    Ok(())
}

fn check_ops(t: &TxnRequest, max_ops: usize) -> Result<()> {
    let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(Error::EmptyKey);
        }
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) if r.key.is_empty() => return Err(Error::EmptyKey),
            Some(Request::RequestPut(p)) => validate_cmd(&Command::Put(p.clone()), max_ops)?,
            Some(Request::RequestDeleteRange(d)) if d.key.is_empty() => return Err(Error::EmptyKey),
            Some(Request::RequestTxn(n)) => check_ops(n, max_ops - opc)?,
            // etcd answers an empty op like this (`checkRequestOp`).
            None => return Err(Error::KeyNotFound),
            _ => {}
        }
    }
    Ok(())
}

/// Keys a branch puts and ranges it deletes, kept so that checking one more op costs a
/// logarithm, not a scan (a nested txn can hold tens of thousands of ops).
#[derive(Default)]
struct Writes {
    puts: BTreeSet<Bytes>,
    /// Deleted ranges as disjoint `[start, end)` intervals.
    dels: BTreeMap<Bytes, Bytes>,
}

impl Writes {
    fn deletes(&self, k: &[u8]) -> bool {
        match self.dels.range::<[u8], _>((Bound::Unbounded, Bound::Included(k))).next_back() {
            Some((_, end)) => k < end.as_ref(),
            None => false,
        }
    }

    /// Check a put against the puts and deletes so far, then add it.
    fn add_put(&mut self, k: &Bytes) -> Result<()> {
        if self.puts.contains(k) || self.deletes(k) {
            return Err(Error::DuplicateKey);
        }
        self.puts.insert(k.clone());
        Ok(())
    }

    /// Add a DeleteRange's interval as etcd's interval tree holds it: a key alone is
    /// `[key, key\0)`; a range end at or below the key (so `"\0"`, a from-key delete) is an
    /// empty interval that conflicts with nothing.
    fn add_del(&mut self, key: &Bytes, range_end: &Bytes) {
        if range_end.is_empty() {
            let mut e = key.to_vec();
            e.push(0);
            self.union(key.clone(), Bytes::from(e));
        } else if range_end > key {
            self.union(key.clone(), range_end.clone());
        }
    }

    /// Merge `[start, end)` into the disjoint, sorted intervals.
    fn union(&mut self, mut start: Bytes, mut end: Bytes) {
        // Merge with every overlapping or touching interval: the one starting at or before
        // `start` (if it reaches it) and those starting within `(start, end]`.
        let mut overlapping: Vec<Bytes> = Vec::new();
        if let Some((s, e)) = self.dels.range::<Bytes, _>((Bound::Unbounded, Bound::Included(start.clone()))).next_back()
            && e.as_ref() >= start.as_ref()
        {
            overlapping.push(s.clone());
        }
        overlapping
            .extend(self.dels.range::<Bytes, _>((Bound::Excluded(start.clone()), Bound::Included(end.clone()))).map(|(s, _)| s.clone()));
        for s in overlapping {
            if let Some(e) = self.dels.remove(&s) {
                if s < start {
                    start = s;
                }
                end = end.max(e);
            }
        }
        self.dels.insert(start, end);
    }
}

fn check_dups(t: &TxnRequest) -> Result<()> {
    intervals(&t.success)?;
    intervals(&t.failure)?;
    Ok(())
}

/// etcd's `checkIntervals` for one branch, rule for rule (only one branch of a txn runs, so
/// each is checked on its own): this level's deletes first; then each nested txn's puts
/// against the puts and deletes gathered so far (its two branches may repeat each other's
/// puts), after which its deletes join; last this level's puts against everything.
fn intervals(ops: &[RequestOp]) -> Result<Writes> {
    let mut w = Writes::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            w.add_del(&d.key, &d.range_end);
        }
    }
    for op in ops {
        let Some(Request::RequestTxn(n)) = &op.request else { continue };
        let then = intervals(&n.success)?;
        let other = intervals(&n.failure)?;
        for k in &then.puts {
            w.add_put(k)?;
        }
        for k in &other.puts {
            if then.puts.contains(k) {
                if w.deletes(k) {
                    return Err(Error::DuplicateKey);
                }
            } else {
                w.add_put(k)?;
            }
        }
        for (s, e) in then.dels.into_iter().chain(other.dels) {
            w.union(s, e);
        }
    }
    for op in ops {
        if let Some(Request::RequestPut(p)) = &op.request {
            w.add_put(&p.key)?;
        }
    }
    Ok(w)
}

/// Which ops run: compares decide the branch, recursively for nested txns.
fn choose<'t>(mvcc: &Mvcc, t: &'t TxnRequest, at: Revision) -> Result<(bool, &'t [RequestOp])> {
    for c in &t.compare {
        // Every compare, nested ones included, sees the store as the txn found it.
        let kvs = mvcc.live_in(&KeyRange::new(&c.key, &c.range_end), at)?;
        if !compare::holds(c, &kvs) {
            return Ok((false, &t.failure));
        }
    }
    Ok((true, &t.success))
}

/// What [`precheck`] checks in one pass over the ops that will run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Puts,
    Ranges,
}

/// Check every op that will run, so a failing txn changes nothing: every put of the path
/// first, then every range (etcd's two `checkRequests` passes, so a txn failing both ways
/// reports the put's error).
fn precheck(sm: &StateMachine, ops: &[RequestOp], pass: Pass) -> Result<()> {
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) if pass == Pass::Puts => {
                check_put(&sm.mvcc, &sm.leases, p, CheckOrder::KeyFirst)?;
            }
            Some(Request::RequestRange(r)) if pass == Pass::Ranges => check_range(&sm.mvcc, r, sm.mvcc.current())?,
            Some(Request::RequestTxn(n)) => {
                let (_, branch) = choose(&sm.mvcc, n, sm.mvcc.current())?;
                precheck(sm, branch, pass)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// etcd's `checkRequestRange` for a Range inside a Txn: a non-zero revision must lie between
/// the first revision ([`Mvcc::first_rev`], -1 before any compaction) and `current`. So, unlike
/// a plain Range, a negative revision below the first one is "compacted".
fn check_range(mvcc: &Mvcc, r: &keel_proto::etcdserverpb::RangeRequest, current: Revision) -> Result<()> {
    match r.revision {
        0 => Ok(()),
        rev if rev > current.0 => Err(Error::FutureRevision),
        rev if rev < mvcc.first_rev().0 => Err(Error::Compacted),
        _ => Ok(()),
    }
}

/// [`check_range`] for every Range on the path a read-only txn takes.
fn precheck_reads(mvcc: &Mvcc, t: &TxnRequest, at: Revision) -> Result<()> {
    let (_, ops) = choose(mvcc, t, at)?;
    for op in ops {
        match &op.request {
            Some(Request::RequestRange(r)) => check_range(mvcc, r, at)?,
            Some(Request::RequestTxn(n)) => precheck_reads(mvcc, n, at)?,
            _ => {}
        }
    }
    Ok(())
}

/// Execute a validated txn at `ctx`'s revision.
pub fn apply(sm: &mut StateMachine, ctx: &mut WriteCtx<'_>, t: TxnRequest) -> Result<TxnResponse> {
    let (succeeded, ops) = choose(&sm.mvcc, &t, sm.mvcc.current())?;
    precheck(sm, ops, Pass::Puts)?;
    precheck(sm, ops, Pass::Ranges)?;
    let ops = ops.to_vec();
    let mut responses = Vec::with_capacity(ops.len());
    // Each response inside a txn carries only the revision its op saw: the txn's starting
    // revision until the txn writes, the txn's own revision after that (as etcd reports it).
    let seen =
        |sm: &StateMachine, ctx: &WriteCtx<'_>| Some(ResponseHeader { revision: ctx.view(sm.mvcc.current()).0, ..Default::default() });
    for op in ops {
        let response = match op.request {
            Some(Request::RequestRange(r)) => {
                let rr = sm.mvcc.range(&r, ctx.view(sm.mvcc.current()))?;
                Response::ResponseRange(RangeResponse { header: seen(sm, ctx), kvs: rr.kvs, more: rr.more, count: rr.count })
            }
            Some(Request::RequestPut(p)) => {
                let plan = check_put(&sm.mvcc, &sm.leases, &p, CheckOrder::KeyFirst)?;
                let mut r = sm.put(ctx, p, plan)?;
                r.header = seen(sm, ctx);
                Response::ResponsePut(r)
            }
            Some(Request::RequestDeleteRange(d)) => {
                let mut r = sm.delete(ctx, d)?;
                r.header = seen(sm, ctx);
                Response::ResponseDeleteRange(r)
            }
            Some(Request::RequestTxn(n)) => {
                let mut r = apply(sm, ctx, n)?;
                // etcd never fills a nested txn's header.
                r.header = Some(ResponseHeader::default());
                Response::ResponseTxn(r)
            }
            None => continue,
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}

/// Serve a txn that writes nothing (see [`has_writes`]) as a read at revision `at`, without
/// going through the writer, as etcd serves read-only txns.
pub fn read_only(sm: &StateMachine, t: &TxnRequest, at: Revision) -> Result<TxnResponse> {
    precheck_reads(&sm.mvcc, t, at)?;
    let (succeeded, ops) = choose(&sm.mvcc, t, at)?;
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                let rr = sm.mvcc.range(r, at)?;
                Response::ResponseRange(RangeResponse {
                    header: Some(ResponseHeader { revision: at.0, ..Default::default() }),
                    kvs: rr.kvs,
                    more: rr.more,
                    count: rr.count,
                })
            }
            Some(Request::RequestTxn(n)) => {
                let mut r = read_only(sm, n, at)?;
                r.header = Some(ResponseHeader::default());
                Response::ResponseTxn(r)
            }
            _ => return Err(Error::InvalidArgument("a read-only txn holds a write".into())),
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: Bytes::copy_from_slice(k.as_bytes()), ..Default::default() })) }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(keel_proto::etcdserverpb::DeleteRangeRequest {
                key: Bytes::copy_from_slice(k.as_bytes()),
                range_end: Bytes::copy_from_slice(end.as_bytes()),
                ..Default::default()
            })),
        }
    }
    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(TxnRequest { compare: vec![], success, failure })) }
    }

    #[test]
    fn duplicate_writes_table() {
        let table: Vec<(Vec<RequestOp>, bool)> = vec![
            (vec![put("a"), put("b")], true),
            (vec![put("a"), put("a")], false),
            (vec![del("a", "c"), put("b")], false),
            (vec![del("a", "c"), put("c")], true),
            (vec![del("a", "c"), del("b", "d")], true),
            (vec![put("a"), nested(vec![put("b")], vec![put("b")])], true),
            (vec![put("a"), nested(vec![put("a")], vec![])], false),
            (vec![del("a", "c"), del("b", "d"), put("c")], false),
            (vec![del("a", "c"), del("b", "d"), put("d")], true),
            (vec![del("b", "c"), del("a", "b"), put("a")], false),
            // etcd's interval tree holds a from-key delete as an empty interval.
            (vec![put("z"), del("a", "\0")], true),
            (vec![del("b", "a"), put("b")], true),
            // Only one branch of a nested txn runs: each is checked on its own.
            (vec![nested(vec![del("a", "c")], vec![put("b")])], true),
            (vec![nested(vec![put("b")], vec![del("a", "c")])], true),
            (vec![nested(vec![put("b")], vec![put("b"), del("b", "")])], false),
            // This level's puts see every delete below; a nested txn's puts see the deletes of
            // this level and of the nested txns before it (etcd's order), not those after it.
            (vec![put("b"), nested(vec![del("a", "c")], vec![])], false),
            (vec![nested(vec![del("a", "c")], vec![]), nested(vec![put("b")], vec![])], false),
            (vec![nested(vec![put("b")], vec![]), nested(vec![del("a", "c")], vec![])], true),
            (vec![del("a", "c"), nested(vec![], vec![put("b")])], false),
            (vec![nested(vec![put("b")], vec![]), nested(vec![], vec![put("b")])], false),
        ];
        for (i, (ops, ok)) in table.into_iter().enumerate() {
            let t = TxnRequest { compare: vec![], success: ops, failure: vec![] };
            assert_eq!(validate(&t, 128).is_ok(), ok, "row {i}");
        }
    }

    #[test]
    fn an_empty_op_is_refused_like_etcd() {
        let t = TxnRequest { compare: vec![], success: vec![RequestOp { request: None }], failure: vec![] };
        assert_eq!(validate(&t, 128), Err(Error::KeyNotFound));
    }

    #[test]
    fn the_duplicate_check_is_not_quadratic() {
        // 20,000 puts and as many single-key deletes of other keys: a scan per op would take
        // minutes; the interval sets take milliseconds.
        let mut ops: Vec<RequestOp> = (0..20_000).map(|i| put(&format!("p{i:06}"))).collect();
        ops.extend((0..20_000).map(|i| del(&format!("q{i:06}"), "")));
        let t = TxnRequest { compare: vec![], success: vec![nested(ops, vec![])], failure: vec![] };
        assert_eq!(check_dups(&t), Ok(()));
    }

    #[test]
    fn op_limit_counts_the_longest_list() {
        let t = TxnRequest { compare: vec![], success: (0..129).map(|i| put(&format!("k{i}"))).collect(), failure: vec![] };
        assert_eq!(validate(&t, 128), Err(Error::TooManyOps));
        let t = TxnRequest { compare: vec![], success: (0..128).map(|i| put(&format!("k{i}"))).collect(), failure: vec![] };
        assert_eq!(validate(&t, 128), Ok(()));
    }
}
