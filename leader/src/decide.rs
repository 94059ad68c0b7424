//! The pure core of the election: what an instance does next, given the Lease record it last
//! read, when it first saw that record, and the time now. This is client-go's
//! `tryAcquireOrRenew` without the I/O, so the rules are table-tested.
//!
//! Invariants:
//! - Expiry is judged on the *local monotonic* time at which this instance first observed the
//!   record in its current form (`observed_at`), plus the record's own `leaseDurationSeconds`,
//!   never on the remote `renewTime`: wall clocks of different machines are not compared.
//! - A record held by someone else is taken over only once it has stayed unchanged for a whole
//!   lease duration; an empty holder (a released lease) is free at once.
//! - Taking over increments `leaseTransitions`; renewing keeps `acquireTime` and the count.

use jiff::Timestamp;
use std::time::Duration;
use tokio::time::Instant;

/// The parts of a Lease's spec the election reads and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `holderIdentity`; `None` or empty when released.
    pub holder: Option<String>,
    /// `leaseDurationSeconds` as written by the holder.
    pub lease_duration_seconds: i32,
    /// `acquireTime` (wall time, informational).
    pub acquire_time: Option<Timestamp>,
    /// `renewTime` (wall time, informational).
    pub renew_time: Option<Timestamp>,
    /// `leaseTransitions`: how many times the holder changed.
    pub transitions: i32,
}

impl Record {
    /// The holder, when there is one (an empty string counts as none).
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|h| !h.is_empty())
    }
}

/// A record and the local time this instance first saw it in this exact form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The record as read.
    pub record: Record,
    /// When it was first read unchanged (monotonic).
    pub observed_at: Instant,
}

/// Folds a freshly read record into the previous observation: the observation time moves only
/// when the record changed (client-go compares the raw records the same way).
pub fn observe(previous: Option<&Observed>, record: Record, now: Instant) -> Observed {
    match previous {
        Some(p) if p.record == record => p.clone(),
        _ => Observed { record, observed_at: now },
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it holding it ourselves.
    Create(Record),
    /// We hold it: write this record (same acquire time and transitions, new renew time).
    Renew(Record),
    /// It is free or expired: write this record taking it over (transitions + 1).
    TakeOver(Record),
    /// Someone else holds it and it has not expired; look again later. `expires_at` is when it
    /// would expire if it stays unchanged.
    Follow {
        /// The holder we follow.
        holder: String,
        /// When the record expires if nobody renews it.
        expires_at: Instant,
    },
}

/// Decides the next step for `identity` (client-go's `tryAcquireOrRenew`).
/// `observed` is `None` when the Lease does not exist. `wall_now` is written into the record,
/// `now` (monotonic) judges expiry.
pub fn decide(identity: &str, lease_duration: Duration, observed: Option<&Observed>, now: Instant, wall_now: Timestamp) -> Decision {
    let seconds = i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(obs) = observed else {
        return Decision::Create(Record {
            holder: Some(identity.to_string()),
            lease_duration_seconds: seconds,
            acquire_time: Some(wall_now),
            renew_time: Some(wall_now),
            transitions: 0,
        });
    };
    let old = &obs.record;
    match old.holder() {
        Some(h) if h == identity => Decision::Renew(Record {
            holder: Some(identity.to_string()),
            lease_duration_seconds: seconds,
            acquire_time: old.acquire_time.or(Some(wall_now)),
            renew_time: Some(wall_now),
            transitions: old.transitions,
        }),
        Some(h) => {
            let expires_at = obs.observed_at + their_duration(old);
            if expires_at > now {
                Decision::Follow { holder: h.to_string(), expires_at }
            } else {
                take_over(identity, seconds, old, wall_now)
            }
        }
        None => take_over(identity, seconds, old, wall_now),
    }
}

/// The record's own `leaseDurationSeconds` (what expiry is judged by, not ours).
fn their_duration(r: &Record) -> Duration {
    Duration::from_secs(u64::try_from(r.lease_duration_seconds.max(0)).unwrap_or(0))
}

/// How long a contender waits before its next attempt: the retry period, or, when it follows
/// another holder whose record (unchanged) expires within that period, until the expiry, so a
/// standby takes an abandoned lease when it runs out rather than up to a retry period later
/// (client-go waits out its whole jittered period). Expiry is judged as [`decide`] judges it,
/// so no safety boundary moves; an expiry already past waits the full period (a failing
/// apiserver is not hammered).
pub fn next_attempt_in(identity: &str, observed: Option<&Observed>, retry_period: Duration, now: Instant) -> Duration {
    let Some(obs) = observed else { return retry_period };
    match obs.record.holder() {
        Some(h) if h != identity => {
            let left = (obs.observed_at + their_duration(&obs.record)).saturating_duration_since(now);
            if left.is_zero() { retry_period } else { left.min(retry_period) }
        }
        _ => retry_period,
    }
}

fn take_over(identity: &str, seconds: i32, old: &Record, wall_now: Timestamp) -> Decision {
    Decision::TakeOver(Record {
        holder: Some(identity.to_string()),
        lease_duration_seconds: seconds,
        acquire_time: Some(wall_now),
        renew_time: Some(wall_now),
        transitions: old.transitions.saturating_add(1),
    })
}

/// The renew-deadline fencing rule: an instance that last renewed successfully at
/// `renewed_at` (the moment it *sent* that write) may act until `renewed_at + renew_deadline`,
/// and not a moment later. Others wait at least `lease_duration` from when they *saw* the write,
/// which is later, so with `renew_deadline < lease_duration` the two intervals never overlap.
pub fn may_act(renewed_at: Option<Instant>, renew_deadline: Duration, now: Instant) -> bool {
    renewed_at.is_some_and(|t| now < t + renew_deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_wakes_at_the_expiry_it_waits_for() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (name, observed record, observed_at offset, now offset, expected wait)
        let table: Vec<(&str, Option<Record>, Duration, Duration, Duration)> = vec![
            ("no lease seen", None, s(0), s(0), s(2)),
            ("we lead: renew every period", Some(rec(Some("me"), 15, 0)), s(0), s(14), s(2)),
            ("free lease", Some(rec(None, 15, 0)), s(0), s(14), s(2)),
            ("other holder, far from expiry", Some(rec(Some("b"), 15, 0)), s(0), s(3), s(2)),
            ("other holder, expiry within the period", Some(rec(Some("b"), 15, 0)), s(0), ms(13_500), ms(1_500)),
            ("other holder, expiry just ahead", Some(rec(Some("b"), 15, 0)), s(0), ms(14_999), ms(1)),
            ("other holder, expired already: the full period", Some(rec(Some("b"), 15, 0)), s(0), s(20), s(2)),
            ("their own duration counts", Some(rec(Some("b"), 1, 0)), s(5), ms(5_250), ms(750)),
        ];
        for (name, record, seen, at, want) in table {
            let obs = record.map(|r| Observed { record: r, observed_at: t0 + seen });
            assert_eq!(next_attempt_in("me", obs.as_ref(), s(2), t0 + at), want, "{name}");
        }
    }

    fn rec(holder: Option<&str>, secs: i32, transitions: i32) -> Record {
        Record {
            holder: holder.map(String::from),
            lease_duration_seconds: secs,
            acquire_time: Some(Timestamp::UNIX_EPOCH),
            renew_time: Some(Timestamp::UNIX_EPOCH),
            transitions,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn decisions_follow_client_go_try_acquire_or_renew() {
        let t0 = Instant::now();
        let wall = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let d15 = Duration::from_secs(15);
        let s = Duration::from_secs;
        // (name, observed record, observed_at offset, now offset, expected kind, expected transitions)
        type Row<'a> = (&'a str, Option<Record>, Duration, Duration, &'a str, i32);
        let table: Vec<Row> = vec![
            ("no lease: create it", None, s(0), s(0), "create", 0),
            ("held by me: renew, keep transitions", Some(rec(Some("me"), 15, 4)), s(0), s(1), "renew", 4),
            ("held by me even when stale: renew", Some(rec(Some("me"), 15, 4)), s(0), s(100), "renew", 4),
            ("held by other, fresh: follow", Some(rec(Some("b"), 15, 2)), s(0), s(14), "follow", 0),
            ("held by other, exactly expired: take over", Some(rec(Some("b"), 15, 2)), s(0), s(15), "takeover", 3),
            ("held by other, long expired: take over", Some(rec(Some("b"), 15, 2)), s(0), s(60), "takeover", 3),
            ("their duration counts, not ours", Some(rec(Some("b"), 30, 2)), s(0), s(20), "follow", 0),
            ("released (empty holder): take over at once", Some(rec(Some(""), 15, 7)), s(0), s(0), "takeover", 8),
            ("released (no holder): take over at once", Some(rec(None, 15, 7)), s(0), s(0), "takeover", 8),
            ("observed late: expiry counts from when we saw it", Some(rec(Some("b"), 15, 2)), s(10), s(20), "follow", 0),
        ];
        for (name, record, seen, at, kind, transitions) in table {
            let obs = record.map(|r| Observed { record: r, observed_at: t0 + seen });
            let got = decide("me", d15, obs.as_ref(), t0 + at, wall);
            match (&got, kind) {
                (Decision::Create(r), "create") | (Decision::Renew(r), "renew") | (Decision::TakeOver(r), "takeover") => {
                    assert_eq!(r.holder.as_deref(), Some("me"), "{name}");
                    assert_eq!(r.transitions, transitions, "{name}");
                    assert_eq!(r.lease_duration_seconds, 15, "{name}");
                    assert_eq!(r.renew_time, Some(wall), "{name}");
                }
                (Decision::Follow { holder, expires_at }, "follow") => {
                    assert_eq!(holder, "b", "{name}");
                    assert!(*expires_at > t0 + at, "{name}");
                }
                _ => panic!("{name}: got {got:?}, want {kind}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renew_keeps_the_acquire_time_and_take_over_resets_it() {
        let t0 = Instant::now();
        let wall = Timestamp::from_second(5_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let mine = Observed { record: rec(Some("me"), 15, 1), observed_at: t0 };
        let Decision::Renew(r) = decide("me", Duration::from_secs(15), Some(&mine), t0, wall) else { panic!("renew") };
        assert_eq!(r.acquire_time, Some(Timestamp::UNIX_EPOCH));
        let theirs = Observed { record: rec(Some("b"), 15, 1), observed_at: t0 };
        let Decision::TakeOver(r) = decide("me", Duration::from_secs(15), Some(&theirs), t0 + Duration::from_secs(16), wall) else {
            panic!("take over")
        };
        assert_eq!(r.acquire_time, Some(wall));
    }

    #[tokio::test(start_paused = true)]
    async fn observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let first = observe(None, rec(Some("b"), 15, 0), t0);
        let same = observe(Some(&first), rec(Some("b"), 15, 0), t0 + Duration::from_secs(9));
        assert_eq!(same.observed_at, t0, "an unchanged record keeps its first observation time");
        let mut renewed = rec(Some("b"), 15, 0);
        renewed.renew_time = Some(Timestamp::from_second(1).unwrap_or(Timestamp::UNIX_EPOCH));
        let moved = observe(Some(&same), renewed, t0 + Duration::from_secs(9));
        assert_eq!(moved.observed_at, t0 + Duration::from_secs(9), "a renewal restarts the expiry countdown");
    }

    #[tokio::test(start_paused = true)]
    async fn fencing_stops_acting_at_the_renew_deadline() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        assert!(!may_act(None, d, t0), "never renewed: never act");
        assert!(may_act(Some(t0), d, t0));
        assert!(may_act(Some(t0), d, t0 + Duration::from_millis(9_999)));
        assert!(!may_act(Some(t0), d, t0 + d), "at the deadline itself: stop");
        assert!(!may_act(Some(t0), d, t0 + Duration::from_secs(60)), "after a pause (SIGSTOP): stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_leader_stops_before_a_follower_may_take_over() {
        // The leader sends its renewal at t0; the follower sees the new record only later, at
        // t0 + latency. With kube's 15 s / 10 s, the leader's last act is strictly before the
        // earliest takeover, whatever the latency.
        let t0 = Instant::now();
        let (lease, deadline) = (Duration::from_secs(15), Duration::from_secs(10));
        for latency_ms in [0u64, 1, 500, 4_999] {
            let seen = t0 + Duration::from_millis(latency_ms);
            let obs = Observed { record: rec(Some("leader"), 15, 0), observed_at: seen };
            let mut t = t0;
            while may_act(Some(t0), deadline, t) {
                assert!(matches!(decide("follower", lease, Some(&obs), t, Timestamp::UNIX_EPOCH), Decision::Follow { .. }));
                t += Duration::from_millis(100);
            }
        }
    }
}
