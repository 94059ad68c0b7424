//! The replicated state machine: commands in, responses and watch events out.
//!
//! Every mutation of the store is a [`Command`]. Commands are applied one at a time, in order, by
//! [`StateMachine::apply`]; the same sequence of commands gives the same revisions, the same
//! records and the same responses on every member. A command that fails changes nothing.
//!
//! - [`txn`]: Txn validation (op limits, duplicate keys) and execution.

pub mod txn;

use crate::auth::{AuthStore, Guard};
use crate::error::{Error, Fatal, Result};
use crate::lease::Leases;
use crate::mvcc::{KeyRange, Mvcc, UnreadPrev, WriteCtx, codec};
use crate::storage::WriteBatch;
use crate::types::{LeaseId, LogIndex, Revision, Term};
use keel_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, ResponseHeader, TxnRequest,
    TxnResponse,
};
use keel_proto::keelpeerpb::{AuthApplied, AuthCommand};
use keel_proto::mvccpb::Event;
use tokio::time::Instant;

/// One mutation, as proposed, logged and (later) replicated. A protobuf oneof, so the log holds
/// etcd's own request encodings and stays readable across versions.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Command {
    /// KV.Put.
    #[prost(message, tag = "1")]
    Put(PutRequest),
    /// KV.DeleteRange.
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    /// KV.Txn.
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
    /// KV.Compact.
    #[prost(message, tag = "4")]
    Compact(CompactionRequest),
    /// Lease.LeaseGrant with the ID already chosen (non-zero), so every replay agrees on it.
    #[prost(message, tag = "5")]
    LeaseGrant(LeaseGrantRequest),
    /// Lease.LeaseRevoke, or expiry of a lease.
    #[prost(message, tag = "6")]
    LeaseRevoke(LeaseRevokeRequest),
    /// Maintenance.Alarm ACTIVATE/DEACTIVATE (alarms are cluster-wide, as in etcd).
    #[prost(message, tag = "7")]
    Alarm(AlarmRequest),
    /// A change of the auth store (or a simple token handed out by Authenticate).
    #[prost(message, tag = "8")]
    Auth(AuthCommand),
}

/// The log record of a command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LoggedCommand {
    /// The command.
    #[prost(oneof = "Command", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub command: Option<Command>,
    /// For a client's request: the auth revision its permission check saw (0 while auth was
    /// off). Absent for the member's own commands (lease expiry, compaction, alarms).
    #[prost(uint64, optional, tag = "15")]
    pub auth_revision: Option<u64>,
    /// For a client's request while auth was on: the user it was checked for.
    #[prost(string, optional, tag = "16")]
    pub auth_user: Option<String>,
}

impl Command {
    /// The log encoding, with the guard of a client's request.
    pub fn to_log_bytes(&self, guard: Option<&Guard>) -> Vec<u8> {
        // Encoding the oneof alone gives the bytes of a `LoggedCommand` holding it, without
        // cloning the request; the guard's fields follow (protobuf fields may come in any order).
        let mut buf = Vec::with_capacity(self.encoded_len() + 11 + guard.map_or(0, |g| g.user.len() + 3));
        self.encode(&mut buf);
        if let Some(g) = guard {
            prost::encoding::uint64::encode(15, &g.revision, &mut buf);
            if !g.user.is_empty() {
                prost::encoding::string::encode(16, &g.user, &mut buf);
            }
        }
        buf
    }

    /// Decode a log record: the command and its guard.
    pub fn from_log_bytes(raw: &[u8]) -> Result<(Command, Option<Guard>)> {
        let logged: LoggedCommand = prost::Message::decode(raw).map_err(|e| Error::corrupt(format!("undecodable log record: {e}")))?;
        let cmd = logged.command.ok_or_else(|| Error::corrupt("empty log record"))?;
        let guard = logged.auth_revision.map(|revision| Guard { revision, user: logged.auth_user.unwrap_or_default() });
        Ok((cmd, guard))
    }
}

impl Command {
    /// True when the command can only add data (refused while the space quota is exceeded).
    pub fn grows_store(&self) -> bool {
        match self {
            Command::Put(_) | Command::LeaseGrant(_) => true,
            // etcd's quota counts a txn's top-level puts only: deletes may still free space.
            Command::Txn(t) => txn::has_top_level_puts(t),
            _ => false,
        }
    }
}

/// What applying a command produced, before the response header is added.
#[derive(Debug, Clone)]
pub enum Output {
    /// For [`Command::Put`].
    Put(PutResponse),
    /// For [`Command::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// For [`Command::Txn`].
    Txn(TxnResponse),
    /// For [`Command::Compact`].
    Compact(CompactionResponse),
    /// For [`Command::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// For [`Command::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
    /// For [`Command::Alarm`].
    Alarm(AlarmResponse),
    /// For [`Command::Auth`].
    Auth(AuthApplied),
}

/// A response body one kind of command produces; lets callers ask for the body they expect.
pub trait FromOutput: Sized {
    /// The body, if `o` is of this kind.
    fn from_output(o: Output) -> Option<Self>;
    /// Set the response header.
    fn set_header(&mut self, h: Option<ResponseHeader>);
}

macro_rules! from_output {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        $(
            impl FromOutput for $ty {
                fn from_output(o: Output) -> Option<Self> {
                    match o {
                        Output::$variant(r) => Some(r),
                        _ => None,
                    }
                }
                fn set_header(&mut self, h: Option<ResponseHeader>) {
                    self.header = h;
                }
            }
        )*
    };
}

from_output! {
    Put => PutResponse,
    DeleteRange => DeleteRangeResponse,
    Txn => TxnResponse,
    Compact => CompactionResponse,
    LeaseGrant => LeaseGrantResponse,
    LeaseRevoke => LeaseRevokeResponse,
    Alarm => AlarmResponse,
}

impl FromOutput for AuthApplied {
    fn from_output(o: Output) -> Option<Self> {
        match o {
            Output::Auth(r) => Some(r),
            _ => None,
        }
    }
    fn set_header(&mut self, _h: Option<ResponseHeader>) {}
}

/// What applying one command gave: its output, the store revision after it, and its watch
/// events.
#[derive(Debug)]
pub struct Outcome {
    /// The response body.
    pub output: Output,
    /// Store revision after the command.
    pub revision: Revision,
    /// Events in revision order.
    pub events: Vec<Event>,
    /// Events whose previous key-value was left unread.
    pub unread: Vec<UnreadPrev>,
}

/// The watch events of a group of applied commands, some with their previous key-value still
/// unread (see [`UnreadPrev`]). Those are read when a watcher wants them, after the group, or
/// at once before a compaction in the group, which may drop the records they name.
#[derive(Debug, Default)]
pub struct GroupEvents {
    /// Events in revision order.
    pub events: Vec<Event>,
    /// The events whose previous key-value is still unread.
    pub unread: Vec<UnreadPrev>,
}

impl GroupEvents {
    /// Take `applied`'s events into the group.
    pub fn add(&mut self, applied: &mut Outcome) {
        let offset = self.events.len();
        self.unread.extend(applied.unread.drain(..).map(|u| UnreadPrev { event: u.event + offset, ..u }));
        self.events.append(&mut applied.events);
    }

    /// Call before applying `cmd`: a compaction first has every unread value read.
    pub fn before(&mut self, cmd: &Command, mvcc: &Mvcc) {
        if matches!(cmd, Command::Compact(_)) {
            self.read_unread(mvcc);
        }
    }

    /// Read every previous key-value still unread.
    pub fn read_unread(&mut self, mvcc: &Mvcc) {
        mvcc.fill_prev(&mut self.events, &self.unread);
        self.unread.clear();
    }
}

/// Metadata key: the index of the last applied log entry.
pub const META_APPLIED: &[u8] = b"m/applied";
/// Metadata key: the term of the last applied log entry.
pub const META_APPLIED_TERM: &[u8] = b"m/applied_term";
/// Metadata key: the last applied membership (the replication layer's encoding).
pub const META_MEMBERSHIP: &[u8] = b"m/membership";
/// Metadata key: the IDs of members removed from the cluster (etcd's `members_removed`),
/// 8 big-endian bytes each, in order.
pub const META_REMOVED: &[u8] = b"m/removed_members";
/// Metadata key: the active alarms, `(member ID, alarm type)` pairs as 12-byte records.
pub const META_ALARMS: &[u8] = b"m/alarms";

/// IDs stored 8 big-endian bytes each (a trailing partial record is ignored).
fn decode_ids(raw: &[u8]) -> std::collections::BTreeSet<u64> {
    raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect()
}

/// etcd's `--auth-token-ttl` default; the member sets its own after opening.
pub const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// MVCC and leases, changed only through [`StateMachine::apply`].
pub struct StateMachine {
    /// Key history.
    pub mvcc: Mvcc,
    /// Leases and their keys.
    pub leases: Leases,
    /// Index of the last applied log entry (stored with every command's changes).
    pub applied: LogIndex,
    /// Term of the last applied log entry.
    pub applied_term: Term,
    /// The last applied membership, as the replication layer encoded it.
    pub membership: Option<Vec<u8>>,
    /// Members removed from the cluster: their IDs are never admitted again (etcd's rule).
    /// Absent in data dirs from before it was kept: none known.
    pub removed: std::collections::BTreeSet<u64>,
    /// Active alarms: (member ID, alarm type).
    pub alarms: std::collections::BTreeSet<(u64, i32)>,
    /// Users, roles, permissions and tokens.
    pub auth: AuthStore,
    /// Changes of the commands applied since the last [`StateMachine::write_group`]: one
    /// backend batch per group, because sled seals (writes and syncs) a buffer per batch.
    unwritten: WriteBatch,
}

impl StateMachine {
    /// Open the state machine kept in `backend`: the key index rebuilt from the revision
    /// records, the leases with fresh deadlines from `now`, the applied index from metadata.
    pub fn open(backend: std::sync::Arc<dyn crate::storage::Backend>, min_lease_ttl: i64, now: Instant) -> Result<StateMachine> {
        let applied = LogIndex(backend.get(META_APPLIED)?.and_then(|v| codec::decode_i64(&v)).unwrap_or(0) as u64);
        let applied_term = Term(backend.get(META_APPLIED_TERM)?.and_then(|v| codec::decode_i64(&v)).unwrap_or(0) as u64);
        let membership = backend.get(META_MEMBERSHIP)?.map(|v| v.to_vec());
        let removed = backend.get(META_REMOVED)?.map(|v| decode_ids(&v)).unwrap_or_default();
        let alarms = backend
            .get(META_ALARMS)?
            .map(|v| {
                v.chunks_exact(12)
                    .map(|c| {
                        (u64::from_be_bytes(c[..8].try_into().unwrap_or([0; 8])), i32::from_be_bytes(c[8..].try_into().unwrap_or([0; 4])))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let auth = AuthStore::open(&*backend, DEFAULT_TOKEN_TTL)?;
        let mvcc = Mvcc::open(backend.clone())?;
        let leases = Leases::load(&*backend, mvcc.index(), mvcc.current(), min_lease_ttl, now)?;
        Ok(StateMachine { mvcc, leases, applied, applied_term, membership, removed, alarms, auth, unwritten: WriteBatch::default() })
    }

    /// Record that log entries up to (`term`, `index`) are applied; stored with the group.
    pub fn record_position(&mut self, term: Term, index: LogIndex) {
        let mut batch = WriteBatch::default();
        batch.put(META_APPLIED.to_vec(), codec::encode_i64(index.0 as i64));
        batch.put(META_APPLIED_TERM.to_vec(), codec::encode_i64(term.0 as i64));
        self.applied = index;
        self.applied_term = term;
        self.unwritten.append(batch);
    }

    /// Record the membership applied last; stored with the group.
    pub fn record_membership(&mut self, encoded: Vec<u8>) {
        let mut batch = WriteBatch::default();
        batch.put(META_MEMBERSHIP.to_vec(), encoded.clone());
        self.membership = Some(encoded);
        self.unwritten.append(batch);
    }

    /// Record that the members `ids` left the cluster; stored with the group.
    pub fn record_removed(&mut self, ids: impl IntoIterator<Item = u64>) {
        let before = self.removed.len();
        self.removed.extend(ids);
        if self.removed.len() != before {
            let mut batch = WriteBatch::default();
            batch.put(META_REMOVED.to_vec(), self.removed.iter().flat_map(|id| id.to_be_bytes()).collect());
            self.unwritten.append(batch);
        }
    }

    /// Backend operations (and their bytes) applied but not yet handed to the backend.
    pub fn unwritten(&self) -> (usize, usize) {
        (self.unwritten.ops.len(), self.unwritten.bytes())
    }

    /// Hand the changes of every command applied since the last call to the backend, atomically
    /// (not yet durable). Readers never need it before: they read at the visible revision, which
    /// rises only after the group is applied.
    pub fn write_group(&mut self) -> Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        // Kept until the backend took it: on failure nothing is lost and a later call retries.
        let batch = self.unwritten.clone();
        self.mvcc.write_out(batch)?;
        self.unwritten = WriteBatch::default();
        Ok(())
    }

    /// Apply one command as log entry `index`. On success the command's changes join the
    /// group's batch ([`StateMachine::write_group`]); the caller records the applied position
    /// ([`StateMachine::record_position`]) before the group is written. On failure nothing
    /// changes.
    ///
    /// A failure of the member itself (the backend, a record that does not decode) is
    /// [`Fatal`]: the entry cannot be applied, and nothing after it may be.
    pub fn apply(&mut self, index: LogIndex, cmd: Command, guard: Option<&Guard>, now: Instant) -> Result<Result<Outcome>, Fatal> {
        match self.apply_one(index, cmd, guard, now) {
            Err(Error::Internal(e)) => Err(Fatal(e)),
            answer => Ok(answer),
        }
    }

    fn apply_one(&mut self, index: LogIndex, cmd: Command, guard: Option<&Guard>, now: Instant) -> Result<Outcome> {
        if let Some(g) = guard
            && self.auth.enabled()
        {
            if g.revision < self.auth.revision() {
                // The rights the request was checked against have changed since (etcd's rule).
                return Err(if g.revision == 0 { Error::UserEmpty } else { Error::AuthOldRevision });
            }
            self.check_lease_rights(&cmd, &g.user)?;
        }
        if cmd.grows_store() && self.nospace_alarm() {
            // etcd's capped applier: refused in log order, so a write logged after the
            // disarm is taken on every member, and one logged after the alarm is refused.
            return Err(Error::NoSpace);
        }
        let mut batch = WriteBatch::default();
        let mut ctx = self.mvcc.begin(&mut batch);
        let output = match cmd {
            Command::Put(req) => {
                let plan = txn::check_put(&self.mvcc, &self.leases, &req, txn::CheckOrder::LeaseFirst)?;
                Output::Put(self.put(&mut ctx, req, plan)?)
            }
            Command::DeleteRange(req) => Output::DeleteRange(self.delete(&mut ctx, req)?),
            Command::Txn(req) => Output::Txn(txn::apply(self, &mut ctx, req)?),
            Command::Compact(req) => {
                self.mvcc.compact(Revision(req.revision), ctx.batch)?;
                Output::Compact(CompactionResponse::default())
            }
            Command::LeaseGrant(req) => {
                let ttl = self.leases.grant(LeaseId(req.id), req.ttl, now, index, ctx.batch)?;
                Output::LeaseGrant(LeaseGrantResponse { id: req.id, ttl, ..Default::default() })
            }
            Command::LeaseRevoke(req) => {
                let keys = self.leases.revoke(LeaseId(req.id), index, ctx.batch)?;
                for key in keys {
                    self.mvcc.delete(&mut ctx, &KeyRange::Single(key))?;
                }
                Output::LeaseRevoke(LeaseRevokeResponse::default())
            }
            Command::Alarm(req) => Output::Alarm(self.alarm(&req, ctx.batch)),
            Command::Auth(req) => Output::Auth(AuthApplied { auth_revision: self.auth.apply(req, now, ctx.batch)? }),
        };
        self.mvcc.commit(&ctx);
        let (events, unread) = (std::mem::take(&mut ctx.events), std::mem::take(&mut ctx.unread));
        // The applied position is stored by `record_position`, once per group.
        self.applied = index;
        self.unwritten.append(batch);
        Ok(Outcome { output, revision: self.mvcc.current(), events, unread })
    }

    /// A command that revokes a lease, or puts a key under one, needs write rights on every key
    /// the lease holds when it is applied (the keys may have changed since the request's check).
    fn check_lease_rights(&self, cmd: &Command, user: &str) -> Result<()> {
        let leases = match cmd {
            Command::Put(p) if p.lease != 0 => vec![LeaseId(p.lease)],
            Command::LeaseRevoke(r) => vec![LeaseId(r.id)],
            Command::Txn(t) => txn::put_leases(t),
            _ => return Ok(()),
        };
        for id in leases {
            let Some(lease) = self.leases.get(id) else { continue };
            if lease.keys.is_empty() {
                continue;
            }
            if user.is_empty() {
                return Err(Error::UserEmpty);
            }
            let perms = self.auth.perms(user).ok_or(Error::PermissionDenied)?;
            if !lease.keys.iter().all(|k| perms.can_write(k, &[])) {
                return Err(Error::PermissionDenied);
            }
        }
        Ok(())
    }

    /// True while any member's NOSPACE alarm is active.
    pub fn nospace_alarm(&self) -> bool {
        self.alarms.iter().any(|(_, a)| *a == keel_proto::etcdserverpb::AlarmType::Nospace as i32)
    }

    /// Activate or deactivate an alarm; answers with the alarms it changed (etcd's reply).
    fn alarm(&mut self, req: &AlarmRequest, batch: &mut WriteBatch) -> AlarmResponse {
        use keel_proto::etcdserverpb::alarm_request::AlarmAction;
        let key = (req.member_id, req.alarm);
        let changed = match req.action() {
            AlarmAction::Activate if req.alarm != 0 => self.alarms.insert(key),
            AlarmAction::Deactivate => self.alarms.remove(&key),
            _ => false,
        };
        let mut raw = Vec::with_capacity(self.alarms.len() * 12);
        for (m, a) in &self.alarms {
            raw.extend_from_slice(&m.to_be_bytes());
            raw.extend_from_slice(&a.to_be_bytes());
        }
        batch.put(META_ALARMS.to_vec(), raw);
        let alarms = if changed { vec![AlarmMember { member_id: req.member_id, alarm: req.alarm }] } else { Vec::new() };
        AlarmResponse { header: None, alarms }
    }

    pub(crate) fn put(&mut self, ctx: &mut WriteCtx<'_>, req: PutRequest, plan: txn::PutPlan) -> Result<PutResponse> {
        let (before, prev) = self.mvcc.put(ctx, req.key.clone(), plan.value, plan.lease, req.prev_kv)?;
        if let Some(p) = &before
            && p.lease != plan.lease.0
        {
            self.leases.detach(LeaseId(p.lease), &req.key);
        }
        if plan.lease.0 != 0 {
            self.leases.attach(plan.lease, req.key);
        }
        Ok(PutResponse { prev_kv: prev, ..Default::default() })
    }

    pub(crate) fn delete(&mut self, ctx: &mut WriteCtx<'_>, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let kr = KeyRange::new(&req.key, &req.range_end);
        let prevs = self.mvcc.delete(ctx, &kr)?;
        for p in &prevs {
            if p.lease != 0 {
                self.leases.detach(LeaseId(p.lease), &p.key);
            }
        }
        Ok(DeleteRangeResponse {
            deleted: prevs.len() as i64,
            prev_kvs: if req.prev_kv { prevs } else { Vec::new() },
            ..Default::default()
        })
    }
}

/// Reject requests etcd rejects before they reach Raft (`v3rpc/key.go`).
pub fn validate(cmd: &Command, max_txn_ops: usize) -> Result<()> {
    match cmd {
        Command::Put(p) => {
            if p.key.is_empty() {
                return Err(Error::EmptyKey);
            }
            if p.ignore_value && !p.value.is_empty() {
                return Err(Error::ValueProvided);
            }
            if p.ignore_lease && p.lease != 0 {
                return Err(Error::LeaseProvided);
            }
            Ok(())
        }
        Command::DeleteRange(d) if d.key.is_empty() => Err(Error::EmptyKey),
        Command::Txn(t) => txn::validate(t, max_txn_ops),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
