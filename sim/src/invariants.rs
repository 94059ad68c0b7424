//! Raft invariants, checked by the harness after every simulation step on every running
//! member: one leader per term, committed entries never change (a member's log holds, at every
//! index any member reported committed, the entry reported there; the nearest entries every
//! step, all of them every 100 steps), applied ≤ committed, and a member's commit index and
//! revision never go back within one incarnation (a restart re-applies; the revision check
//! guards `Applied::publish`, which only ever raises it).

use crate::cluster::Slot;
use keel_store::raft::types::typ;
use openraft::ServerState;
use std::collections::BTreeMap;

/// What the invariants remember between steps.
#[derive(Default)]
pub struct Invariants {
    leaders: BTreeMap<u64, keel_store::types::MemberId>,
    committed: BTreeMap<u64, typ::LogId>,
    /// Per member slot: (incarnation, last revision, last committed index).
    last: BTreeMap<usize, (u64, i64, u64)>,
    steps: u64,
}

/// Every this many steps, each member's whole log is compared with every committed entry seen
/// (in between, the entries nearest its commit index).
const FULL_CHECK_EVERY: u64 = 100;

impl Invariants {
    /// Check every running member once; the first violation found.
    pub fn check(&mut self, slots: &[Slot]) -> Result<(), String> {
        self.steps += 1;
        let full = self.steps.is_multiple_of(FULL_CHECK_EVERY);
        for (i, slot) in slots.iter().enumerate() {
            let Some(running) = slot.running.borrow().clone() else { continue };
            let m = running.replica.metrics();
            let name = &slot.name;
            if m.state == ServerState::Leader {
                let term = m.current_term;
                match self.leaders.insert(term, m.id) {
                    Some(other) if other != m.id => {
                        return Err(format!("two leaders in term {term}: {other:x} and {:x} ({name})", m.id));
                    }
                    _ => {}
                }
            }
            let committed = m.local_committed.map_or(0, |c| c.index());
            let applied = m.last_applied.map_or(0, |a| a.index());
            if applied > committed {
                return Err(format!("{name} applied {applied} but only {committed} is committed"));
            }
            if let Some(c) = m.local_committed {
                if let Some(seen) = self.committed.get(&c.index())
                    && *seen != c
                {
                    return Err(format!("{name} committed {c} at index {} where {seen} was committed", c.index()));
                }
                self.committed.insert(c.index(), c);
                let nearest = if full { usize::MAX } else { 8 };
                for (&index, seen) in self.committed.range(..=c.index()).rev().take(nearest) {
                    if let Some(own) = m.log_id_list.get(index)
                        && own != *seen
                    {
                        return Err(format!("{name} holds {own} at index {index} where {seen} was committed"));
                    }
                }
            }
            let revision = running.applied.visible().0;
            let incarnation = slot.incarnations.get();
            if let Some(&(inc, rev, com)) = self.last.get(&i)
                && inc == incarnation
            {
                if revision < rev {
                    return Err(format!("{name}'s revision went back from {rev} to {revision}"));
                }
                if committed < com {
                    return Err(format!("{name}'s committed index went back from {com} to {committed}"));
                }
            }
            self.last.insert(i, (incarnation, revision, committed));
        }
        Ok(())
    }
}
