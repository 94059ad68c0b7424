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
    /// Deleted ranges as disjoint `[start, end)` intervals, `None` = no end.
    dels: BTreeMap<Bytes, Option<Bytes>>,
}

impl Writes {
    fn deletes(&self, k: &[u8]) -> bool {
        match self.dels.range::<[u8], _>((Bound::Unbounded, Bound::Included(k))).next_back() {
            Some((_, None)) => true,
            Some((_, Some(end))) => k < end.as_ref(),
            None => false,
        }
    }

    fn puts_in(&self, start: &Bytes, end: &Option<Bytes>) -> bool {
        let upper = match end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        self.puts.range((Bound::Included(start.clone()), upper)).next().is_some()
    }

    fn add_put(&mut self, k: Bytes) -> Result<()> {
        if self.puts.contains(&k) || self.deletes(&k) {
            return Err(Error::DuplicateKey);
        }
        self.puts.insert(k);
        Ok(())
    }

    fn add_del(&mut self, kr: &KeyRange) -> Result<()> {
        let (mut start, mut end) = match kr {
            KeyRange::Single(k) => {
                let mut e = k.to_vec();
                e.push(0);
                (k.clone(), Some(Bytes::from(e)))
            }
            KeyRange::Span(k, e) if e.as_ref() > k.as_ref() => (k.clone(), Some(e.clone())),
            KeyRange::Span(..) => return Ok(()),
            KeyRange::From(k) => (k.clone(), None),
        };
        if self.puts_in(&start, &end) {
            return Err(Error::DuplicateKey);
        }
        // Merge with every overlapping or touching interval. They are disjoint and sorted, so
        // they are the one starting at or before `start` (if it reaches it) and those starting
        // within `(start, end]`.
        let mut overlapping: Vec<Bytes> = Vec::new();
        if let Some((s, e)) = self.dels.range::<Bytes, _>((Bound::Unbounded, Bound::Included(start.clone()))).next_back()
            && e.as_ref().is_none_or(|e| e.as_ref() >= start.as_ref())
        {
            overlapping.push(s.clone());
        }
        let upper = end.clone().map_or(Bound::Unbounded, Bound::Included);
        overlapping.extend(self.dels.range::<Bytes, _>((Bound::Excluded(start.clone()), upper)).map(|(s, _)| s.clone()));
        for s in overlapping {
            if let Some(e) = self.dels.remove(&s) {
                if s < start {
                    start = s;
                }
                end = match (end, e) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
        }
        self.dels.insert(start, end);
        Ok(())
    }

    fn absorb(&mut self, other: Writes) -> Result<()> {
        for (s, e) in other.dels {
            let kr = match e {
                Some(e) => KeyRange::Span(s, e),
                None => KeyRange::From(s),
            };
            self.add_del(&kr)?;
        }
        for k in other.puts {
            self.add_put(k)?;
        }
        Ok(())
    }
}

fn check_dups(t: &TxnRequest) -> Result<()> {
    branch_writes(&t.success)?;
    branch_writes(&t.failure)?;
    Ok(())
}

fn branch_writes(ops: &[RequestOp]) -> Result<Writes> {
    let mut w = Writes::default();
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) => w.add_put(p.key.clone())?,
            Some(Request::RequestDeleteRange(d)) => w.add_del(&KeyRange::new(&d.key, &d.range_end))?,
            Some(Request::RequestTxn(n)) => {
                // Only one nested branch runs, so they may write the same keys as each other, but
                // neither may repeat a key of this branch.
                let mut both = branch_writes(&n.success)?;
                let f = branch_writes(&n.failure)?;
                for (s, e) in f.dels {
                    both.dels.entry(s).or_insert(e);
                }
                both.puts.extend(f.puts);
                w.absorb(both)?;
            }
            _ => {}
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

/// Check every op that will run, so a failing txn changes nothing.
fn precheck(sm: &StateMachine, ops: &[RequestOp]) -> Result<()> {
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                check_put(&sm.mvcc, &sm.leases, p, CheckOrder::KeyFirst)?;
            }
            Some(Request::RequestRange(r)) => {
                sm.mvcc.read_revision(r.revision, sm.mvcc.current())?;
            }
            Some(Request::RequestTxn(n)) => {
                let (_, branch) = choose(&sm.mvcc, n, sm.mvcc.current())?;
                precheck(sm, branch)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Execute a validated txn at `ctx`'s revision.
pub fn apply(sm: &mut StateMachine, ctx: &mut WriteCtx<'_>, t: TxnRequest) -> Result<TxnResponse> {
    let (succeeded, ops) = choose(&sm.mvcc, &t, sm.mvcc.current())?;
    precheck(sm, ops)?;
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
            (vec![put("z"), del("a", "\0")], false),
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
