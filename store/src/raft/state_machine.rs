//! openraft's state machine over Keel's [`crate::apply::StateMachine`]: committed entries are applied in log
//! order; each applied batch then becomes visible to readers, its events go to the watch hub,
//! and the proposers on this member get their results.
//!
//! Snapshots: *building* one is cheap — the backend is flushed to disk, so the log before it can
//! be purged. The data is written out ([`super::snapshot`]) only when a member needs it, from
//! the state as it is then (the state machine worker runs nothing else meanwhile), with that
//! state's log id.

use super::codec::log_id;
use super::snapshot;
use super::types::{ApplyReply, SnapshotFile, TypeConfig, typ};
use crate::applied::Applied;
use crate::apply::{Command, GroupEvents};
use crate::types::{LogIndex, MemberId, Term};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Applied records are handed to the backend in groups of about this many, after the batch
/// that filled the group is answered. A sled batch costs about 10 µs a record and stops
/// applying while it runs: groups of 1,024 written mid-batch stalled a member's apply for
/// about 10 ms several times a second, which was most of put 64's p99 (21 ms; 12 ms now).
const GROUP_RECORDS: usize = 256;
/// Within one long batch (a member catching up), a group is written out once it holds this
/// many records or bytes, to bound the memory it holds.
const GROUP_MAX_RECORDS: usize = 4096;
const GROUP_MAX_BYTES: usize = 4 << 20;

/// The state machine handle openraft drives.
#[derive(Clone)]
pub struct SmStore {
    applied: Arc<Applied>,
    /// This member, to tell whether an applied membership has it as a learner.
    me: MemberId,
    snap_dir: PathBuf,
    /// The index of the last snapshot built by this process (0: none; openraft builds one at
    /// start when the log was purged, so a restart needs no file).
    built: Arc<AtomicU64>,
}

impl SmStore {
    /// The state machine of member `me` over `applied`, keeping snapshot files in `snap_dir`.
    pub fn new(applied: Arc<Applied>, me: MemberId, snap_dir: PathBuf) -> io::Result<SmStore> {
        std::fs::create_dir_all(&snap_dir)?;
        let stored = decode_membership(applied.read_state().membership.as_deref())?;
        applied.set_learner(is_learner(stored.membership(), me));
        Ok(SmStore { applied, me, snap_dir, built: Arc::new(AtomicU64::new(0)) })
    }

    fn position(&self) -> io::Result<(Option<typ::LogId>, typ::StoredMembership)> {
        let sm = self.applied.read_state();
        let applied = (sm.applied.0 > 0).then(|| log_id(sm.applied_term.0, sm.applied.0));
        Ok((applied, decode_membership(sm.membership.as_deref())?))
    }
}

/// The applied membership as the state machine stores it (none yet: the empty one). A record
/// that does not decode is a storage error, never an empty membership.
pub fn decode_membership(raw: Option<&[u8]>) -> io::Result<typ::StoredMembership> {
    raw.map_or(Ok(Default::default()), |m| serde_json::from_slice(m).map_err(|e| storage(format!("undecodable membership record: {e}"))))
}

/// True when `me` is in `m` but not among its voters.
fn is_learner(m: &typ::Membership, me: MemberId) -> bool {
    m.nodes().any(|(n, _)| *n == me) && !m.voter_ids().any(|v| v == me)
}

fn storage(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<typ::Snapshot> {
        self.applied.write_state().write_group().map_err(storage)?;
        let (last_log_id, last_membership) = self.position()?;
        self.applied.backend.sync().await.map_err(storage)?;
        self.built.fetch_max(last_log_id.map_or(0, |l| l.index), Ordering::AcqRel);
        tracing::info!(index = last_log_id.map_or(0, |l| l.index), "snapshot taken (backend flushed)");
        Ok(typ::Snapshot { meta: typ::SnapshotMeta { last_log_id, last_membership }, snapshot: SnapshotFile { path: PathBuf::new() } })
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<typ::LogId>, typ::StoredMembership)> {
        self.position()
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        // Everything available is applied under one lock; the applied position is recorded
        // once per group written to the backend.
        let mut batch = Vec::new();
        while let Some(item) = entries.try_next().await? {
            batch.push(item);
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut group = GroupEvents::default();
        let mut last = None;
        let mut grew = false;
        let mut auth_changed = false;
        let (rev, nospace, auth_view) = {
            let mut sm = self.applied.write_state();
            for (entry, responder) in batch {
                let id = entry.log_id;
                let result = match entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Membership(m) => {
                        self.applied.set_learner(is_learner(&m, self.me));
                        // A node this membership no longer has was removed, for good.
                        let before = decode_membership(sm.membership.as_deref())?;
                        let gone: Vec<u64> =
                            before.membership().nodes().map(|(id, _)| *id).filter(|id| m.get_node(id).is_none()).map(|id| id.0).collect();
                        sm.record_removed(gone);
                        let stored = typ::StoredMembership::new(Some(id), m);
                        sm.record_membership(serde_json::to_vec(&stored).map_err(storage)?);
                        None
                    }
                    EntryPayload::Normal(cmd) => {
                        let (cmd, guard) = Command::from_log_bytes(&cmd.0).map_err(storage)?;
                        grew |= cmd.grows_store();
                        auth_changed |= matches!(cmd, Command::Auth(_));
                        group.before(&cmd, &sm.mvcc);
                        if matches!(cmd, Command::Compact(_)) {
                            // Compaction drops history readers at the visible revision may
                            // need: everything before it becomes visible first.
                            self.applied.publish(sm.mvcc.current());
                        }
                        match sm.apply(LogIndex(id.index), cmd, guard.as_ref(), self.applied.lease_now()).map_err(storage)? {
                            Ok(mut outcome) => {
                                group.add(&mut outcome);
                                Some(Ok(outcome))
                            }
                            Err(e) => Some(Err(e)),
                        }
                    }
                };
                sm.leases.prune(LogIndex(id.index));
                last = Some(id);
                if sm.unwritten().0 >= GROUP_MAX_RECORDS || sm.unwritten().1 >= GROUP_MAX_BYTES {
                    sm.record_position(Term(id.leader_id.term), LogIndex(id.index));
                    sm.write_group().map_err(storage)?;
                }
                if let Some(r) = responder {
                    replies.push((r, ApplyReply(result)));
                }
            }
            if let Some(id) = last {
                sm.record_position(Term(id.leader_id.term), LogIndex(id.index));
            }
            // The view changes only when an auth command was applied.
            (sm.mvcc.current(), sm.nospace_alarm(), auth_changed.then(|| sm.auth.view()))
        };
        if let Some(index) = last.map(|id| LogIndex(id.index)) {
            self.applied.set_no_space(nospace);
            // Before the applied index rises: a read that waited for it sees auth as applied.
            if let Some(view) = auth_view {
                self.applied.set_auth(view);
            }
            self.applied.publish(rev);
            self.applied.set_applied_index(index);
            // Previous key-values no request asked for are read only if a watcher wants them.
            let (applied, GroupEvents { events, unread }) = (&self.applied, group);
            applied.hub.notify(events, rev, |evs| applied.read_state().mvcc.fill_prev(evs, &unread));
            if grew {
                // As in etcd, only a growing write raises NOSPACE (again, after a disarm).
                self.applied.note_growth();
            }
        }
        for (r, reply) in replies {
            r.send(reply);
        }
        // After the replies: the proposers of this batch do not wait for the backend write.
        if self.applied.read_state().unwritten().0 >= GROUP_RECORDS {
            self.applied.write_state().write_group().map_err(storage)?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &typ::SnapshotMeta, snapshot: SnapshotFile) -> io::Result<()> {
        let applied = self.applied.clone();
        let learner = is_learner(meta.last_membership.membership(), self.me);
        let meta = meta.clone();
        let path = snapshot.path.clone();
        let rev = tokio::task::spawn_blocking(move || -> io::Result<crate::types::Revision> {
            let mut sm = applied.write_state();
            sm.write_group().map_err(storage)?;
            let n = snapshot::load(&*applied.backend, std::fs::File::open(&path)?)?;
            let mut fresh =
                crate::apply::StateMachine::open(applied.backend.clone(), sm.leases.min_ttl(), applied.lease_now()).map_err(storage)?;
            let id = meta.last_log_id.unwrap_or_else(|| log_id(0, 0));
            fresh.record_position(Term(id.leader_id.term), LogIndex(id.index));
            fresh.record_membership(serde_json::to_vec(&meta.last_membership).map_err(storage)?);
            fresh.write_group().map_err(storage)?;
            fresh.auth.adopt_tokens(&sm.auth);
            let rev = fresh.mvcc.current();
            *sm = fresh;
            tracing::info!(records = n, index = id.index, revision = rev.0, "installed a snapshot from the leader");
            Ok(rev)
        })
        .await
        .map_err(storage)??;
        let _ = std::fs::remove_file(&snapshot.path);
        self.applied.backend.sync().await.map_err(storage)?;
        self.applied.set_learner(learner);
        let (nospace, auth_on) = {
            let sm = self.applied.read_state();
            (sm.nospace_alarm(), sm.auth.view())
        };
        self.applied.set_no_space(nospace);
        self.applied.set_auth(auth_on);
        self.applied.publish(rev);
        self.applied.set_applied_index(LogIndex(meta.last_log_id.map_or(0, |l| l.index)));
        self.applied.hub.jump(rev);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<typ::Snapshot>> {
        if self.built.load(Ordering::Acquire) == 0 {
            return Ok(None);
        }
        let applied = self.applied.clone();
        let dir = self.snap_dir.clone();
        let this = self.clone();
        let (path, last_log_id, last_membership) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            // The state machine worker is busy here, so nothing is applied meanwhile.
            applied.write_state().write_group().map_err(storage)?;
            let (last_log_id, membership) = this.position()?;
            let path = dir.join(format!("{:016x}.snap", last_log_id.map_or(0, |l| l.index)));
            if path.exists() {
                // Written for another member at this very position.
                return Ok((path, last_log_id, membership));
            }
            let tmp = path.with_extension("tmp");
            let f = std::fs::File::create(&tmp)?;
            snapshot::dump(&*applied.backend, &f)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok((path, last_log_id, membership))
        })
        .await
        .map_err(storage)??;
        // Older files are no longer offered (a transfer still reading one keeps it open).
        if let Ok(dir) = std::fs::read_dir(&self.snap_dir) {
            for f in dir.flatten() {
                if f.path() != path && f.path().extension().is_some_and(|e| e == "snap") {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        Ok(Some(typ::Snapshot { meta: typ::SnapshotMeta { last_log_id, last_membership }, snapshot: SnapshotFile { path } }))
    }
}
