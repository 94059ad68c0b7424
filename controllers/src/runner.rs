//! Runs a controller: `workers` tasks take keys from its [`Queue`] and call its reconciler.
//! A failed reconcile is retried with the queue's per-key backoff; a successful one may ask to
//! be woken again later (minReadySeconds, progress deadlines, toleration expiry).
//!
//! Invariant: one key is never reconciled by two workers at once (the queue's `processing` set).

use crate::error::Error;
use crate::key::ObjectKey;
use crate::queue::Queue;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// What a successful reconcile wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the next change.
    Done,
    /// Look again after this long even if nothing changes.
    RequeueAfter(Duration),
}

/// A level-triggered reconciler: reads the current state for `key` from caches and acts.
pub trait Reconcile: Send + Sync + 'static {
    /// Brings `key` toward its desired state.
    fn reconcile(&self, key: &ObjectKey) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// Starts `workers` workers for `name` on `set`; they stop when `queue` is shut down.
pub fn spawn<R: Reconcile>(set: &mut JoinSet<()>, name: &'static str, queue: Arc<Queue>, workers: usize, r: Arc<R>) {
    for _ in 0..workers.max(1) {
        let (queue, r) = (queue.clone(), r.clone());
        set.spawn(async move {
            while let Some(key) = queue.get().await {
                let start = tokio::time::Instant::now();
                let result = r.reconcile(&key).await;
                queue.observe_work(start.elapsed());
                match result {
                    Ok(Action::Done) => queue.forget(&key),
                    Ok(Action::RequeueAfter(d)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), d);
                    }
                    Err(e) => {
                        if e.is_conflict() || matches!(e, Error::NotSynced(_)) {
                            tracing::debug!(controller = name, %key, "retrying: {e}");
                        } else {
                            tracing::warn!(controller = name, %key, "retrying: {e}");
                        }
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
}
