//! The async shell around [`mod@crate::decide`]: reads and writes the Lease through the apiserver
//! every retry period (a standby sooner, at the expiry it waits for:
//! [`decide::next_attempt_in`]), and publishes the outcome through a [`Leadership`] handle.
//!
//! Invariants:
//! - Every write is optimistic: `replace` carries the `resourceVersion` that was read, so two
//!   contenders racing for an expired lease produce one winner and one 409.
//! - [`Leadership::is_leader`] is computed from the clock at each call ([`crate::may_act`]):
//!   it turns false at `last renewal sent + renewDeadline` even if the loop itself is stuck in a
//!   request, suspended (SIGSTOP) or starved.
//! - An attempt never runs past the renew deadline (each request is bounded by what is left of
//!   it), so the published state flips on time as well.
//! - On a graceful stop the handle goes false *before* the lease is released.

use crate::decide::{self, Decision, Observed, Record};
use crate::{Clock, Config, Error};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the election knows, shared between the loop (one writer) and the handles.
#[derive(Debug, Default)]
struct State {
    /// When the last successful acquire/renew was *sent*; `None` while not leading.
    renewed_at: Option<Instant>,
    /// The holder seen in the last record read (ourselves when leading).
    holder: Option<String>,
    /// `leaseTransitions` of the last record read.
    transitions: i32,
}

/// A cheap, clone-able view of this instance's leadership. Check [`Leadership::is_leader`]
/// right before every action that only the leader may take.
#[derive(Clone, Debug)]
pub struct Leadership {
    identity: Arc<str>,
    renew_deadline: Duration,
    // A std mutex: held for a few field copies, never across an await.
    state: Arc<Mutex<State>>,
    changes: watch::Receiver<bool>,
}

impl Leadership {
    /// Whether this instance may act now: it holds the lease and its last renewal was sent
    /// less than `renewDeadline` ago.
    pub fn is_leader(&self) -> bool {
        let renewed_at = self.state.lock().map(|s| s.renewed_at).unwrap_or(None);
        decide::may_act(renewed_at, self.renew_deadline, Instant::now())
    }

    /// This instance's identity (its `holderIdentity` when leading).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The holder seen in the last Lease read (`None` before the first read or when released).
    pub fn holder(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.holder.clone())
    }

    /// `leaseTransitions` of the last Lease read: a fencing epoch for logs and metrics.
    pub fn transitions(&self) -> i32 {
        self.state.lock().map(|s| s.transitions).unwrap_or(0)
    }

    /// Waits until the published leading state changes; returns the new state. Returns `false`
    /// at once when the election loop has stopped.
    pub async fn changed(&mut self) -> bool {
        match self.changes.changed().await {
            Ok(()) => *self.changes.borrow_and_update(),
            Err(_) => false,
        }
    }

    /// The published leading state (flips at the same moments [`Leadership::is_leader`] does,
    /// give or take the loop's reaction time; use `is_leader` for the fencing check itself).
    pub fn leading(&self) -> bool {
        *self.changes.borrow()
    }
}

/// The election loop. Build with [`Elector::new`], drive with [`Elector::run`].
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
    publish: watch::Sender<bool>,
    /// The last Lease object read or written (its resourceVersion guards the next write).
    lease: Option<Lease>,
    observed: Option<Observed>,
}

impl Elector {
    /// An elector for `config` over `client`, and the handle to its outcome. Checks the
    /// durations as client-go does.
    pub fn new(client: kube::Client, config: Config, clock: Arc<dyn Clock>) -> Result<(Elector, Leadership), Error> {
        config.validate()?;
        let (publish, changes) = watch::channel(false);
        let state = Arc::new(Mutex::new(State::default()));
        let handle = Leadership {
            identity: Arc::from(config.identity.as_str()),
            renew_deadline: config.renew_deadline,
            state: state.clone(),
            changes,
        };
        let api = Api::namespaced(client, &config.namespace);
        Ok((Elector { api, config, clock, state, publish, lease: None, observed: None }, handle))
    }

    /// Contends for the lease until `shutdown` completes, then (when leading and configured
    /// to) releases it. Never returns an error for a failed attempt: it logs and retries.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.attempt().await;
            let wait = decide::next_attempt_in(&self.config.identity, self.observed.as_ref(), self.config.retry_period, Instant::now());
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let was_leading = self.renewed_at().is_some();
        self.set_leading(None);
        if was_leading && self.config.release_on_cancel {
            match tokio::time::timeout(self.config.renew_deadline, self.release()).await {
                Ok(Ok(())) => tracing::info!(identity = %self.config.identity, "released the lease"),
                Ok(Err(e)) => tracing::warn!(identity = %self.config.identity, error = %e, "could not release the lease"),
                Err(_) => tracing::warn!(identity = %self.config.identity, "timed out releasing the lease"),
            }
        }
    }

    fn renewed_at(&self) -> Option<Instant> {
        self.state.lock().map(|s| s.renewed_at).unwrap_or(None)
    }

    fn set_leading(&self, renewed_at: Option<Instant>) {
        if let Ok(mut s) = self.state.lock() {
            s.renewed_at = renewed_at;
        }
        let leading = renewed_at.is_some();
        self.publish.send_if_modified(|v| std::mem::replace(v, leading) != leading);
    }

    fn note_record(&self, r: &Record) {
        if let Ok(mut s) = self.state.lock() {
            s.holder = r.holder().map(String::from);
            s.transitions = r.transitions;
        }
    }

    /// One acquire-or-renew attempt, bounded so it ends by the renew deadline when leading.
    async fn attempt(&mut self) {
        let started = Instant::now();
        let renewed_at = self.renewed_at();
        let limit = match renewed_at {
            Some(t) => (t + self.config.renew_deadline).saturating_duration_since(started),
            None => self.config.renew_deadline,
        };
        let outcome = tokio::time::timeout(limit, self.try_acquire_or_renew(started)).await;
        let id = &self.config.identity;
        match outcome {
            Ok(Ok(true)) => {
                if renewed_at.is_none() {
                    tracing::info!(identity = %id, transitions = self.state.lock().map(|s| s.transitions).unwrap_or(0), lease = %self.config.name, "became leader");
                }
                self.set_leading(Some(started));
            }
            Ok(Ok(false)) => {
                if renewed_at.is_some() {
                    tracing::warn!(identity = %id, holder = ?self.state.lock().ok().and_then(|s| s.holder.clone()), "lost the lease to another holder; stopped leading");
                    self.set_leading(None);
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the attempt timed out".to_string(),
                };
                tracing::warn!(identity = %id, error = %why, "could not acquire or renew the lease");
                if renewed_at.is_some() && !decide::may_act(renewed_at, self.config.renew_deadline, Instant::now()) {
                    tracing::warn!(identity = %id, "failed to renew within renewDeadline; stopped leading");
                    self.set_leading(None);
                    // Forget the cached object: the next attempt reads the Lease afresh.
                    self.lease = None;
                }
            }
        }
    }

    /// client-go's `tryAcquireOrRenew`: `Ok(true)` when we hold the lease after this call.
    async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, Error> {
        let wall = self.clock.now();
        // Fast path (as client-go since 1.24): the leader renews on the object it last wrote
        // without reading it first; a conflict falls back to the full read.
        if self.renewed_at().is_some()
            && let (Some(lease), Some(obs)) = (self.lease.clone(), self.observed.clone())
            && let Decision::Renew(r) = decide::decide(&self.config.identity, self.config.lease_duration, Some(&obs), now, wall)
        {
            match self.write(lease, r, now, false).await {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        let name = self.config.name.clone();
        let current = self.api.get_opt(&name).await.map_err(|e| self.api_error(e))?;
        let Some(lease) = current else {
            let Decision::Create(r) = decide::decide(&self.config.identity, self.config.lease_duration, None, now, wall) else {
                return Ok(false);
            };
            let mut lease = Lease {
                metadata: ObjectMeta { name: Some(name), namespace: Some(self.config.namespace.clone()), ..Default::default() },
                spec: None,
            };
            lease.spec = Some(to_spec(&r, None));
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.remember(created, now);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
                Err(e) => Err(self.api_error(e)),
            };
        };
        let record = to_record(&lease);
        // A record seen for the first time is stamped when the read *returned* (client-go's
        // `observedTime = clock.Now()` after `Get`), never with `now`, taken before the request
        // went out: a renewal the holder sent while this read was in flight must not look older
        // than it is, or a slow read (up to renewDeadline) would let this instance take over
        // while the holder may still act. Expiry is still judged at `now` (as client-go's
        // `isLeaseValid(now)`), the earlier and so the cautious instant.
        let obs = decide::observe(self.observed.as_ref(), record, Instant::now());
        self.note_record(&obs.record);
        self.observed = Some(obs.clone());
        self.lease = Some(lease.clone());
        match decide::decide(&self.config.identity, self.config.lease_duration, Some(&obs), now, wall) {
            Decision::Follow { .. } | Decision::Create(_) => Ok(false),
            Decision::Renew(r) => self.write(lease, r, now, false).await,
            Decision::TakeOver(r) => self.write(lease, r, now, true).await,
        }
    }

    /// Writes `r` over `lease` guarded by its resourceVersion. `Ok(false)` on a conflict.
    async fn write(&mut self, mut lease: Lease, r: Record, now: Instant, take_over: bool) -> Result<bool, Error> {
        let name = self.config.name.clone();
        let preferred = lease.spec.as_ref().and_then(|s| s.preferred_holder.clone());
        lease.spec = Some(to_spec(&r, preferred));
        match self.api.replace(&name, &PostParams::default(), &lease).await {
            Ok(written) => {
                if take_over {
                    tracing::info!(identity = %self.config.identity, transitions = r.transitions, "took over the lease");
                }
                self.remember(written, now);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                self.lease = None;
                Ok(false)
            }
            Err(e) => Err(self.api_error(e)),
        }
    }

    fn remember(&mut self, lease: Lease, now: Instant) {
        let record = to_record(&lease);
        self.note_record(&record);
        self.observed = Some(Observed { record, observed_at: now });
        self.lease = Some(lease);
    }

    /// Gives the lease up: empty holder, 1 s duration (client-go's `release`).
    async fn release(&mut self) -> Result<(), Error> {
        let name = self.config.name.clone();
        let Some(mut lease) = self.api.get_opt(&name).await.map_err(|e| self.api_error(e))? else { return Ok(()) };
        let record = to_record(&lease);
        if record.holder() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let released = Record { holder: None, lease_duration_seconds: 1, renew_time: Some(self.clock.now()), ..record };
        lease.spec = Some(to_spec(&released, lease.spec.as_ref().and_then(|s| s.preferred_holder.clone())));
        self.api.replace(&name, &PostParams::default(), &lease).await.map_err(|e| self.api_error(e))?;
        Ok(())
    }

    fn api_error(&self, source: kube::Error) -> Error {
        Error::Api { namespace: self.config.namespace.clone(), name: self.config.name.clone(), source }
    }
}

fn to_record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        acquire_time: spec.acquire_time.map(|t| t.0),
        renew_time: spec.renew_time.map(|t| t.0),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn to_spec(r: &Record, preferred_holder: Option<String>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: r.holder.clone(),
        lease_duration_seconds: Some(r.lease_duration_seconds),
        acquire_time: r.acquire_time.map(MicroTime),
        renew_time: r.renew_time.map(MicroTime),
        lease_transitions: Some(r.transitions),
        preferred_holder,
        strategy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(renew_deadline: Duration) -> (Leadership, Arc<Mutex<State>>, watch::Sender<bool>) {
        let (publish, changes) = watch::channel(false);
        let state = Arc::new(Mutex::new(State::default()));
        (Leadership { identity: Arc::from("me"), renew_deadline, state: state.clone(), changes }, state, publish)
    }

    #[tokio::test(start_paused = true)]
    async fn the_handle_stops_answering_leader_at_the_renew_deadline_by_itself() {
        let (l, state, _publish) = handle(Duration::from_secs(10));
        assert!(!l.is_leader(), "never renewed");
        if let Ok(mut s) = state.lock() {
            s.renewed_at = Some(Instant::now());
        }
        assert!(l.is_leader());
        // The loop is stuck (a hung request, SIGSTOP): nobody updates the state.
        tokio::time::advance(Duration::from_millis(9_900)).await;
        assert!(l.is_leader());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!l.is_leader(), "fenced at renewed_at + renewDeadline without any help from the loop");
    }
}
