//! [`Context`]: what the services of one member work with. It is assembled last, from parts
//! built before it: the [`Applied`] core, the Raft [`Replica`], the member's identity and
//! limits, its seeded randomness and its request metrics. Nothing it holds points back at it.

use super::metrics::Metrics;
use super::rpc::{Access, OnLearner, Rpc};
use crate::applied::Applied;
use crate::auth::{Authz, Caller};
use crate::error::{Error, Internal, Result};
use crate::raft::Replica;
use crate::seams::{Bugs, Rng, WallClock};
use crate::types::{ClusterId, MemberId, Revision};
use keel_proto::etcdserverpb::ResponseHeader;
use std::sync::{Arc, Mutex};

/// Who this member is, as reported in headers and MemberList.
#[derive(Clone, Debug)]
pub struct Identity {
    /// How a member `MemberAdd` adds is named: etcd's derivation from its peer URLs and the
    /// wall-clock second (the node supplies it; the server does not depend on the node).
    pub added_member_id: fn(&[String], u64) -> MemberId,
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

/// The services' view of one member.
pub struct Context {
    /// What this member has applied.
    pub applied: Arc<Applied>,
    /// Replication.
    pub replica: Arc<Replica>,
    /// This member.
    pub identity: Identity,
    /// Request limits.
    pub limits: Limits,
    /// Request counters and latencies (the RPC layer records, `/metrics` renders).
    pub metrics: Arc<Metrics>,
    /// Known bugs switched on by a simulation (none in the binary).
    pub bugs: Bugs,
    /// Wall-clock time: `MemberAdd` hashes the second into the new member's ID, as etcd does.
    pub clock: Arc<dyn WallClock>,
    /// A std mutex: each draw is a few arithmetic steps.
    rng: Mutex<Box<dyn Rng>>,
}

impl Context {
    /// Assemble the services' context.
    pub fn new(
        applied: Arc<Applied>,
        replica: Arc<Replica>,
        identity: Identity,
        limits: Limits,
        (rng, clock): (Box<dyn Rng>, Arc<dyn WallClock>),
        bugs: Bugs,
    ) -> Context {
        Context { applied, replica, identity, limits, metrics: Arc::new(Metrics::default()), bugs, clock, rng: Mutex::new(rng) }
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: Revision) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.identity.cluster_id.0,
            member_id: self.identity.member_id.0,
            revision: revision.0,
            raft_term: self.applied.term().0,
        })
    }

    /// A header at the visible revision.
    pub fn header_now(&self) -> Option<ResponseHeader> {
        self.header(self.applied.visible())
    }

    /// Fill in a header that only carries a revision (watch responses).
    pub fn complete_header(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map_or_else(|| self.applied.visible(), |h| Revision(h.revision));
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

    /// 16 random letters: the unguessable part of a simple token. From the operating system's
    /// secure generator, not the seeded one: whoever sees tokens must not predict the next.
    pub fn random_letters(&self) -> Result<String> {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut buf = [0u8; 16];
        rustls::crypto::ring::default_provider().secure_random.fill(&mut buf).map_err(|_| Internal::Random)?;
        // 256 is not a multiple of 52; the slight bias costs well under a bit of the ~91.
        Ok(buf.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect())
    }

    /// Wait until a linearizable read may be served on this member (read-index through the
    /// leader).
    pub async fn read_barrier(&self) -> Result<()> {
        if self.bugs.stale_follower_reads && !self.replica.is_leader() {
            return Ok(());
        }
        self.replica.read_barrier(tokio::time::Instant::now() + super::REQUEST_TIMEOUT).await
    }

    /// The rights of `caller`; a token this member does not know yet is looked up again after
    /// a read barrier: Authenticate may have run on another member whose entry is not applied
    /// here yet.
    pub async fn authorize(&self, caller: &Caller) -> Result<Authz> {
        match self.applied.authorize_now(caller) {
            Err(Error::InvalidAuthToken) if caller.token.is_some() => {
                self.read_barrier().await?;
                self.applied.authorize_now(caller)
            }
            other => other,
        }
    }
}

/// The access rules of [`super::rpc`], applied.
impl Context {
    /// etcd's learner interceptor for `rpc`, the first check of every call (`serializable`:
    /// the request reads without a read barrier).
    pub fn gate(&self, rpc: Rpc, serializable: bool) -> Result<()> {
        match rpc.on_learner() {
            OnLearner::Served => Ok(()),
            OnLearner::IfSerializable if serializable => Ok(()),
            _ => self.applied.refuse_if_learner(),
        }
    }

    /// The caller's rights for `rpc` (after [`Context::gate`]): refused without the root role
    /// where the rule asks for it. Not called for [`Access::Open`] RPCs.
    pub async fn admit(&self, rpc: Rpc, caller: &Caller) -> Result<Authz> {
        debug_assert_ne!(rpc.access(), Access::Open, "{rpc:?} does not look at the caller");
        let authz = self.authorize(caller).await?;
        if rpc.access() == Access::Admin {
            authz.check_admin()?;
        }
        Ok(authz)
    }

    /// [`Context::gate`] and [`Context::admit`] together, for calls that validate nothing
    /// before they look at the caller.
    pub async fn enter(&self, rpc: Rpc, caller: &Caller) -> Result<Authz> {
        self.gate(rpc, false)?;
        self.admit(rpc, caller).await
    }
}
