//! Txn: validation before proposing (op limits, duplicate writes, per-op checks) and execution
//! when applied (compares, then one branch, all in one revision).

use super::{Command, StateMachine, validate as validate_cmd};
use crate::error::{Error, Result};
use crate::lease::Leases;
use crate::mvcc::{KeyRange, Mvcc, WriteCtx, compare};
use bytes::Bytes;
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::response_op::Response;
use keel_proto::etcdserverpb::{PutRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse};

/// A put's final value and lease once `ignore_value`/`ignore_lease` are resolved.
pub struct PutPlan {
    /// Value to write.
    pub value: Bytes,
    /// Lease to attach (0 for none).
    pub lease: i64,
}

/// Resolve and check a put against the current state, without changing anything.
pub fn check_put(mvcc: &Mvcc, leases: &Leases, req: &PutRequest) -> Result<PutPlan> {
    let mut plan = PutPlan { value: req.value.clone(), lease: req.lease };
    if req.ignore_value || req.ignore_lease {
        let prev = mvcc.latest(&req.key)?.ok_or(Error::KeyNotFound)?;
        if req.ignore_value {
            plan.value = prev.value;
        }
        if req.ignore_lease {
            plan.lease = prev.lease;
        }
    }
    if plan.lease != 0 && !leases.contains(plan.lease) {
        return Err(Error::LeaseNotFound);
    }
    Ok(plan)
}

/// True when any op of the txn (either branch, nested included) writes.
pub fn has_writes(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => true,
        Some(Request::RequestTxn(t)) => has_writes(t),
        _ => false,
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
            _ => {}
        }
    }
    Ok(())
}

/// Keys a branch puts and ranges it deletes.
#[derive(Default)]
struct Writes {
    puts: Vec<Bytes>,
    dels: Vec<KeyRange>,
}

impl Writes {
    fn conflicts(&self, other: &Writes) -> bool {
        other.puts.iter().any(|k| self.puts.contains(k) || self.dels.iter().any(|d| d.contains(k)))
            || self.puts.iter().any(|k| other.dels.iter().any(|d| d.contains(k)))
    }
    fn extend(&mut self, other: Writes) {
        self.puts.extend(other.puts);
        self.dels.extend(other.dels);
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
        let mut one = Writes::default();
        match &op.request {
            Some(Request::RequestPut(p)) => one.puts.push(p.key.clone()),
            Some(Request::RequestDeleteRange(d)) => one.dels.push(KeyRange::new(&d.key, &d.range_end)),
            Some(Request::RequestTxn(n)) => {
                // Only one nested branch runs, so they may write the same keys as each other, but
                // neither may repeat a key of this branch.
                let s = branch_writes(&n.success)?;
                let f = branch_writes(&n.failure)?;
                one.extend(s);
                one.extend(f);
            }
            _ => continue,
        }
        if w.conflicts(&one) {
            return Err(Error::DuplicateKey);
        }
        w.extend(one);
    }
    Ok(w)
}

/// Which ops run: compares decide the branch, recursively for nested txns.
fn choose<'t>(mvcc: &Mvcc, t: &'t TxnRequest) -> Result<(bool, &'t [RequestOp])> {
    for c in &t.compare {
        let kvs = mvcc.latest_in(&KeyRange::new(&c.key, &c.range_end))?;
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
                check_put(&sm.mvcc, &sm.leases, p)?;
            }
            Some(Request::RequestRange(r)) => {
                sm.mvcc.read_revision(r.revision, sm.mvcc.current())?;
            }
            Some(Request::RequestTxn(n)) => {
                let (_, branch) = choose(&sm.mvcc, n)?;
                precheck(sm, branch)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Execute a validated txn at `ctx`'s revision.
pub fn apply(sm: &mut StateMachine, ctx: &mut WriteCtx<'_>, t: TxnRequest) -> Result<TxnResponse> {
    let (succeeded, ops) = choose(&sm.mvcc, &t)?;
    precheck(sm, ops)?;
    let ops = ops.to_vec();
    let mut responses = Vec::with_capacity(ops.len());
    // Each response inside a txn carries only the revision its op saw: the txn's starting
    // revision until the txn writes, the txn's own revision after that (as etcd reports it).
    let seen = |sm: &StateMachine, ctx: &WriteCtx<'_>| {
        let revision = if ctx.sub > 0 { ctx.rev } else { sm.mvcc.current() };
        Some(ResponseHeader { revision, ..Default::default() })
    };
    for op in ops {
        let response = match op.request {
            Some(Request::RequestRange(r)) => {
                let latest = if ctx.sub > 0 { ctx.rev } else { sm.mvcc.current() };
                let rr = sm.mvcc.range(&r, latest)?;
                Response::ResponseRange(RangeResponse { header: seen(sm, ctx), kvs: rr.kvs, more: rr.more, count: rr.count })
            }
            Some(Request::RequestPut(p)) => {
                let plan = check_put(&sm.mvcc, &sm.leases, &p)?;
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
                r.header = seen(sm, ctx);
                Response::ResponseTxn(r)
            }
            None => continue,
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
        ];
        for (i, (ops, ok)) in table.into_iter().enumerate() {
            let t = TxnRequest { compare: vec![], success: ops, failure: vec![] };
            assert_eq!(validate(&t, 128).is_ok(), ok, "row {i}");
        }
    }

    #[test]
    fn op_limit_counts_the_longest_list() {
        let t = TxnRequest { compare: vec![], success: (0..129).map(|i| put(&format!("k{i}"))).collect(), failure: vec![] };
        assert_eq!(validate(&t, 128), Err(Error::TooManyOps));
        let t = TxnRequest { compare: vec![], success: (0..128).map(|i| put(&format!("k{i}"))).collect(), failure: vec![] };
        assert_eq!(validate(&t, 128), Ok(()));
    }
}
