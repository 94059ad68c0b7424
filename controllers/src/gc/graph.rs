//! The garbage collector's decisions, without I/O (kube's `attemptToDeleteItem`,
//! `processDeletingDependentsItem`, `orphanDependents` choices). Given the state of each owner
//! an object names, what happens to the object:
//!
//! | owners | decision |
//! |---|---|
//! | some solid (existing, not waiting) | keep; drop dangling refs, unblock refs to waiting owners |
//! | none solid, some waiting for dependents (foreground), object has dependents | delete in Foreground |
//! | otherwise (all dangling, or waiting with no dependents) | delete, policy from its own finalizers (orphan → Orphan, foregroundDeletion → Foreground, else Background) |
//!
//! And for an object being deleted: with the `orphan` finalizer its dependents lose their
//! reference to it, then the finalizer goes; with `foregroundDeletion` its blocking dependents
//! (`blockOwnerDeletion: true`) are deleted first, and the finalizer goes when none is left.

/// The `orphan` finalizer (`propagationPolicy: Orphan`).
pub const ORPHAN: &str = "orphan";
/// The `foregroundDeletion` finalizer (`propagationPolicy: Foreground`).
pub const FOREGROUND: &str = "foregroundDeletion";

/// What an owner reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Exists with that uid and is not waiting for its dependents.
    Solid,
    /// Does not exist (or exists with another uid, or is unreachable by the reference, e.g. a
    /// namespaced owner of a cluster-scoped object).
    Dangling,
    /// Exists, being deleted in the foreground (waiting for its dependents).
    Waiting,
}

/// A deletion's propagation policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Dependents are deleted after the object.
    Background,
    /// Dependents are deleted before the object.
    Foreground,
    /// Dependents are kept, without the reference.
    Orphan,
}

impl Policy {
    /// The policy's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Background => "Background",
            Policy::Foreground => "Foreground",
            Policy::Orphan => "Orphan",
        }
    }
}

/// One of the object's owner references, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    /// The owner's uid.
    pub uid: String,
    /// What it points at.
    pub state: Owner,
    /// `blockOwnerDeletion`.
    pub blocks: bool,
}

/// What to do with an object that is not being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Keep,
    /// Keep it, but drop the references to `remove` and set `blockOwnerDeletion: false` on the
    /// references to `unblock`.
    Patch {
        /// Dangling owners' uids.
        remove: Vec<String>,
        /// Waiting owners' uids whose references block.
        unblock: Vec<String>,
    },
    /// Delete it (after unblocking the references to `unblock`).
    Delete {
        /// How its own dependents go.
        policy: Policy,
        /// Owners' uids whose references must stop blocking first.
        unblock: Vec<String>,
    },
}

/// `attemptToDeleteItem` for an object with `owners`. `has_dependents`: something names it
/// as owner; `dependent_deleting_dependents`: one of those is itself deleting in the
/// foreground (a possible cycle: unblock before deleting).
pub fn decide(owners: &[Ref], has_dependents: bool, dependent_deleting_dependents: bool, finalizers: &[String]) -> Decision {
    if owners.is_empty() {
        return Decision::Keep;
    }
    let of = |s: Owner| owners.iter().filter(move |r| r.state == s);
    if of(Owner::Solid).next().is_some() {
        let remove: Vec<String> = of(Owner::Dangling).map(|r| r.uid.clone()).collect();
        let unblock: Vec<String> = of(Owner::Waiting).filter(|r| r.blocks).map(|r| r.uid.clone()).collect();
        return if remove.is_empty() && unblock.is_empty() { Decision::Keep } else { Decision::Patch { remove, unblock } };
    }
    if of(Owner::Waiting).next().is_some() && has_dependents {
        let unblock =
            if dependent_deleting_dependents { owners.iter().filter(|r| r.blocks).map(|r| r.uid.clone()).collect() } else { vec![] };
        return Decision::Delete { policy: Policy::Foreground, unblock };
    }
    let policy = if finalizers.iter().any(|f| f == ORPHAN) {
        Policy::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        Policy::Foreground
    } else {
        Policy::Background
    };
    Decision::Delete { policy, unblock: vec![] }
}

/// What to do with an object being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleting {
    /// No finalizer of ours: nothing.
    Nothing,
    /// Remove the reference from every dependent, then the `orphan` finalizer.
    Orphan,
    /// No blocking dependent left: remove the `foregroundDeletion` finalizer.
    Finish,
    /// Delete these blocking dependents (by index into the dependents given) first.
    Wait(Vec<usize>),
}

/// `processDeletingDependentsItem` / orphaning for an object being deleted with `finalizers`
/// whose dependents' references to it have `blocks` (`blockOwnerDeletion`) as given.
pub fn deleting(finalizers: &[String], dependents_block: &[bool]) -> Deleting {
    if finalizers.iter().any(|f| f == ORPHAN) {
        return Deleting::Orphan;
    }
    if finalizers.iter().any(|f| f == FOREGROUND) {
        let blocking: Vec<usize> = dependents_block.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect();
        return if blocking.is_empty() { Deleting::Finish } else { Deleting::Wait(blocking) };
    }
    Deleting::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(uid: &str, state: Owner, blocks: bool) -> Ref {
        Ref { uid: uid.into(), state, blocks }
    }

    // After kubernetes/pkg/controller/garbagecollector/garbagecollector_test.go
    // TestAttemptToDeleteItem and the TestCascadingDeletion integration cases.
    #[test]
    fn owners_decide_keep_patch_or_delete() {
        let none: Vec<String> = vec![];
        type Row = (&'static str, Vec<Ref>, bool, bool, Vec<String>, Decision);
        let rows: Vec<Row> = vec![
            ("no owners", vec![], false, false, none.clone(), Decision::Keep),
            ("solid owner", vec![r("a", Owner::Solid, true)], false, false, none.clone(), Decision::Keep),
            (
                "solid and dangling",
                vec![r("a", Owner::Solid, true), r("b", Owner::Dangling, true)],
                false,
                false,
                none.clone(),
                Decision::Patch { remove: vec!["b".into()], unblock: vec![] },
            ),
            (
                "solid and waiting",
                vec![r("a", Owner::Solid, false), r("w", Owner::Waiting, true)],
                false,
                false,
                none.clone(),
                Decision::Patch { remove: vec![], unblock: vec!["w".into()] },
            ),
            (
                "all dangling",
                vec![r("a", Owner::Dangling, true)],
                false,
                false,
                none.clone(),
                Decision::Delete { policy: Policy::Background, unblock: vec![] },
            ),
            (
                "all dangling, own orphan finalizer",
                vec![r("a", Owner::Dangling, true)],
                true,
                false,
                vec![ORPHAN.into()],
                Decision::Delete { policy: Policy::Orphan, unblock: vec![] },
            ),
            (
                "waiting owner, object with dependents: foreground",
                vec![r("w", Owner::Waiting, true)],
                true,
                false,
                none.clone(),
                Decision::Delete { policy: Policy::Foreground, unblock: vec![] },
            ),
            (
                "waiting owner, dependent also deleting dependents: unblock first",
                vec![r("w", Owner::Waiting, true)],
                true,
                true,
                none.clone(),
                Decision::Delete { policy: Policy::Foreground, unblock: vec!["w".into()] },
            ),
            (
                "waiting owner, no dependents: background",
                vec![r("w", Owner::Waiting, true)],
                false,
                false,
                none.clone(),
                Decision::Delete { policy: Policy::Background, unblock: vec![] },
            ),
        ];
        for (what, owners, deps, cyc, fin, want) in rows {
            assert_eq!(decide(&owners, deps, cyc, &fin), want, "{what}");
        }
    }

    #[test]
    fn deleting_objects_orphan_or_wait_for_blocking_dependents() {
        assert_eq!(deleting(&[ORPHAN.into()], &[true]), Deleting::Orphan);
        assert_eq!(deleting(&[FOREGROUND.into()], &[false, true, true]), Deleting::Wait(vec![1, 2]));
        assert_eq!(deleting(&[FOREGROUND.into()], &[false]), Deleting::Finish, "non-blocking dependents do not hold the owner");
        assert_eq!(deleting(&["example.com/x".into()], &[true]), Deleting::Nothing);
    }
}
