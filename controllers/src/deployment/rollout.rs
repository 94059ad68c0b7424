//! The rollout steps of a Deployment as plans, without I/O (kube's `rolling.go`, `sync.go`
//! `scale`, `recreate.go` arithmetic): each function takes the Deployment and its ReplicaSets
//! as the cache holds them and returns the sizes to write. The shell writes them and lets the
//! next sync (woken by the ReplicaSets' status changes) take the next step.
//!
//! Invariants of a rolling update (what the plans guarantee, given accurate RS status):
//! - Σ spec.replicas never exceeds `replicas + maxSurge`;
//! - old ReplicaSets shrink only while Σ availableReplicas stays ≥ `replicas − maxUnavailable`,
//!   counting the new ReplicaSet's unavailable pods against the budget;
//! - unavailable old pods are scaled away first, so they never block progress.

use super::util::{self, MAX_REPLICAS, Sized};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

/// A ReplicaSet's `status.availableReplicas`.
pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// A ReplicaSet's `status.replicas`.
pub fn actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// `ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn sort_by_age(rss: &mut [&ReplicaSet]) {
    rss.sort_by(|a, b| created(a).cmp(&created(b)).then_with(|| name(a).cmp(&name(b))));
}

/// Σ spec.replicas.
pub fn total_replicas(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|r| util::rs_replicas(r)).sum()
}

/// `FilterActiveReplicaSets`: spec.replicas > 0.
pub fn active<'a>(rss: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    rss.iter().copied().filter(|r| util::rs_replicas(r) > 0).collect()
}

/// `FindActiveOrLatest`: the only active ReplicaSet, or the newest when none is active; `None`
/// when several are active.
pub fn active_or_latest<'a>(new: Option<&'a ReplicaSet>, old: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let mut old: Vec<&ReplicaSet> = old.to_vec();
    sort_by_age(&mut old);
    old.reverse();
    let mut all = old.clone();
    all.extend(new);
    let act = active(&all);
    match act.len() {
        0 => new.or_else(|| old.first().copied()),
        1 => Some(act[0]),
        _ => None,
    }
}

/// `IsSaturated`: the new ReplicaSet holds all replicas, all available, and was sized for them.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let Some(desired) = util::int_annotation(rs, util::DESIRED_REPLICAS) else { return false };
    let want = util::replicas(d);
    util::rs_replicas(rs) == want && desired == want && available(rs) == want
}

/// `isScalingEvent`: an active ReplicaSet carries a `desired-replicas` annotation other than
/// the Deployment's replicas (it was sized for another replica count).
pub fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    let want = util::replicas(d);
    active(all).iter().any(|r| util::int_annotation(r, util::DESIRED_REPLICAS).is_some_and(|n| n != want))
}

/// kube's `scale` (scaling events and paused Deployments): the size to write for each
/// ReplicaSet that must be written, by name, in the order to write them. With several active
/// ReplicaSets that is every one whose size or desired/max-replicas annotations differ (kube
/// calls `scaleReplicaSet` on each active set even when the sizes already add up): were a stale
/// annotation left, every later sync would again be a scaling event, and the rollout would
/// never resume. Every shrink comes before any growth: a proportional scale-down can still grow
/// one set (its fraction of the new `replicas + maxSurge` by its stale max-replicas annotation)
/// while the largest takes the leftover cut, and writing the growth first would ask, between
/// the two writes, for more than `replicas + maxSurge` in all. kube writes in its sort order,
/// largest first for a scale-down, so the set that takes the cut is written first there too.
pub fn scale_targets(d: &Deployment, new: Option<&ReplicaSet>, old: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let want = util::replicas(d);
    if let Some(rs) = active_or_latest(new, old) {
        return if util::rs_replicas(rs) == want { vec![] } else { vec![(name(rs), want)] };
    }
    if is_saturated(d, new) {
        return active(old).into_iter().map(|r| (name(r), 0)).collect();
    }
    if !util::is_rolling(d) {
        return vec![];
    }
    let mut all: Vec<&ReplicaSet> = old.to_vec();
    all.extend(new);
    let act = active(&all);
    let sized: Vec<Sized> = act
        .iter()
        .map(|r| Sized {
            replicas: util::rs_replicas(r),
            annotated_max: util::int_annotation(r, MAX_REPLICAS),
            created: created(r),
            name: name(r),
        })
        .collect();
    let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let sizes = util::proportional_sizes(d, status_replicas, &sized);
    let max = want + util::max_surge(d);
    let mut targets: Vec<(String, i32, bool)> = act
        .iter()
        .zip(sizes)
        .filter(|(r, s)| util::rs_replicas(r) != *s || util::replicas_annotations_need_update(r, want, max))
        .map(|(r, s)| (name(r), s, s > util::rs_replicas(r)))
        .collect();
    // Stable: shrinks (and annotation-only writes) first, growths after, each in `act`'s order.
    targets.sort_by_key(|(_, _, grows)| *grows);
    targets.into_iter().map(|(n, s, _)| (n, s)).collect()
}

/// `reconcileNewReplicaSet`: the new ReplicaSet's next size, if it changes.
pub fn new_rs_target(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> Option<i32> {
    let (have, want) = (util::rs_replicas(new), util::replicas(d));
    if have == want {
        return None;
    }
    if have > want {
        return Some(want);
    }
    let next = util::new_rs_new_replicas(d, total_replicas(all), have);
    (next != have).then_some(next)
}

/// `reconcileOldReplicaSets`: first scale away old ReplicaSets' unavailable replicas
/// (`cleanupUnhealthyReplicas`), then available ones while the Deployment keeps its minimum
/// (`scaleDownOldReplicaSetsForRollingUpdate`). Returns the changed sizes, by name.
pub fn old_rs_targets(d: &Deployment, old_active: &[&ReplicaSet], new: &ReplicaSet) -> Vec<(String, i32)> {
    let old_total = total_replicas(old_active);
    if old_total == 0 {
        return vec![];
    }
    let mut all: Vec<&ReplicaSet> = old_active.to_vec();
    all.push(new);
    let all_total = total_replicas(&all);
    let min_available = util::replicas(d) - util::max_unavailable(d);
    let new_unavailable = util::rs_replicas(new) - available(new);
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return vec![];
    }
    let mut old: Vec<&ReplicaSet> = old_active.to_vec();
    sort_by_age(&mut old);
    let mut sizes: Vec<i32> = old.iter().map(|r| util::rs_replicas(r)).collect();
    cleanup_unhealthy(&old, &mut sizes, max_scaled_down);
    let total_available: i32 = old.iter().map(|r| available(r)).sum::<i32>() + available(new);
    scale_down_available(&mut sizes, total_available, min_available);
    old.iter().zip(sizes).filter(|(r, s)| util::rs_replicas(r) != *s).map(|(r, s)| (name(r), s)).collect()
}

/// `cleanupUnhealthyReplicas`: lowers `sizes` (of `old`, oldest first) by their unavailable
/// replicas, at most `max` in total; returns how many.
pub fn cleanup_unhealthy(old: &[&ReplicaSet], sizes: &mut [i32], max: i32) -> i32 {
    let mut cleaned = 0;
    for (i, rs) in old.iter().enumerate() {
        if cleaned >= max {
            break;
        }
        let (size, avail) = (sizes[i], available(rs));
        if size == 0 || size <= avail {
            continue;
        }
        let n = (max - cleaned).min(size - avail);
        sizes[i] = size - n;
        cleaned += n;
    }
    cleaned
}

/// `scaleDownOldReplicaSetsForRollingUpdate`: lowers `sizes` (oldest first) while the
/// Deployment's `total_available` stays above `min_available`; returns how many.
pub fn scale_down_available(sizes: &mut [i32], total_available: i32, min_available: i32) -> i32 {
    if total_available <= min_available {
        return 0;
    }
    let budget = total_available - min_available;
    let mut scaled = 0;
    for size in sizes.iter_mut() {
        if scaled >= budget {
            break;
        }
        if *size == 0 {
            continue;
        }
        let n = (*size).min(budget - scaled);
        *size -= n;
        scaled += n;
    }
    scaled
}

/// `cleanupDeployment`: the old ReplicaSets to delete beyond `revisionHistoryLimit` (lowest
/// revisions first), only those fully scaled down and observed.
pub fn history_to_delete(d: &Deployment, old: &[&ReplicaSet]) -> Vec<String> {
    let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
    if limit == i32::MAX {
        return vec![];
    }
    let mut alive: Vec<&ReplicaSet> = old.iter().copied().filter(|r| r.metadata.deletion_timestamp.is_none()).collect();
    let diff = alive.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return vec![];
    }
    // ReplicaSetsByRevision: by revision, then by creation time.
    alive.sort_by(|a, b| {
        util::revision(a.metadata.annotations.as_ref())
            .cmp(&util::revision(b.metadata.annotations.as_ref()))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| name(a).cmp(&name(b)))
    });
    alive
        .into_iter()
        .take(diff as usize)
        .filter(|r| {
            let observed = r.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            actual(r) == 0 && util::rs_replicas(r) == 0 && r.metadata.generation.unwrap_or(0) <= observed
        })
        .map(name)
        .collect()
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
