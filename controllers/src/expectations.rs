//! Expectations (client-go's `UIDTrackingControllerExpectations`): what a controller has asked
//! the apiserver to create or delete and not yet seen in its informer. While a controller's
//! expectations are unmet it does not act on counts (its cache is known to be behind), so watch
//! lag never makes it create or delete twice. Expectations expire after [`TTL`] in case an event
//! was lost, and a deletion is counted once per pod key (graceful deletion shows the same pod
//! first with a deletionTimestamp, then gone).
//!
//! Pure: time comes in as a `tokio::time::Instant`.

use crate::key::ObjectKey;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// After this long unmet expectations no longer block a sync (kube's `ExpectationsTimeout`).
pub const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Entry {
    add: i64,
    del: i64,
    set_at: Instant,
    deleting: HashSet<ObjectKey>,
}

/// Expectations of every object of one controller, keyed by the controller's object key.
#[derive(Debug, Default)]
pub struct Expectations {
    entries: Mutex<HashMap<ObjectKey, Entry>>,
    /// Controllers whose last create may have been written although it failed (see
    /// [`Expectations::uncertain`]).
    uncertain: Mutex<HashSet<ObjectKey>>,
}

impl Expectations {
    /// No expectations.
    pub fn new() -> Expectations {
        Expectations::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<ObjectKey, Entry>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// True when `key` may act on counts: nothing expected, all observed, or expired.
    pub fn satisfied(&self, key: &ObjectKey, now: Instant) -> bool {
        self.with(|m| match m.get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del <= 0) || now.saturating_duration_since(e.set_at) > TTL,
        })
    }

    /// `key` is about to create `n` objects (forgets earlier expectations).
    pub fn expect_creations(&self, key: &ObjectKey, n: usize, now: Instant) {
        self.with(|m| {
            let deleting = m.remove(key).map(|e| e.deleting).unwrap_or_default();
            m.insert(key.clone(), Entry { add: n as i64, del: 0, set_at: now, deleting });
        })
    }

    /// `key` is about to delete the objects `victims`.
    pub fn expect_deletions(&self, key: &ObjectKey, victims: &[ObjectKey], now: Instant) {
        self.with(|m| {
            let deleting: HashSet<ObjectKey> = victims.iter().cloned().collect();
            m.insert(key.clone(), Entry { add: 0, del: deleting.len() as i64, set_at: now, deleting });
        })
    }

    /// `key` is about to create `adds` objects and delete `victims` (kube's SetExpectations).
    pub fn expect(&self, key: &ObjectKey, adds: usize, victims: &[ObjectKey], now: Instant) {
        self.with(|m| {
            let deleting: HashSet<ObjectKey> = victims.iter().cloned().collect();
            m.insert(key.clone(), Entry { add: adds as i64, del: deleting.len() as i64, set_at: now, deleting });
        })
    }

    /// An object `key` created showed up (or a create failed and will not).
    pub fn creation_observed(&self, key: &ObjectKey) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.add -= 1;
            }
        })
    }

    /// Object `victim` of `key` is gone or being deleted; counted once per victim.
    pub fn deletion_observed(&self, key: &ObjectKey, victim: &ObjectKey) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key)
                && e.deleting.remove(victim)
            {
                e.del -= 1;
            }
        })
    }

    /// `key` is gone: drop its expectations.
    pub fn forget(&self, key: &ObjectKey) {
        self.with(|m| {
            m.remove(key);
        });
        self.set_uncertain(key, false);
    }

    /// A create of `key`'s failed in a way that may still have written it (a timeout, a 5xx).
    /// Counting on the cache would create its replacement as soon as the expectation is
    /// lowered, and a second pod when the first shows up after all; while this is set the
    /// controller counts from a fresh (quorum) list before creating more.
    pub fn set_uncertain(&self, key: &ObjectKey, on: bool) {
        let mut u = self.uncertain.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            u.insert(key.clone());
        } else {
            u.remove(key);
        }
    }

    /// Whether `key`'s last create may have been written although it failed.
    pub fn uncertain(&self, key: &ObjectKey) -> bool {
        self.uncertain.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }

    /// Outstanding (adds, deletes) of `key`, for logs and tests.
    pub fn pending(&self, key: &ObjectKey) -> (i64, i64) {
        self.with(|m| m.get(key).map(|e| (e.add, e.del)).unwrap_or((0, 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> ObjectKey {
        ObjectKey::new("ns", n)
    }

    // The cases of kubernetes/pkg/controller/controller_utils_test.go TestControllerExpectations
    // and TestUIDExpectations, as a table of steps.
    #[test]
    fn creations_block_until_observed_or_expired() {
        let t = Instant::now();
        let e = Expectations::new();
        let rs = k("rs");
        assert!(e.satisfied(&rs, t), "no expectations: sync");
        e.expect_creations(&rs, 2, t);
        assert!(!e.satisfied(&rs, t));
        e.creation_observed(&rs);
        assert!(!e.satisfied(&rs, t));
        e.creation_observed(&rs);
        assert!(e.satisfied(&rs, t));
        e.creation_observed(&rs);
        assert!(e.satisfied(&rs, t), "over-observed stays satisfied");
        e.expect_creations(&rs, 1, t);
        assert!(!e.satisfied(&rs, t + TTL));
        assert!(e.satisfied(&rs, t + TTL + Duration::from_secs(1)), "expired");
    }

    #[test]
    fn an_uncertain_create_is_remembered_until_cleared_or_forgotten() {
        let e = Expectations::new();
        let (a, b) = (k("a"), k("b"));
        assert!(!e.uncertain(&a));
        e.set_uncertain(&a, true);
        e.set_uncertain(&b, true);
        assert!(e.uncertain(&a) && e.uncertain(&b));
        e.set_uncertain(&a, false);
        e.forget(&b);
        assert!(!e.uncertain(&a) && !e.uncertain(&b));
    }

    #[test]
    fn each_deleted_pod_counts_once() {
        let t = Instant::now();
        let e = Expectations::new();
        let rs = k("rs");
        e.expect_deletions(&rs, &[k("p1"), k("p2")], t);
        assert_eq!(e.pending(&rs), (0, 2));
        e.deletion_observed(&rs, &k("p1"));
        e.deletion_observed(&rs, &k("p1"));
        e.deletion_observed(&rs, &k("other"));
        assert_eq!(e.pending(&rs), (0, 1), "same pod twice and an unexpected pod do not count");
        assert!(!e.satisfied(&rs, t));
        e.deletion_observed(&rs, &k("p2"));
        assert!(e.satisfied(&rs, t));
        e.forget(&rs);
        assert_eq!(e.pending(&rs), (0, 0));
    }
}
