//! The manager under leader election, as kube-controller-manager runs it: the controllers (and
//! their informers) run only while this instance holds the Lease, and stop when it loses it.
//!
//! Invariants:
//! - A term starts only when [`Leadership::is_leader`] is true, and its stop future fires as
//!   soon as `is_leader` turns false (polled every [`POLL`], so at most that long after the
//!   renew deadline; the fence in [`crate::fence`] refuses writes from that instant anyway).
//! - Nothing survives from one term to the next: each term lists every resource afresh.
//!
//! kube-controller-manager exits when it loses the lease (its supervisor restarts it); this one
//! stops its controllers and contends again, which keeps a standby that never ran cheap and
//! needs no supervisor. Either way nothing acts between the loss and the next acquisition.

use crate::error::Result;
use keel_leader::Leadership;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;

/// How often the leading state is checked while waiting for it or while running a term.
pub const POLL: Duration = Duration::from_millis(50);

/// The future that ends a term.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Completes when `leadership` may no longer act.
pub async fn lost(leadership: Leadership) {
    while leadership.is_leader() {
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `term` each time this instance starts leading, with a stop future that fires on loss
/// of leadership or on shutdown; returns when `shutdown` holds `true`.
pub async fn run_while_leading<F, Fut>(leadership: Leadership, mut shutdown: watch::Receiver<bool>, mut term: F) -> Result<()>
where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let id = leadership.identity().to_string();
    loop {
        while !leadership.is_leader() {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        tracing::info!(identity = %id, transitions = leadership.transitions(), "started leading: starting controllers");
        let stop = {
            let (leadership, mut shutdown) = (leadership.clone(), shutdown.clone());
            Box::pin(async move {
                tokio::select! {
                    _ = lost(leadership) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            })
        };
        term(stop).await?;
        if *shutdown.borrow() {
            return Ok(());
        }
        tracing::warn!(identity = %id, "leadership lost: controllers stopped; contending again");
    }
}
