//! Linearizability of a KV history against [`KvState`], revisions included.
//!
//! Wing & Gong's search with Lowe's memoisation (as porcupine does it): repeatedly pick an
//! operation that may take effect next — one invoked before every not-yet-placed operation's
//! return — step the model with it, and keep it if the model's answer is the one the client got;
//! backtrack otherwise. A (placed set, model state) pair seen before is not searched again.
//! Operations without an answer may take effect at any time after their invocation, or never;
//! the search places one only where it changes the state.
//!
//! etcd's revision is global, so the history is not split by key: one write moves every key's
//! view of the revision. Histories of a few hundred operations with a handful of clients check
//! quickly; a search budget bounds the rest.

use crate::history::{History, Operation};
use crate::model::KvState;
use std::collections::HashSet;

/// Model states the search may visit before it gives up.
pub const DEFAULT_BUDGET: u64 = 2_000_000;

/// Why a history was not shown linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No order explains the answers. `placed` is the longest order found (indices into the
    /// history), `stuck` the answered operations none of which could come next after it.
    NotLinearizable {
        /// The longest prefix of a linearization found.
        placed: Vec<usize>,
        /// Operations that could not be placed after it.
        stuck: Vec<usize>,
    },
    /// The search ran out of budget before deciding.
    Undecided,
}

impl Failure {
    /// A short excerpt for humans: the tail of the longest order and the stuck operations.
    pub fn excerpt(&self, h: &History) -> String {
        match self {
            Failure::Undecided => "search budget exhausted; no verdict".into(),
            Failure::NotLinearizable { placed, stuck } => {
                let mut s = String::from("linearized so far (last 5):\n");
                for &i in placed.iter().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
                    s.push_str(&format!("  {}\n", h.ops[i]));
                }
                s.push_str("none of these can come next:\n");
                for &i in stuck {
                    s.push_str(&format!("  {}\n", h.ops[i]));
                }
                s
            }
        }
    }
}

struct Search<'a> {
    ops: &'a [Operation],
    ret: Vec<u64>,
    seen: HashSet<(Vec<u64>, KvState)>,
    budget: u64,
    best: Vec<usize>,
    best_stuck: Vec<usize>,
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

impl Search<'_> {
    /// True when the operations not in `placed` can be ordered after `state`.
    fn run(&mut self, placed: &mut Vec<u64>, order: &mut Vec<usize>, state: &KvState) -> Result<bool, Failure> {
        // Every answered operation placed: the rest may never have happened.
        let open: Vec<usize> = (0..self.ops.len()).filter(|&i| !is_set(placed, i)).collect();
        let Some(deadline) = open.iter().filter(|&&i| self.ops[i].returned()).map(|&i| self.ret[i]).min() else {
            return Ok(true);
        };
        if !self.seen.insert((placed.clone(), state.clone())) {
            return Ok(false);
        }
        if self.budget == 0 {
            return Err(Failure::Undecided);
        }
        self.budget -= 1;
        let mut candidates: Vec<usize> = open.into_iter().filter(|&i| self.ops[i].call <= deadline).collect();
        // Answered operations first, earliest return first: the likeliest orders come early.
        candidates.sort_by_key(|&i| (!self.ops[i].returned(), self.ret[i]));
        let mut stuck = Vec::new();
        for i in candidates {
            let op = &self.ops[i];
            let (next, answer) = state.step(&op.request);
            // An operation without an answer that changes nothing here (a read, a delete of a
            // missing key) is never worth placing: leaving it out ("it never happened") keeps
            // every option placing it would, and placing it would only multiply the states.
            if op.response.is_none() && next == *state {
                continue;
            }
            if let Some(got) = &op.response
                && *got != answer
            {
                stuck.push(i);
                continue;
            }
            set(placed, i, true);
            order.push(i);
            if self.run(placed, order, &next)? {
                return Ok(true);
            }
            order.pop();
            set(placed, i, false);
        }
        if order.len() >= self.best.len() {
            self.best = order.clone();
            self.best_stuck = stuck;
        }
        Ok(false)
    }
}

/// Check `h` against a store that was at `initial` when the history began.
pub fn check(h: &History, initial: &KvState) -> Result<(), Failure> {
    check_with_budget(h, initial, DEFAULT_BUDGET)
}

/// [`check`] with an explicit search budget (model states visited).
pub fn check_with_budget(h: &History, initial: &KvState, budget: u64) -> Result<(), Failure> {
    let ret = h.ops.iter().map(|o| if o.returned() { o.ret.unwrap_or(u64::MAX) } else { u64::MAX }).collect();
    let mut s = Search { ops: &h.ops, ret, seen: HashSet::new(), budget, best: Vec::new(), best_stuck: Vec::new() };
    let mut placed = vec![0u64; h.ops.len().div_ceil(64).max(1)];
    if s.run(&mut placed, &mut Vec::new(), initial)? {
        Ok(())
    } else {
        Err(Failure::NotLinearizable { placed: s.best, stuck: s.best_stuck })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::{Request, Response};

    /// An operation, for tables of histories.
    pub(crate) fn op(client: u32, call: u64, ret: Option<u64>, request: Request, response: Option<Response>) -> Operation {
        Operation { client, call, ret, request, response }
    }
    /// A put request.
    pub(crate) fn put(k: &str, v: &str) -> Request {
        Request::Put { key: k.into(), value: v.into() }
    }
    fn get(k: &str) -> Request {
        Request::Get { key: k.into() }
    }
    fn got(v: Option<&str>, m: i64, r: i64) -> Option<Response> {
        Some(Response::Get { value: v.map(str::to_string), mod_revision: m, revision: r })
    }
    fn put_ok(r: i64) -> Option<Response> {
        Some(Response::Put { revision: r })
    }
    fn history(ops: Vec<Operation>) -> History {
        History { ops }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = history(vec![
            op(1, 0, Some(1), put("a", "1"), put_ok(2)),
            op(1, 2, Some(3), get("a"), got(Some("1"), 2, 2)),
            op(2, 4, Some(5), put("a", "2"), put_ok(3)),
            op(2, 6, Some(7), get("a"), got(Some("2"), 3, 3)),
        ]);
        assert_eq!(check(&h, &KvState::at(1)), Ok(()));
    }

    #[test]
    fn concurrent_writes_may_land_in_either_order() {
        // Two overlapping puts; a read overlapping both may see either, with the matching revisions.
        let h = history(vec![
            op(1, 0, Some(10), put("a", "x"), put_ok(3)),
            op(2, 1, Some(9), put("a", "y"), put_ok(2)),
            op(3, 11, Some(12), get("a"), got(Some("x"), 3, 3)),
        ]);
        assert_eq!(check(&h, &KvState::at(1)), Ok(()));
    }

    #[test]
    fn a_stale_read_is_caught() {
        // The put was acknowledged before the read began, yet the read missed it: a follower
        // answering a linearizable read from its own stale state.
        let h = history(vec![
            op(1, 0, Some(1), put("a", "1"), put_ok(2)),
            op(1, 2, Some(3), put("a", "2"), put_ok(3)),
            op(2, 4, Some(5), get("a"), got(Some("1"), 2, 2)),
        ]);
        let e = check(&h, &KvState::at(1)).unwrap_err();
        let Failure::NotLinearizable { placed, stuck } = &e else { panic!("{e:?}") };
        assert_eq!(placed, &vec![0, 1]);
        assert_eq!(stuck, &vec![2]);
        assert!(e.excerpt(&h).contains("Get"), "{}", e.excerpt(&h));
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = history(vec![op(1, 0, Some(1), put("a", "1"), put_ok(2)), op(2, 5, Some(6), get("a"), got(None, 0, 2))]);
        assert!(matches!(check(&h, &KvState::at(1)), Err(Failure::NotLinearizable { .. })));
    }

    #[test]
    fn a_wrong_revision_is_caught() {
        // The value is right but the header revision skips one: revisions are part of the model.
        let h = history(vec![op(1, 0, Some(1), put("a", "1"), put_ok(3))]);
        assert!(check(&h, &KvState::at(1)).is_err());
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened() {
        let seen = history(vec![op(1, 0, None, put("a", "1"), None), op(2, 5, Some(6), get("a"), got(Some("1"), 2, 2))]);
        assert_eq!(check(&seen, &KvState::at(1)), Ok(()));
        let unseen = history(vec![op(1, 0, None, put("a", "1"), None), op(2, 5, Some(6), get("a"), got(None, 0, 1))]);
        assert_eq!(check(&unseen, &KvState::at(1)), Ok(()));
        // But it cannot take effect before it was invoked.
        let early = history(vec![op(2, 0, Some(1), get("a"), got(Some("1"), 2, 2)), op(1, 5, None, put("a", "1"), None)]);
        assert!(check(&early, &KvState::at(1)).is_err());
    }

    #[test]
    fn compare_and_put_follows_mod_revisions() {
        let cas = |m: i64, v: &str| Request::CompareAndPut { key: "k".into(), expected_mod: m, value: v.into() };
        let ok = |r: i64| Some(Response::Txn { succeeded: true, revision: r, value: None, mod_revision: 0 });
        let h = history(vec![
            op(1, 0, Some(1), cas(0, "a"), ok(2)),
            op(2, 2, Some(5), cas(2, "b"), ok(3)),
            op(3, 3, Some(6), cas(2, "c"), Some(Response::Txn { succeeded: false, revision: 3, value: Some("b".into()), mod_revision: 3 })),
        ]);
        assert_eq!(check(&h, &KvState::at(1)), Ok(()));
        // Two creates of the same key cannot both succeed.
        let h = history(vec![op(1, 0, Some(4), cas(0, "a"), ok(2)), op(2, 1, Some(3), cas(0, "b"), ok(3))]);
        assert!(check(&h, &KvState::at(1)).is_err());
    }

    #[test]
    fn unanswered_operations_that_change_nothing_cost_nothing() {
        // 30 answered puts, then a read that missed the last one: not linearizable, so the
        // search must rule out every order. 20 deletes of a key that never exists and 20 reads,
        // none answered, overlap it all: were each subset of them a state of its own, the
        // verdict would take millions of states.
        let mut ops = Vec::new();
        for i in 0..30u64 {
            ops.push(op(0, i * 10, Some(i * 10 + 5), put("a", &i.to_string()), put_ok(i as i64 + 2)));
        }
        ops.push(op(0, 400, Some(410), get("a"), got(Some("28"), 30, 30)));
        for i in 0..20u32 {
            ops.push(op(1 + i, 0, None, Request::Delete { key: "missing".into() }, None));
            ops.push(op(100 + i, 0, None, get("a"), None));
        }
        let verdict = check_with_budget(&history(ops), &KvState::at(1), 100_000);
        assert!(matches!(verdict, Err(Failure::NotLinearizable { .. })), "{verdict:?}");
    }

    #[test]
    fn many_concurrent_clients_check_within_budget() {
        // 8 clients, 40 rounds each of put-then-get on their own key, interleaved: 640 ops.
        let mut ops = Vec::new();
        let mut rev = 1;
        for round in 0..40u64 {
            for c in 0..8u32 {
                rev += 1;
                let k = format!("k{c}");
                let t = round * 100 + u64::from(c);
                ops.push(op(c, t, Some(t + 50), put(&k, &round.to_string()), put_ok(rev)));
            }
            for c in 0..8u32 {
                let t = round * 100 + 60 + u64::from(c);
                let k = format!("k{c}");
                let m = rev - 7 + i64::from(c);
                ops.push(op(c, t, Some(t + 30), get(&k), got(Some(&round.to_string()), m, rev)));
            }
        }
        assert_eq!(check(&history(ops), &KvState::at(1)), Ok(()));
    }
}
