//! [`Shared`]: what every service, the writer and the background tasks share. It holds the state
//! machine behind one RwLock (one writer task, many readers) and the *visible* revision: the
//! newest revision that is durable, which is what readers see as "now".
//!
//! Lock order: `sm` before the watch hub's mutex is never needed (the writer releases `sm`
//! before it notifies the hub).

use crate::apply::StateMachine;
use crate::apply::writer::Proposer;
use crate::seams::Rng;
use crate::storage::Backend;
use crate::types::{ClusterId, MemberId};
use crate::watch::WatchHub;
use keel_proto::etcdserverpb::ResponseHeader;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

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

/// Metadata key: how many times this member started (reported as the raft term).
pub const META_TERM: &[u8] = b"m/term";

/// State shared by the services and tasks of one member.
pub struct Shared {
    sm: RwLock<StateMachine>,
    visible: AtomicI64,
    applied_index: AtomicU64,
    term: u64,
    nospace: AtomicBool,
    rng: Mutex<Box<dyn Rng>>,
    /// The backend (for sync and size).
    pub backend: Arc<dyn Backend>,
    /// Watchers.
    pub hub: WatchHub,
    /// Where mutations go.
    pub proposer: Proposer,
    /// This member.
    pub identity: Identity,
    /// Request limits.
    pub limits: Limits,
    /// Request counters and latencies.
    pub metrics: crate::http::metrics::Metrics,
}

impl Shared {
    /// Assemble the shared state. `term` comes from the backend's metadata.
    pub fn new(
        sm: StateMachine,
        backend: Arc<dyn Backend>,
        proposer: Proposer,
        identity: Identity,
        limits: Limits,
        rng: Box<dyn Rng>,
        term: u64,
    ) -> Shared {
        let rev = sm.mvcc.current();
        let applied_index = sm.applied;
        Shared {
            sm: RwLock::new(sm),
            visible: AtomicI64::new(rev),
            applied_index: AtomicU64::new(applied_index),
            term,
            nospace: AtomicBool::new(false),
            rng: Mutex::new(rng),
            backend,
            hub: WatchHub::new(rev),
            proposer,
            identity,
            limits,
            metrics: Default::default(),
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

    /// Record that log records up to `index` are durable and applied (reported as the raft
    /// index).
    pub fn set_applied_index(&self, index: u64) {
        self.applied_index.fetch_max(index, Ordering::AcqRel);
    }

    /// Log records durable and applied so far.
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }

    /// The term reported in headers.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.identity.cluster_id.0,
            member_id: self.identity.member_id.0,
            revision,
            raft_term: self.term,
        })
    }

    /// Fill in a header that only carries a revision (watch responses).
    pub fn complete_header(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map_or_else(|| self.visible(), |h| h.revision);
        *h = self.header(rev);
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

    /// True while the NOSPACE alarm is raised.
    pub fn no_space(&self) -> bool {
        self.nospace.load(Ordering::Acquire)
    }

    /// Raise the NOSPACE alarm when the backend outgrew the quota.
    pub fn check_quota(&self) {
        if self.backend.size_bytes() > self.limits.quota_backend_bytes && !self.nospace.swap(true, Ordering::AcqRel) {
            tracing::warn!(quota = self.limits.quota_backend_bytes, "database space exceeded; alarm NOSPACE raised");
        }
    }

    /// Clear the NOSPACE alarm (Alarm DEACTIVATE). It comes back at the next write if the
    /// backend is still over quota.
    pub fn disarm_no_space(&self) {
        self.nospace.store(false, Ordering::Release);
    }
}
