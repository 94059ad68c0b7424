//! The leases events are written with, so they expire like kube-apiserver's `--event-ttl`:
//! one lease serves the events of a minute and lives the TTL past the last of them (kube's
//! lease reuse), so a busy cluster does not grant a lease per event.

use crate::error::ApiError;
use crate::storage::Store;
use std::time::Duration;

/// How long one lease is handed out for new events.
const REUSE_SECS: i64 = 60;

/// Grants and reuses event leases.
pub struct EventLeases {
    ttl: Duration,
    /// (lease id, granted at in seconds); async: held across the grant.
    current: tokio::sync::Mutex<Option<(i64, i64)>>,
}

impl EventLeases {
    /// Leases that outlive each event by `ttl`.
    pub fn new(ttl: Duration) -> EventLeases {
        EventLeases { ttl, current: tokio::sync::Mutex::new(None) }
    }

    /// The lease for an event written at `now_secs`.
    pub async fn lease(&self, store: &Store, now_secs: i64) -> Result<i64, ApiError> {
        let mut cached = self.current.lock().await;
        if let Some((id, granted)) = *cached
            && now_secs - granted < REUSE_SECS
        {
            return Ok(id);
        }
        let ttl = self.ttl.as_secs() as i64 + REUSE_SECS;
        let id = store.grant(ttl).await?;
        *cached = Some((id, now_secs));
        Ok(id)
    }
}
