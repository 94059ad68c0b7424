//! The compaction loop kube-apiserver runs, so the store's history does not grow forever:
//! every interval, each apiserver tries to bump `compact_rev_key` with a compare on the version
//! it saw last; the one that wins compacts the store to the revision it saw one interval
//! earlier. Several apiservers on one store compact once per interval between them, and what is
//! compacted is always at least one interval old (watches and continue tokens younger than
//! that stay valid).

use crate::storage::Store;
use std::time::Duration;

/// Runs until its task is stopped. `interval` zero: never compacts.
pub async fn run(store: Store, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let (mut seen, mut rev) = (0i64, 0i64);
    loop {
        tokio::time::sleep(interval).await;
        match store.compaction_round(seen, rev).await {
            Ok((won, version, now)) => {
                if won && rev > 0 {
                    match store.compact(rev).await {
                        Ok(()) => tracing::info!("compacted the store to revision {rev}"),
                        Err(e) => tracing::warn!("compacting to {rev}: {e}"),
                    }
                }
                seen = version;
                rev = now;
            }
            Err(e) => tracing::warn!("compaction round: {e}"),
        }
    }
}
