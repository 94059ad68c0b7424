//! Wall time, the one seam through which the kubelet reads the calendar (timestamps in pod and
//! node status, Lease renew times, log lines). Elapsed time (probe periods, back-off, grace
//! periods) goes through `tokio::time` instead, so tests can pause it.

use jiff::Timestamp;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Now, as a UTC timestamp.
    fn now(&self) -> Timestamp;
}

/// The machine's clock; only `main.rs` and the container shim construct it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the seam
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct FixedClock(pub std::sync::Mutex<Timestamp>);

impl FixedClock {
    /// A clock standing at `t`.
    pub fn at(t: Timestamp) -> FixedClock {
        FixedClock(std::sync::Mutex::new(t))
    }

    /// Moves it forward by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(span) = jiff::SignedDuration::try_from(d) {
            *t = t.saturating_add(span).unwrap_or(*t);
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
