//! [`Shared`]: what every service, the Raft state machine and the background tasks share. It
//! holds the state machine behind one RwLock (the apply loop writes, many readers read) and the
//! *visible* revision: the newest applied revision (committed on a quorum), which is what
//! readers see as "now".
//!
//! Lock order: `sm` before the watch hub's mutex is never needed (the apply loop releases `sm`
//! before it notifies the hub).

use crate::apply::StateMachine;
use crate::auth::{AuthView, Authz, Caller};
use crate::error::{Error, Result};
use crate::raft::Replica;
use crate::seams::Rng;
use crate::storage::Backend;
use crate::types::{ClusterId, MemberId};
use crate::watch::WatchHub;
use keel_proto::etcdserverpb::ResponseHeader;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::time::Instant;

/// Who this member is, as reported in headers and MemberList.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `--name`.
    pub name: String,
    /// Member ID.
    pub member_id: MemberId,
    /// Cluster ID.
    pub cluster_id: ClusterId,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// `--advertise-client-urls`.
    pub client_urls: Vec<String>,
}

/// Limits checked on every request.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes` (0 = etcd's 2 GiB default already applied by the config).
    pub quota_backend_bytes: u64,
}

/// State shared by the services and tasks of one member.
pub struct Shared {
    sm: RwLock<StateMachine>,
    visible: AtomicI64,
    applied_index: tokio::sync::watch::Sender<u64>,
    term: AtomicU64,
    nospace: AtomicBool,
    raising: AtomicBool,
    learner: AtomicBool,
    auth_on: AtomicBool,
    auth: Mutex<Arc<AuthView>>,
    rng: Mutex<Box<dyn Rng>>,
    /// The backend (for sync and size).
    pub backend: Arc<dyn Backend>,
    /// Watchers.
    pub hub: WatchHub,
    replica: OnceLock<Arc<Replica>>,
    /// This member.
    pub identity: Identity,
    /// Request limits.
    pub limits: Limits,
    /// Request counters and latencies.
    pub metrics: crate::http::metrics::Metrics,
    /// Known bugs switched on by a simulation (none in the binary).
    pub bugs: crate::seams::Bugs,
    lease_clock: Arc<dyn crate::seams::LeaseClock>,
}

/// The seams the shared state keeps.
pub struct SharedSeams {
    /// Known bugs switched on.
    pub bugs: crate::seams::Bugs,
    /// The clock of lease deadlines.
    pub lease_clock: Arc<dyn crate::seams::LeaseClock>,
}

impl Shared {
    /// Now, by the clock lease deadlines are kept by.
    pub fn lease_now(&self) -> Instant {
        self.lease_clock.now()
    }

    /// Assemble the shared state; [`Shared::set_replica`] completes it.
    pub fn new(
        sm: StateMachine,
        backend: Arc<dyn Backend>,
        identity: Identity,
        limits: Limits,
        rng: Box<dyn Rng>,
        seams: SharedSeams,
    ) -> Shared {
        let rev = sm.mvcc.current();
        let applied_index = sm.applied;
        let auth = sm.auth.view();
        Shared {
            sm: RwLock::new(sm),
            visible: AtomicI64::new(rev),
            applied_index: tokio::sync::watch::Sender::new(applied_index),
            term: AtomicU64::new(0),
            nospace: AtomicBool::new(false),
            raising: AtomicBool::new(false),
            learner: AtomicBool::new(false),
            auth_on: AtomicBool::new(auth.enabled()),
            auth: Mutex::new(auth),
            rng: Mutex::new(rng),
            backend,
            hub: WatchHub::new(rev),
            replica: OnceLock::new(),
            identity,
            limits,
            metrics: Default::default(),
            bugs: seams.bugs,
            lease_clock: seams.lease_clock,
        }
    }

    /// Read access to the state machine. Readers must read "as of" [`Shared::visible`].
    pub fn read_state(&self) -> RwLockReadGuard<'_, StateMachine> {
        // A panic in the writer mid-apply is a bug that already stopped the writer; readers may
        // still serve the last visible revision, which is durable and consistent.
        self.sm.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access, for the writer and lease renewals.
    pub fn write_state(&self) -> RwLockWriteGuard<'_, StateMachine> {
        self.sm.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest durable revision.
    pub fn visible(&self) -> i64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Make revisions up to `rev` visible to readers (after they are durable).
    pub fn publish(&self, rev: i64) {
        self.visible.fetch_max(rev, Ordering::AcqRel);
    }

    /// Record that log entries up to `index` are applied.
    pub fn set_applied_index(&self, index: u64) {
        self.applied_index.send_if_modified(|i| {
            let raise = index > *i;
            *i = (*i).max(index);
            raise
        });
    }

    /// Log entries applied so far.
    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// Wait until entries up to `index` are applied, or fail with etcd's timeout at `deadline`.
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<()> {
        let mut rx = self.applied_index.subscribe();
        match tokio::time::timeout_at(deadline, rx.wait_for(|i| *i >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// The Raft term reported in headers.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// Record the current Raft term.
    pub fn set_term(&self, term: u64) {
        self.term.fetch_max(term, Ordering::AcqRel);
    }

    /// Attach the replication handle (once, while the member starts).
    pub fn set_replica(&self, replica: Arc<Replica>) {
        let _ = self.replica.set(replica);
    }

    /// The replication handle.
    pub fn replica(&self) -> Result<&Arc<Replica>> {
        self.replica.get().ok_or(Error::Stopped)
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.identity.cluster_id.0,
            member_id: self.identity.member_id.0,
            revision,
            raft_term: self.term(),
        })
    }

    /// Fill in a header that only carries a revision (watch responses).
    pub fn complete_header(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map_or_else(|| self.visible(), |h| h.revision);
        *h = self.header(rev);
    }

    /// The next 64 bits of the member's seeded randomness.
    pub fn next_random(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).next_u64()
    }

    /// A fresh positive ID (leases).
    pub fn next_id(&self) -> i64 {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let id = (rng.next_u64() >> 1) as i64;
            if id != 0 {
                return id;
            }
        }
    }

    /// 16 random letters: the unguessable part of a simple token. From the operating system's
    /// secure generator, not the seeded one: whoever sees tokens must not predict the next.
    pub fn random_letters(&self) -> Result<String> {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut buf = [0u8; 16];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut buf)
            .map_err(|_| Error::Storage("the system random generator failed".into()))?;
        // 256 is not a multiple of 52; the slight bias costs well under a bit of the ~91.
        Ok(buf.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect())
    }

    /// The rights of `caller` as this member's auth store stands now. With auth off this takes
    /// no lock: a request racing an AuthEnable is refused when applied (its logged auth revision
    /// is 0).
    pub fn authorize_now(&self, caller: &Caller) -> Result<Authz> {
        if !caller.member && !self.auth_on.load(Ordering::Acquire) {
            return Ok(Authz::off());
        }
        let view = self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone();
        view.authorize(caller, Instant::now())
    }

    /// [`Shared::authorize_now`], but a token this member does not know yet is looked up again
    /// after a read barrier: Authenticate may have run on another member whose entry is not
    /// applied here yet.
    pub async fn authorize(&self, caller: &Caller) -> Result<Authz> {
        match self.authorize_now(caller) {
            Err(Error::InvalidAuthToken) if caller.token.is_some() => {
                super::read_barrier(self).await?;
                self.authorize_now(caller)
            }
            other => other,
        }
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

    /// Refuse `caller` unless it holds the root role (or auth is off).
    pub async fn require_admin(&self, caller: &Caller) -> Result<()> {
        self.authorize(caller).await?.check_admin()
    }

    /// Record whether this member is a learner (from the applied membership).
    pub fn set_learner(&self, on: bool) {
        self.learner.store(on, Ordering::Release);
    }

    /// etcd's rule: a learner serves only Status and serializable Range.
    pub fn refuse_if_learner(&self) -> Result<()> {
        if self.learner.load(Ordering::Acquire) { Err(Error::NotSupportedForLearner) } else { Ok(()) }
    }

    /// True while a NOSPACE alarm (of any member) is active.
    pub fn no_space(&self) -> bool {
        self.nospace.load(Ordering::Acquire)
    }

    /// Record whether a NOSPACE alarm is active (from the applied alarms).
    pub fn set_no_space(&self, on: bool) {
        self.nospace.store(on, Ordering::Release);
    }

    /// When this member's backend outgrew the quota, propose its NOSPACE alarm (once; it comes
    /// back after a disarm while the backend is still over quota).
    pub fn check_quota(self: &Arc<Self>) {
        use keel_proto::etcdserverpb::{AlarmRequest, AlarmType, alarm_request::AlarmAction};
        if self.backend.size_bytes() <= self.limits.quota_backend_bytes {
            return;
        }
        let me = self.identity.member_id.0;
        if self.read_state().alarms.contains(&(me, AlarmType::Nospace as i32)) || self.raising.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(quota = self.limits.quota_backend_bytes, "database space exceeded; raising alarm NOSPACE");
        let shared = self.clone();
        tokio::spawn(async move {
            let req = AlarmRequest { action: AlarmAction::Activate as i32, member_id: me, alarm: AlarmType::Nospace as i32 };
            let r = super::propose_as::<keel_proto::etcdserverpb::AlarmResponse>(&shared, crate::apply::Command::Alarm(req)).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "raising alarm NOSPACE failed");
            }
            shared.raising.store(false, Ordering::Release);
        });
    }
}
