//! Election settings: which Lease, who we are, and kube's three durations.

use crate::Error;
use std::time::Duration;

/// client-go's `JitterFactor`: the renew deadline must leave room for a jittered retry.
const JITTER_FACTOR: f64 = 1.2;

/// Which Lease to contend for and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The Lease's namespace (`--leader-elect-resource-namespace`, `kube-system`).
    pub namespace: String,
    /// The Lease's name (`--leader-elect-resource-name`, e.g. `kube-scheduler`).
    pub name: String,
    /// This instance's identity, unique per process start (`hostname_<random>`), written as
    /// `holderIdentity`. A restarted process is a new identity and waits like any other.
    pub identity: String,
    /// How long a follower waits after last seeing the record change before taking over
    /// (`--leader-elect-lease-duration`, 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal
    /// (`--leader-elect-renew-deadline`, 10 s). Must be below `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew (`--leader-elect-retry-period`, 2 s).
    pub retry_period: Duration,
    /// Give the lease up (empty holder) when stopped gracefully, so a standby takes over at
    /// once instead of after `lease_duration`.
    pub release_on_cancel: bool,
}

impl Config {
    /// kube's defaults (15 s / 10 s / 2 s, release on cancel) for Lease `namespace/name`.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Config {
        Config {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }

    /// The checks client-go's `NewLeaderElector` makes, with its messages.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.lease_duration <= self.renew_deadline {
            return bad("leaseDuration must be greater than renewDeadline");
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return bad("renewDeadline must be greater than retryPeriod*JitterFactor");
        }
        if self.lease_duration.is_zero() {
            return bad("leaseDuration must be greater than zero");
        }
        if self.renew_deadline.is_zero() {
            return bad("renewDeadline must be greater than zero");
        }
        if self.retry_period.is_zero() {
            return bad("retryPeriod must be greater than zero");
        }
        if self.identity.is_empty() {
            return bad("Lock identity is empty");
        }
        if self.name.is_empty() || self.namespace.is_empty() {
            return bad("lease name and namespace must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_client_go() {
        let s = Duration::from_secs;
        let ok = Config::new("kube-system", "kube-scheduler", "a");
        assert!(ok.validate().is_ok(), "kube's defaults are valid");
        type Row<'a> = (&'a str, Duration, Duration, Duration, &'a str, Option<&'a str>);
        let table: Vec<Row> = vec![
            ("lease == renew", s(10), s(10), s(2), "a", Some("leaseDuration must be greater than renewDeadline")),
            ("renew too close to retry", s(15), s(2), s(2), "a", Some("renewDeadline must be greater than retryPeriod*JitterFactor")),
            ("renew just above retry*1.2", s(15), Duration::from_millis(2_500), s(2), "a", None),
            ("zero retry", s(15), s(10), s(0), "a", Some("retryPeriod must be greater than zero")),
            ("no identity", s(15), s(10), s(2), "", Some("Lock identity is empty")),
        ];
        for (name, lease, renew, retry, id, want) in table {
            let c = Config { lease_duration: lease, renew_deadline: renew, retry_period: retry, identity: id.into(), ..ok.clone() };
            let got = c.validate().err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), want.map(|w| format!("invalid leader election settings: {w}")).as_deref(), "{name}");
        }
    }
}
