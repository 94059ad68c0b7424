//! The syncer task: feeds unsynced watchers from history until they reach the hub's revision,
//! cancels those whose history was compacted, and sends periodic progress notifications.

use super::hub::WatchHub;
use crate::server::state::Shared;
use std::sync::Arc;
use std::time::Duration;

/// Most events read from history for one watcher per round.
const CATCH_UP_EVENTS_MAX: usize = 1000;
/// How often lagging watchers are retried when nothing wakes the syncer.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Run until the hub is dropped by everyone else.
pub async fn run(shared: Arc<Shared>, progress_interval: Duration) {
    let hub: &WatchHub = &shared.hub;
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
            let read = {
                let sm = shared.read_state();
                let compacted = sm.mvcc.compacted();
                if lag.watcher.next_rev < compacted {
                    Err(compacted)
                } else {
                    Ok(sm.mvcc.events(lag.watcher.next_rev, rev, CATCH_UP_EVENTS_MAX, lag.watcher.prev_kv))
                }
            };
            match read {
                Err(compacted) => hub.compacted(&lag, compacted),
                Ok(Ok((events, covered))) => {
                    // A watcher still behind after a full batch goes again at once.
                    more |= covered < rev;
                    hub.caught_up(&lag, &events, covered);
                }
                Ok(Err(e)) => tracing::error!(error = %e, "reading watch history failed"),
            }
        }
    }
}
