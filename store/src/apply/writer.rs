//! The single writer: it owns the order of commands. It takes every proposal waiting at that
//! moment, applies them one after another, makes them durable with one `sync` (group commit),
//! then publishes the new revision to readers and watchers and answers the proposers.
//!
//! Order of effects for a group (the durability and visibility contract):
//! 1. apply each command to MVCC (index + backend write, not yet durable);
//! 2. `backend.sync()` — one fsync for the whole group;
//! 3. raise the visible revision, so reads include the group;
//! 4. hand the events to the watch hub;
//! 5. answer each proposer.
//!
//! A storage failure is fatal: every waiting proposer gets an error and the writer stops, so the
//! member serves no write it cannot make durable.

use super::{Applied, Command};
use crate::error::{Error, Result};
use crate::server::state::Shared;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most commands in one group.
const GROUP_MAX: usize = 1024;

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

/// The writer loop; returns when every proposer is gone or storage fails.
pub async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Proposal>) {
    let mut group: Vec<Proposal> = Vec::with_capacity(GROUP_MAX);
    loop {
        if rx.recv_many(&mut group, GROUP_MAX).await == 0 {
            return;
        }
        let mut results = Vec::with_capacity(group.len());
        let mut last_rev;
        {
            let mut sm = shared.write_state();
            let now = Instant::now();
            let with_prev_kv = shared.hub.wants_prev_kv();
            for p in group.drain(..) {
                let result =
                    if p.cmd.grows_store() && shared.no_space() { Err(Error::NoSpace) } else { sm.apply(p.cmd, now, with_prev_kv) };
                if let Err(Error::Storage(msg)) = &result {
                    tracing::error!(error = %msg, "storage failed while applying; the writer stops");
                    fail_all(results, &mut rx, msg);
                    return;
                }
                results.push((p.reply, result));
            }
            last_rev = sm.mvcc.current();
        }
        if let Err(e) = shared.backend.write(shared.advance_applied(results.len() as u64)) {
            tracing::error!(error = %e, "recording the applied index failed; the writer stops");
            fail_all(results, &mut rx, &e.0);
            return;
        }
        if let Err(e) = shared.backend.sync().await {
            tracing::error!(error = %e, "fsync failed; the writer stops");
            fail_all(results, &mut rx, &e.0);
            return;
        }
        last_rev = last_rev.max(shared.visible());
        shared.publish(last_rev);
        let events: Vec<_> = results.iter_mut().filter_map(|(_, r)| r.as_mut().ok()).flat_map(|a| std::mem::take(&mut a.events)).collect();
        shared.hub.notify(events, last_rev);
        shared.check_quota();
        for (reply, result) in results {
            let _ = reply.send(result);
        }
    }
}

fn fail_all(results: Vec<(oneshot::Sender<Result<Applied>>, Result<Applied>)>, rx: &mut mpsc::Receiver<Proposal>, msg: &str) {
    for (reply, _) in results {
        let _ = reply.send(Err(Error::Storage(msg.to_string())));
    }
    rx.close();
}
