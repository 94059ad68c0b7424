//! [`Applied`]: what this member has applied, as the rest of the member sees it. It is built
//! first, from the opened state machine, and handed to the Raft state machine (its one
//! writer), to the replica (which waits on the applied index) and to the services (readers);
//! it holds none of them.
//!
//! Invariants:
//! - The *visible* revision only rises, and only to revisions of applied entries (committed on a
//!   quorum). Readers read "as of" it; the writer may already hold newer, unpublished ones.
//! - After a batch is applied, its alarm, learner and auth flags are published first, then its
//!   revision becomes visible, then the applied index rises: whoever waited for an index sees
//!   everything up to it. Its watch events reach the hub after that.
//!
//! Lock order: the state machine lock is never held while the watch hub's mutex is taken (the
//! apply loop releases it before notifying); the auth view's mutex is a leaf.

use crate::apply::StateMachine;
use crate::auth::{AuthView, Authz, Caller};
use crate::error::{Error, Result};
use crate::seams::{Bugs, LeaseClock};
use crate::storage::Backend;
use crate::types::{LogIndex, Revision, Term};
use crate::watch::WatchHub;
use crate::watch::hub::Lagging;
use crate::watch::syncer::{CatchUp, History};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The applied state of one member and the flags derived from it.
pub struct Applied {
    sm: RwLock<StateMachine>,
    visible: AtomicI64,
    applied_index: tokio::sync::watch::Sender<u64>,
    term: AtomicU64,
    nospace: AtomicBool,
    learner: AtomicBool,
    /// Read without a lock on every request: with auth off, no view needs to be taken.
    auth_on: AtomicBool,
    auth: Mutex<Arc<AuthView>>,
    /// A write that can grow the store was applied: the quota is worth checking.
    grown: Notify,
    /// The backend under the state machine (for syncs and its size).
    pub backend: Arc<dyn Backend>,
    /// Watchers.
    pub hub: WatchHub,
    lease_clock: Arc<dyn LeaseClock>,
}

impl Applied {
    /// Wrap the state machine opened on `backend`; lease deadlines are kept by `lease_clock`;
    /// `bugs` reach the watch hub (none in the binary).
    pub fn new(sm: StateMachine, backend: Arc<dyn Backend>, lease_clock: Arc<dyn LeaseClock>, bugs: Bugs) -> Applied {
        let rev = sm.mvcc.current();
        let applied_index = sm.applied;
        let auth = sm.auth.view();
        Applied {
            sm: RwLock::new(sm),
            visible: AtomicI64::new(rev.0),
            applied_index: tokio::sync::watch::Sender::new(applied_index.0),
            term: AtomicU64::new(0),
            nospace: AtomicBool::new(false),
            learner: AtomicBool::new(false),
            auth_on: AtomicBool::new(auth.enabled()),
            auth: Mutex::new(auth),
            grown: Notify::new(),
            backend,
            hub: WatchHub::with_bugs(rev, bugs),
            lease_clock,
        }
    }

    /// Now, by the clock lease deadlines are kept by.
    pub fn lease_now(&self) -> Instant {
        self.lease_clock.now()
    }

    /// Read access to the state machine. Readers must read "as of" [`Applied::visible`].
    pub fn read_state(&self) -> RwLockReadGuard<'_, StateMachine> {
        // A panic in the writer mid-apply is a bug that already stopped the writer; readers may
        // still serve the last visible revision, which is durable and consistent.
        self.sm.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access, for the writer, lease renewals and backend maintenance.
    pub fn write_state(&self) -> RwLockWriteGuard<'_, StateMachine> {
        self.sm.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest applied revision.
    pub fn visible(&self) -> Revision {
        Revision(self.visible.load(Ordering::Acquire))
    }

    /// Make revisions up to `rev` visible to readers.
    pub fn publish(&self, rev: Revision) {
        self.visible.fetch_max(rev.0, Ordering::AcqRel);
    }

    /// Record that log entries up to `index` are applied.
    pub fn set_applied_index(&self, index: LogIndex) {
        self.applied_index.send_if_modified(|i| {
            let raise = index.0 > *i;
            *i = (*i).max(index.0);
            raise
        });
    }

    /// Log entries applied so far.
    pub fn applied_index(&self) -> LogIndex {
        LogIndex(*self.applied_index.borrow())
    }

    /// Wait until entries up to `index` are applied, or fail with etcd's timeout at `deadline`.
    pub async fn wait_applied(&self, index: LogIndex, deadline: Instant) -> Result<()> {
        let mut rx = self.applied_index.subscribe();
        match tokio::time::timeout_at(deadline, rx.wait_for(|i| *i >= index.0)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// The Raft term reported in headers.
    pub fn term(&self) -> Term {
        Term(self.term.load(Ordering::Acquire))
    }

    /// Record the current Raft term.
    pub fn set_term(&self, term: Term) {
        self.term.fetch_max(term.0, Ordering::AcqRel);
    }

    /// The rights of `caller` as this member's auth store stands now. With auth off and no
    /// token this takes no lock: a request racing an AuthEnable is refused when applied (its
    /// logged auth revision is 0). A token is checked even with auth off, as etcd checks it.
    pub fn authorize_now(&self, caller: &Caller) -> Result<Authz> {
        if !caller.member && caller.token.is_none() && !self.auth_on.load(Ordering::Acquire) {
            return Ok(Authz::off());
        }
        let view = self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone();
        view.authorize(caller, Instant::now())
    }

    /// True when the auth store is still at the revision `authz` was checked at (always with
    /// auth off): a read that ran meanwhile saw the rights it was checked against.
    pub fn auth_unchanged_since(&self, authz: &Authz) -> bool {
        match authz.checked_at() {
            Some(rev) => self.auth.lock().unwrap_or_else(|p| p.into_inner()).revision() == rev,
            None if authz.is_member() => true,
            // Checked with auth off: still fine only if it is still off.
            None => !self.auth_on.load(Ordering::Acquire),
        }
    }

    /// Publish the applied auth store's view for the request path.
    pub fn set_auth(&self, view: Arc<AuthView>) {
        self.auth_on.store(view.enabled(), Ordering::Release);
        *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Record whether this member is a learner (from the applied membership).
    pub fn set_learner(&self, on: bool) {
        self.learner.store(on, Ordering::Release);
    }

    /// True while the applied membership has this member as a learner.
    pub fn is_learner(&self) -> bool {
        self.learner.load(Ordering::Acquire)
    }

    /// etcd's rule: a learner serves only Status and serializable Range.
    pub fn refuse_if_learner(&self) -> Result<()> {
        if self.is_learner() { Err(Error::NotSupportedForLearner) } else { Ok(()) }
    }

    /// True while a NOSPACE alarm (of any member) is active.
    pub fn no_space(&self) -> bool {
        self.nospace.load(Ordering::Acquire)
    }

    /// Record whether a NOSPACE alarm is active (from the applied alarms).
    pub fn set_no_space(&self, on: bool) {
        self.nospace.store(on, Ordering::Release);
    }

    /// Say that a write which can grow the store was applied (or space was given back).
    pub fn note_growth(&self) {
        self.grown.notify_one();
    }

    /// Wait for the next [`Applied::note_growth`] (one that came while nobody waited counts).
    pub async fn grown(&self) {
        self.grown.notified().await
    }
}

/// The watch syncer's history is the applied state's MVCC.
impl History for Applied {
    fn hub(&self) -> &WatchHub {
        &self.hub
    }

    fn read(&self, lag: &Lagging, to: Revision, max_events: usize) -> Result<CatchUp> {
        let sm = self.read_state();
        if lag.watcher.next_rev.0 < 0 {
            // etcd: a negative start revision reads no history (as a revision key it sorts
            // after every record) and, as any start below the first revision, is cancelled
            // once anything was compacted (the first revision is -1 until then).
            let first = sm.mvcc.first_rev();
            if lag.watcher.next_rev < first {
                return Ok(CatchUp::Compacted(first));
            }
            return Ok(CatchUp::Events(Vec::new(), to));
        }
        let compacted = sm.mvcc.compacted();
        if lag.watcher.next_rev < compacted {
            return Ok(CatchUp::Compacted(compacted));
        }
        let (events, covered) = sm.mvcc.events(lag.watcher.next_rev, to, max_events, lag.watcher.prev_kv)?;
        Ok(CatchUp::Events(events, covered))
    }
}
