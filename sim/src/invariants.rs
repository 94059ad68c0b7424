//! Raft invariants, checked by the harness after every simulation step on every running
//! member: one leader per term, committed entries never change, applied ≤ committed, and a
//! member's revision never goes backwards (within one incarnation: a restart re-applies).

use crate::cluster::Slot;
use keel_store::raft::types::typ;
use openraft::ServerState;
use std::collections::BTreeMap;

/// What the invariants remember between steps.
#[derive(Default)]
pub struct Invariants {
    leaders: BTreeMap<u64, u64>,
    committed: BTreeMap<u64, typ::LogId>,
    /// Per member slot: (incarnation, last revision, last committed index).
    last: BTreeMap<usize, (u64, i64, u64)>,
}

impl Invariants {
    /// Check every running member once; the first violation found.
    pub fn check(&mut self, slots: &[Slot]) -> Result<(), String> {
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
                for (&index, seen) in self.committed.range(..=c.index()).rev().take(8) {
                    if let Some(own) = m.log_id_list.get(index)
                        && own != *seen
                    {
                        return Err(format!("{name} holds {own} at index {index} where {seen} was committed"));
                    }
                }
            }
            let revision = running.shared.visible();
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
