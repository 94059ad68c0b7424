//! Wall time, the one seam through which controllers read it (conditions' timestamps, pod
//! availability after `minReadySeconds`, progress deadlines, node heartbeats, toleration
//! expiry). Elapsed time for delays goes through `tokio::time` instead.

use jiff::Timestamp;
use std::sync::{Arc, Mutex};

/// A source of wall time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The machine's clock; only the composition root builds one.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock tests set by hand.
#[derive(Clone, Debug)]
pub struct FakeClock(Arc<Mutex<Timestamp>>);

impl FakeClock {
    /// A clock that reads `at` until moved.
    pub fn at(at: Timestamp) -> FakeClock {
        FakeClock(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(next) = t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO)) {
            *t = next;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Shared handle to the clock every controller reads.
pub type SharedClock = Arc<dyn Clock>;
