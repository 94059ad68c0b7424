//! The syncer task: feeds unsynced watchers from history until they reach the hub's revision,
//! cancels those whose history was compacted, and sends periodic progress notifications.

use super::hub::{Lagging, WatchHub};
use crate::error::Result;
use crate::types::Revision;
use keel_proto::mvccpb::Event;
use std::sync::Arc;
use std::time::Duration;

/// Most events read from history for one watcher per round.
const CATCH_UP_EVENTS_MAX: usize = 1000;
/// How often lagging watchers are retried when nothing wakes the syncer.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Where the syncer finds the hub and the history it feeds lagging watchers from.
pub trait History: Send + Sync + 'static {
    /// The hub.
    fn hub(&self) -> &WatchHub;
    /// The history `lag` needs next, up to revision `to`, at most `max_events` events.
    fn read(&self, lag: &Lagging, to: Revision, max_events: usize) -> Result<CatchUp>;
}

/// What history has for one lagging watcher.
pub enum CatchUp {
    /// Its next revision is below this compacted revision: it must be canceled.
    Compacted(Revision),
    /// Events from its next revision on (never splitting a revision), and the last revision
    /// they cover.
    Events(Vec<Event>, Revision),
}

/// Run until the member stops (its task is aborted).
pub async fn run(history: Arc<impl History>, progress_interval: Duration) {
    let hub: &WatchHub = history.hub();
    let mut progress = tokio::time::interval(progress_interval);
    progress.tick().await;
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                biased;
                _ = progress.tick() => hub.progress_tick(),
                _ = hub.syncer_wait() => {}
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
            }
        }
        more = false;
        let (lagging, rev) = hub.lagging();
        for lag in lagging {
            match history.read(&lag, rev, CATCH_UP_EVENTS_MAX) {
                Ok(CatchUp::Compacted(compacted)) => hub.compacted(&lag, compacted),
                Ok(CatchUp::Events(events, covered)) => {
                    // A watcher still behind after a full batch goes again at once.
                    more |= covered < rev;
                    hub.caught_up(&lag, &events, covered);
                }
                Err(e) => tracing::error!(error = %e, "reading watch history failed"),
            }
        }
    }
}
