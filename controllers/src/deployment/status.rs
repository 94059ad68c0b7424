//! A Deployment's status and conditions without I/O (kube's `calculateStatus`,
//! `syncRolloutStatus`, `requeueStuckDeployment`, `checkPausedConditions` and the
//! `DeploymentComplete` / `DeploymentProgressing` / `DeploymentTimedOut` predicates).
//!
//! `kubectl rollout status` reads exactly these: `observedGeneration`, `updatedReplicas`,
//! `replicas`, `availableReplicas` and the `Progressing` condition's reason
//! (`ProgressDeadlineExceeded` makes it fail).

use super::rollout::{actual, available};
use super::util::{self, rs_replicas};
use crate::replicaset::status::nz;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// Condition type: enough replicas are available.
pub const AVAILABLE: &str = "Available";
/// Condition type: the rollout is progressing (or failed to).
pub const PROGRESSING: &str = "Progressing";
/// Condition type: a ReplicaSet could not create or delete pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Reason: a ReplicaSet was scaled as part of the rollout.
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
/// Reason: the new ReplicaSet could not be created.
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
/// Reason: the new ReplicaSet was created.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Reason: an existing ReplicaSet matches the template.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Reason: the rollout completed.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Reason: no progress within progressDeadlineSeconds.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Reason: paused.
pub const PAUSED: &str = "DeploymentPaused";
/// Reason: resumed.
pub const RESUMED: &str = "DeploymentResumed";
/// Reason: minimum availability reached.
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
/// Reason: minimum availability not reached.
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// The condition `type_` of `s`.
pub fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// A condition stamped `now` (update and transition).
pub fn new_condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`: no change when status and reason are the same; keeps the
/// transition time when only the reason changes.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_.clone());
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

/// `RemoveDeploymentCondition`.
pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// `calculateStatus`: counts summed over the ReplicaSets, and the `Available` condition.
pub fn calculate(all: &[&ReplicaSet], new: Option<&ReplicaSet>, d: &Deployment, now: Timestamp) -> DeploymentStatus {
    let avail: i32 = all.iter().map(|r| available(r)).sum();
    let total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nz(all.iter().map(|r| actual(r)).sum()),
        updated_replicas: nz(new.map(actual).unwrap_or(0)),
        ready_replicas: nz(all.iter().map(|r| n(r.status.as_ref().and_then(|s| s.ready_replicas))).sum()),
        available_replicas: nz(avail),
        unavailable_replicas: nz((total - avail).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    if avail >= util::replicas(d) - util::max_unavailable(d) {
        set_condition(&mut s, new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.".into(), now));
    } else {
        set_condition(
            &mut s,
            new_condition(AVAILABLE, "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.".into(), now),
        );
    }
    s
}

/// `DeploymentComplete`: every desired replica updated and available, nothing old left.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = util::replicas(d);
    n(s.updated_replicas) == want
        && n(s.replicas) == want
        && n(s.available_replicas) == want
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: more updated, ready or available pods, or fewer old ones.
pub fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// `spec.progressDeadlineSeconds` when set and not "infinite".
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != i32::MAX)
}

/// `DeploymentTimedOut`.
pub fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(c) = condition(s, PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => {
            let Some(from) = c.last_update_time.as_ref() else { return false };
            from.0.as_second() + i64::from(deadline) < now.as_second()
        }
    }
}

/// The failure condition of the first ReplicaSet (new first) that reports one.
fn replica_failure(all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let ordered = new.into_iter().chain(all.iter().copied());
    for rs in ordered {
        for c in rs.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten() {
            if c.type_ == REPLICA_FAILURE && c.status == "True" {
                return Some(DeploymentCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                });
            }
        }
    }
    None
}

/// `syncRolloutStatus`'s computation: the status with the `Progressing` condition estimated.
pub fn rollout(all: &[&ReplicaSet], new: Option<&ReplicaSet>, d: &Deployment, now: Timestamp) -> DeploymentStatus {
    let mut s = calculate(all, new, d, now);
    if progress_deadline(d).is_none() {
        remove_condition(&mut s, PROGRESSING);
    }
    let old = d.status.clone().unwrap_or_default();
    let current = condition(&old, PROGRESSING).cloned();
    let is_complete =
        n(s.replicas) == n(s.updated_replicas) && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    let rs_name = new.and_then(|r| r.metadata.name.clone());
    let dname = d.metadata.name.clone().unwrap_or_default();
    if progress_deadline(d).is_some() && !is_complete {
        if complete(d, &s) {
            let msg = match &rs_name {
                Some(r) => format!("ReplicaSet \"{r}\" has successfully progressed."),
                None => format!("Deployment \"{dname}\" has successfully progressed."),
            };
            set_condition(&mut s, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now));
        } else if progressing(d, &s) {
            let msg = match &rs_name {
                Some(r) => format!("ReplicaSet \"{r}\" is progressing."),
                None => format!("Deployment \"{dname}\" is progressing."),
            };
            let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, msg, now);
            if let Some(cur) = &current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, PROGRESSING);
            }
            set_condition(&mut s, c);
        } else if timed_out(d, &s, now) {
            let msg = match &rs_name {
                Some(r) => format!("ReplicaSet \"{r}\" has timed out progressing."),
                None => format!("Deployment \"{dname}\" has timed out progressing."),
            };
            set_condition(&mut s, new_condition(PROGRESSING, "False", TIMED_OUT, msg, now));
        }
    }
    match replica_failure(all, new) {
        Some(c) => set_condition(&mut s, c),
        None => remove_condition(&mut s, REPLICA_FAILURE),
    }
    s
}

/// When to look at a Deployment again that made no progress (`requeueStuckDeployment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recheck {
    /// Not needed (no deadline, complete, or already timed out).
    No,
    /// Soon (rate-limited): the deadline is less than a second away.
    Soon,
    /// After this long (the deadline, plus a second).
    After(Duration),
}

/// `requeueStuckDeployment` for a Deployment whose status did not change.
pub fn recheck(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> Recheck {
    let old = d.status.clone().unwrap_or_default();
    let (Some(deadline), Some(cur)) = (progress_deadline(d), condition(&old, PROGRESSING)) else { return Recheck::No };
    if complete(d, s) || cur.reason.as_deref() == Some(TIMED_OUT) {
        return Recheck::No;
    }
    let Some(from) = cur.last_update_time.as_ref() else { return Recheck::No };
    let after = from.0.as_second() + i64::from(deadline) - now.as_second();
    if after < 1 { Recheck::Soon } else { Recheck::After(Duration::from_secs(after as u64 + 1)) }
}

/// `checkPausedConditions`: the status to write when the Paused/Resumed condition must change.
pub fn paused_update(d: &Deployment, now: Timestamp) -> Option<DeploymentStatus> {
    progress_deadline(d)?;
    let mut s = d.status.clone().unwrap_or_default();
    let cur = condition(&s, PROGRESSING);
    if cur.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
        return None;
    }
    let paused_cond = cur.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused && !paused_cond {
        set_condition(&mut s, new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now));
        Some(s)
    } else if !paused && paused_cond {
        set_condition(&mut s, new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now));
        Some(s)
    } else {
        None
    }
}

/// Status equality as the apiserver round-trips it (absent counts are zero).
pub fn same(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let key = |s: &DeploymentStatus| {
        (
            s.observed_generation.unwrap_or(0),
            n(s.replicas),
            n(s.updated_replicas),
            n(s.ready_replicas),
            n(s.available_replicas),
            n(s.unavailable_replicas),
            s.collision_count,
            s.conditions.clone().unwrap_or_default(),
        )
    };
    key(a) == key(b)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
