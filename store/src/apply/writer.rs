//! The single writer: it owns the order of commands. Two stages, so applying never waits for the
//! disk and the disk never waits for applying:
//!
//! ```text
//!  proposals --> [apply stage] --applied groups--> [sync stage] --> readers, watchers, replies
//!               take all waiting; apply each,      take all groups waiting;
//!               append it to the log               ONE log fsync for all of them (group commit)
//! ```
//!
//! Order of effects for every command (the durability and visibility contract):
//! 1. applied to the state machine (backend write, not yet durable) and, if it changed state,
//!    appended to the log with the index the state machine recorded;
//! 2. a log sync that started after step 1 returned;
//! 3. the visible revision rises, so reads include it;
//! 4. its events reach the watch hub;
//! 5. its proposer is answered.
//!
//! The backend itself is flushed in the background ([`run_flusher`]); after a crash the log is
//! replayed over it from its applied index. A storage failure is fatal: every waiting proposer
//! gets an error and the writer stops, so the member serves no write it cannot make durable.

use super::{Applied, Command};
use crate::error::{Error, Result};
use crate::server::state::Shared;
use crate::wal::CommandLog;
use keel_proto::mvccpb::Event;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most commands in one applied group.
const GROUP_MAX: usize = 1024;
/// Backend writes held back before the apply stage hands them to the backend; until then
/// readers find them in the state machine's overlay. Larger groups cost sled less, and the
/// write stays off the path of small requests.
const UNWRITTEN_OPS_MAX: usize = 1024;
/// The same limit in bytes of keys and values (bounds memory, and keeps the space quota close).
const UNWRITTEN_BYTES_MAX: usize = 1 << 20;
/// Applied groups that may wait for the disk; past this the apply stage waits too.
const SYNC_QUEUE: usize = 64;

/// A command waiting to be applied.
pub struct Proposal {
    /// What to apply.
    pub cmd: Command,
    /// Where the result goes.
    pub reply: oneshot::Sender<Result<Applied>>,
}

/// The handle proposers use.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
}

impl Proposer {
    /// Create a proposer and the receiving end for [`run`].
    pub fn new(queue: usize) -> (Proposer, mpsc::Receiver<Proposal>) {
        let (tx, rx) = mpsc::channel(queue);
        (Proposer { tx }, rx)
    }

    /// Apply `cmd` and wait until it is durable and visible.
    pub async fn propose(&self, cmd: Command) -> Result<Applied> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Proposal { cmd, reply }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }
}

/// The log, shared by the two stages and the flusher. A std mutex: each holder appends or
/// hands out a sync closure, never awaiting while holding it.
pub type SharedLog = Arc<Mutex<Box<dyn CommandLog>>>;

fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, Box<dyn CommandLog>> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

type Reply = (oneshot::Sender<Result<Applied>>, Result<Applied>);

/// A group applied but not yet durable.
struct AppliedGroup {
    last_rev: i64,
    last_index: u64,
    replies: Vec<Reply>,
}

/// Run both stages; returns when every proposer is gone or storage fails.
pub async fn run(shared: Arc<Shared>, log: SharedLog, rx: mpsc::Receiver<Proposal>) {
    let (tx, synced_rx) = mpsc::channel(SYNC_QUEUE);
    tokio::join!(apply_stage(shared.clone(), log.clone(), rx, tx), sync_stage(shared, log, synced_rx));
}

async fn apply_stage(
    shared: Arc<Shared>,
    log: SharedLog,
    mut rx: mpsc::Receiver<Proposal>,
    out: mpsc::Sender<Result<AppliedGroup, String>>,
) {
    let mut group: Vec<Proposal> = Vec::with_capacity(GROUP_MAX);
    loop {
        if group.is_empty() && rx.recv_many(&mut group, GROUP_MAX).await == 0 {
            return;
        }
        if matches!(group.first().map(|p| &p.cmd), Some(Command::Compact(_))) {
            // Compaction drops index entries that readers at the visible revision may still
            // need, so it is applied only once everything before it is visible.
            let current = shared.read_state().mvcc.current();
            while shared.visible() < current {
                if out.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let mut replies = Vec::with_capacity(group.len());
        let mut failure = None;
        let (last_rev, last_index) = {
            let mut sm = shared.write_state();
            sm.leases.prune(shared.applied_index());
            let mut log = lock(&log);
            let now = Instant::now();
            let mut pending = std::mem::take(&mut group).into_iter().peekable();
            while let Some(p) = pending.next_if(|p| replies.is_empty() || !matches!(p.cmd, Command::Compact(_))) {
                let index = log.next_index();
                let record = p.cmd.to_log_bytes();
                let result = if p.cmd.grows_store() && shared.no_space() { Err(Error::NoSpace) } else { sm.apply(index, p.cmd, now) };
                match &result {
                    Ok(_) => {
                        if let Err(e) = log.append(&record) {
                            failure = Some(format!("appending to the log: {e}"));
                        }
                    }
                    Err(Error::Storage(msg)) => failure = Some(msg.clone()),
                    Err(_) => {}
                }
                replies.push((p.reply, result));
                if failure.is_some() {
                    break;
                }
            }
            // Proposals after a storage failure are answered with it below; after a compaction
            // that has to wait, they are the next group.
            group.extend(pending);
            if failure.is_none()
                && (sm.unwritten().0 >= UNWRITTEN_OPS_MAX || sm.unwritten().1 >= UNWRITTEN_BYTES_MAX)
                && let Err(e) = sm.write_group()
            {
                failure = Some(e.to_string());
            }
            (sm.mvcc.current(), sm.applied)
        };
        if let Some(msg) = failure {
            tracing::error!(error = %msg, "storage failed while applying; the writer stops");
            fail(replies, &msg);
            for p in std::mem::take(&mut group) {
                let _ = p.reply.send(Err(Error::Storage(msg.clone())));
            }
            let _ = out.send(Err(msg)).await;
            rx.close();
            return;
        }
        if out.send(Ok(AppliedGroup { last_rev, last_index, replies })).await.is_err() {
            return;
        }
    }
}

async fn sync_stage(shared: Arc<Shared>, log: SharedLog, mut rx: mpsc::Receiver<Result<AppliedGroup, String>>) {
    let mut waiting = Vec::with_capacity(SYNC_QUEUE);
    loop {
        if rx.recv_many(&mut waiting, SYNC_QUEUE).await == 0 {
            return;
        }
        let mut groups = Vec::with_capacity(waiting.len());
        let mut failure = None;
        for g in waiting.drain(..) {
            match g {
                Ok(g) => groups.push(g),
                Err(msg) => failure = Some(msg),
            }
        }
        if failure.is_none() {
            let prepared = lock(&log).prepare_sync();
            let synced = match prepared {
                Ok(sync) => run_blocking(sync).await,
                Err(e) => Err(e),
            };
            if let Err(e) = synced {
                tracing::error!(error = %e, "log fsync failed; the writer stops");
                failure = Some(e.to_string());
            }
        }
        if let Some(msg) = failure {
            for g in groups {
                fail(g.replies, &msg);
            }
            rx.close();
            return;
        }
        let last_rev = groups.iter().map(|g| g.last_rev).max().unwrap_or(0).max(shared.visible());
        let last_index = groups.iter().map(|g| g.last_index).max().unwrap_or(0);
        shared.publish(last_rev);
        shared.set_applied_index(last_index);
        let events: Vec<Event> = groups
            .iter_mut()
            .flat_map(|g| g.replies.iter_mut())
            .filter_map(|(_, r)| r.as_mut().ok())
            .flat_map(|a| std::mem::take(&mut a.events))
            .collect();
        shared.hub.notify(events, last_rev);
        shared.check_quota();
        for g in groups {
            for (reply, result) in g.replies {
                let _ = reply.send(result);
            }
        }
    }
}

/// Run a blocking sync. On a multi-threaded runtime the sync stage's own worker does it in place
/// (a hand-off to the blocking pool costs more than a fast fsync); elsewhere (the simulation's
/// single thread) it goes to the blocking pool.
async fn run_blocking(sync: crate::wal::SyncFn) -> std::io::Result<()> {
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(sync)
    } else {
        tokio::task::spawn_blocking(sync).await.map_err(std::io::Error::other)?
    }
}

fn fail(replies: Vec<Reply>, msg: &str) {
    for (reply, _) in replies {
        let _ = reply.send(Err(Error::Storage(msg.to_string())));
    }
}

/// Flush the backend every `interval` and drop the log records it now holds durably, so the log
/// stays short and a restart replays little.
pub async fn run_flusher(shared: Arc<Shared>, log: SharedLog, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Hand everything applied so far to the backend; the flush then covers up to `applied`.
        let applied = {
            let mut sm = shared.write_state();
            if let Err(e) = sm.write_group() {
                tracing::error!(error = %e, "writing to the backend failed");
                continue;
            }
            sm.applied
        };
        if let Err(e) = shared.backend.sync().await {
            tracing::error!(error = %e, "flushing the backend failed");
            continue;
        }
        if let Err(e) = lock(&log).release(applied) {
            tracing::warn!(error = %e, "releasing log segments failed");
        }
    }
}
