//! Cases from kubernetes/pkg/controller/deployment/rolling_test.go and sync_test.go.

use super::*;
use crate::deployment::testutil::*;
use crate::deployment::util::{DESIRED_REPLICAS, MAX_REPLICAS, set_replicas_annotations};

#[test]
fn new_replica_set_scales_up_within_surge_and_down_to_replicas() {
    // TestDeploymentController_reconcileNewReplicaSet: (replicas, maxSurge, old, new) → target.
    let rows = [(10, 0, 10, 0, None), (10, 2, 10, 0, Some(2)), (10, 2, 5, 0, Some(7)), (10, 2, 10, 2, None), (10, 2, 2, 11, Some(10))];
    for (replicas, surge, old, new, want) in rows {
        let d = deployment(replicas, int(surge), int(0));
        let (n, o) = (rs("foo-v2", new, 2), rs("foo-v1", old, 1));
        assert_eq!(new_rs_target(&d, &[&n, &o], &n), want, "{replicas} {surge} {old} {new}");
    }
}

#[test]
fn old_replica_sets_scale_down_unhealthy_first_within_max_unavailable() {
    // TestDeploymentController_reconcileOldReplicaSets:
    // (replicas, maxUnavailable, old, new, old available, new available) → old target.
    let rows = [
        (10, 0, 10, 0, 10, 0, Some(9)),
        (10, 2, 10, 0, 10, 0, Some(8)),
        (10, 2, 10, 0, 8, 0, Some(8)),
        (10, 2, 10, 0, 9, 0, Some(8)),
        (10, 2, 8, 2, 8, 0, None),
    ];
    for (replicas, unav, old, new, old_avail, new_avail, want) in rows {
        let d = deployment(replicas, int(0), int(unav));
        let o = with_available(rs("foo-old", old, 1), old_avail);
        let n = with_available(rs("foo-new", new, 2), new_avail);
        let got = old_rs_targets(&d, &[&o], &n).first().map(|t| t.1);
        assert_eq!(got, want, "{replicas} {unav} {old} {new} {old_avail} {new_avail}");
    }
}

#[test]
fn unhealthy_cleanup_is_bounded_by_what_may_be_scaled_down() {
    // TestDeploymentController_cleanupUnhealthyReplicas: (old, ready, max) → cleaned.
    for (old, ready, max, want) in [(10, 8, 1, 1), (10, 8, 3, 2), (10, 8, 0, 0), (10, 10, 3, 0)] {
        let o = with_available(rs("foo-v2", old, 1), ready);
        let mut sizes = vec![old];
        assert_eq!(cleanup_unhealthy(&[&o], &mut sizes, max), want, "{old} {ready} {max}");
        assert_eq!(sizes[0], old - want);
    }
}

#[test]
fn scale_down_for_rolling_update_keeps_min_available() {
    // TestDeploymentController_scaleDownOldReplicaSetsForRollingUpdate:
    // (replicas, maxUnavailable, available, old) → old size after.
    let rows = [(10, 0, 10, 10, 9), (10, 2, 10, 10, 8), (10, 2, 8, 10, 10), (10, 2, 1, 10, 10)];
    for (replicas, unav, avail, old, want) in rows {
        let d = deployment(replicas, int(0), int(unav));
        let mut sizes = vec![old];
        scale_down_available(&mut sizes, avail, replicas - util::max_unavailable(&d));
        assert_eq!(sizes[0], want, "{replicas} {unav} {avail} {old}");
    }
}

/// kube's TestScale setup: every ReplicaSet annotated with the old Deployment's size.
fn annotated(r: ReplicaSet, old_replicas: i32, old_surge: i32) -> ReplicaSet {
    let mut a = r.metadata.annotations.clone().unwrap_or_default();
    set_replicas_annotations(&mut a, old_replicas, old_replicas + old_surge);
    let mut r = r;
    r.metadata.annotations = Some(a);
    r
}

#[test]
fn scaling_events_are_spread_proportionally() {
    // TestScale: (name, replicas, surge, old replicas, old surge, new, [old...]) → (new, [old...]).
    type Row = (&'static str, i32, i32, i32, i32, Option<i32>, Vec<i32>, Option<i32>, Vec<i32>);
    let rows: Vec<Row> = vec![
        ("normal scaling event: 10 -> 12", 12, 0, 10, 0, Some(10), vec![], Some(12), vec![]),
        ("normal scaling event: 10 -> 5", 5, 0, 10, 0, Some(10), vec![], Some(5), vec![]),
        ("proportional scaling: 5 -> 10", 10, 0, 5, 0, Some(2), vec![3], Some(4), vec![6]),
        ("proportional scaling: 5 -> 3", 3, 0, 5, 0, Some(2), vec![3], Some(1), vec![2]),
        ("proportional scaling: 9 -> 4", 4, 0, 9, 0, Some(8), vec![1], Some(4), vec![0]),
        ("proportional scaling: 7 -> 10", 10, 0, 7, 0, Some(2), vec![3, 2], Some(3), vec![4, 3]),
        ("proportional scaling: 13 -> 8", 8, 0, 13, 0, Some(2), vec![8, 3], Some(1), vec![5, 2]),
        ("leftover distribution: 3 -> 4", 4, 0, 3, 0, Some(1), vec![1, 1], Some(2), vec![1, 1]),
        ("leftover distribution: 3 -> 2", 2, 0, 3, 0, Some(1), vec![1, 1], Some(1), vec![1, 0]),
        ("proportional scaling (no new rs): 4 -> 5", 5, 0, 4, 0, None, vec![2, 2], None, vec![3, 2]),
        ("proportional scaling: 6 -> 0", 0, 0, 6, 0, Some(3), vec![2, 1], Some(0), vec![0, 0]),
        ("proportional scaling: 0 -> 6", 6, 0, 6, 0, Some(0), vec![0, 0], Some(6), vec![0, 0]),
        ("deployment with surge pods", 20, 2, 10, 2, Some(6), vec![6], Some(11), vec![11]),
        ("change both surge and size", 50, 6, 10, 3, Some(5), vec![8], Some(22), vec![34]),
    ];
    for (what, replicas, surge, old_replicas, old_surge, new, old, want_new, want_old) in rows {
        let d = deployment(replicas, int(surge), None);
        let new_rs = new.map(|n| annotated(rs("foo-new", n, 100), old_replicas, old_surge));
        // Old ReplicaSets are listed newest first, as in kube's table.
        let old_rss: Vec<ReplicaSet> =
            old.iter().enumerate().map(|(i, n)| annotated(rs(&format!("foo-v{i}"), *n, 50 - i as i64), old_replicas, old_surge)).collect();
        let old_refs: Vec<&ReplicaSet> = old_rss.iter().collect();
        let targets = scale_targets(&d, new_rs.as_ref(), &old_refs);
        let size = |r: &ReplicaSet| {
            let n = r.metadata.name.clone().unwrap_or_default();
            targets.iter().find(|t| t.0 == n).map(|t| t.1).unwrap_or(util::rs_replicas(r))
        };
        assert_eq!(new_rs.as_ref().map(size), want_new, "{what}: new");
        assert_eq!(old_rss.iter().map(size).collect::<Vec<_>>(), want_old, "{what}: old");
    }
}

#[test]
fn change_of_size_and_template_scales_the_old_sets_proportionally() {
    // TestScale "change both size and template": no new ReplicaSet yet, 10 → 14.
    let d = deployment(14, None, None);
    let a = annotated(rs("foo-v2", 7, 20), 10, 0);
    let b = annotated(rs("foo-v1", 3, 10), 10, 0);
    let t = scale_targets(&d, None, &[&a, &b]);
    assert_eq!(t, vec![("foo-v2".to_string(), 10), ("foo-v1".to_string(), 4)]);
}

#[test]
fn a_proportional_scale_down_writes_the_cut_before_the_growth() {
    // 5 replicas, maxSurge 2 (7 in all): the old set still carries the annotations of 3 (max
    // 4), the new one those of 5 (max 7), 3 of its 5 available. 8 → 7: the old set's fraction
    // is 3·7/4 ≈ 5 (+2), the new one takes the leftover (−3). Growth first would ask for 10.
    let d = deployment(5, int(2), int(0));
    let o = annotated(rs("foo-v1", 3, 10), 3, 1);
    let n = with_available(annotated(rs("foo-v2", 5, 20), 5, 2), 3);
    assert_eq!(scale_targets(&d, Some(&n), &[&o]), vec![("foo-v2".to_string(), 2), ("foo-v1".to_string(), 5)]);
}

#[test]
fn a_saturated_but_broken_new_set_leaves_old_pods_alone() {
    let d = deployment(2, int(1), int(1));
    let n = with_available(annotated(rs("foo-v2", 2, 20), 2, 1), 0);
    let o = annotated(rs("foo-v1", 1, 10), 2, 1);
    assert!(scale_targets(&d, Some(&n), &[&o]).is_empty());
    // Once saturated (all available), the old ones go to zero.
    let n = annotated(rs("foo-v2", 2, 20), 2, 1);
    assert_eq!(scale_targets(&d, Some(&n), &[&o]), vec![("foo-v1".to_string(), 0)]);
    assert_eq!(n.metadata.annotations.as_ref().and_then(|a| a.get(DESIRED_REPLICAS)).map(String::as_str), Some("2"));
    assert!(n.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MAX_REPLICAS)));
}

#[test]
fn history_cleanup_keeps_the_limit_and_only_deletes_empty_observed_sets() {
    // TestDeploymentController_cleanupDeployment: (limit, [(spec, status)]) → deletions.
    let make = |spec: i32, status: i32, i: usize| {
        let mut r = rs(&format!("foo-{i}"), spec, i as i64);
        if let Some(s) = r.status.as_mut() {
            s.replicas = status;
        }
        r
    };
    type Row = (i32, Vec<(i32, i32)>, usize);
    let rows: Vec<Row> = vec![
        (1, vec![(0, 0), (0, 0), (0, 0)], 2),
        (0, vec![(0, 0), (0, 1), (1, 0), (1, 1)], 1),
        (0, vec![(0, 0), (0, 0)], 2),
        (0, vec![(1, 1), (1, 1)], 0),
        (i32::MAX, vec![(0, 0), (0, 0), (0, 0)], 0),
    ];
    for (limit, sets, want) in rows {
        let mut d = deployment(1, None, None);
        if let Some(s) = d.spec.as_mut() {
            s.revision_history_limit = Some(limit);
        }
        let rss: Vec<ReplicaSet> = sets.iter().enumerate().map(|(i, (a, b))| make(*a, *b, i)).collect();
        let refs: Vec<&ReplicaSet> = rss.iter().collect();
        assert_eq!(history_to_delete(&d, &refs).len(), want, "limit {limit} {sets:?}");
    }
    let mut deleting = make(0, 0, 1);
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(5)));
    let mut d = deployment(1, None, None);
    if let Some(s) = d.spec.as_mut() {
        s.revision_history_limit = Some(0);
    }
    assert!(history_to_delete(&d, &[&deleting]).is_empty(), "already being deleted");
}

/// Request faults3-3's end state (keel-faults seed 7, Deployment default/web-1): replicas 2,
/// maxSurge 1, maxUnavailable 0; the new ReplicaSet and two old ones at 1/1 available, a third
/// old one at 0. `desired` is each set's `desired-replicas` annotation (max = desired + 1).
fn faults3_3(desired: [i32; 4]) -> (Deployment, Vec<ReplicaSet>) {
    let d = deployment(2, int(1), int(0));
    let sets = [("web-1-dc95b4cc9", 0, 10), ("web-1-6f9794b986", 1, 20), ("web-1-579fd85d9b", 1, 30), ("web-1-589db59545", 1, 40)];
    let rss = sets.iter().zip(desired).map(|((n, size, created), want)| annotated(rs(n, *size, *created), want, 1)).collect();
    (d, rss)
}

/// One sync of the decisions `sync.rs` takes for a rolling Deployment (scaling event → `scale`,
/// else `reconcileNewReplicaSet`, else `reconcileOldReplicaSets`), applied as the shell writes
/// them (size and replicas annotations), with every pod available at once. The new ReplicaSet is
/// the last. False when nothing was written.
fn sync_once(d: &Deployment, rss: &mut [ReplicaSet]) -> bool {
    let (want, max) = (util::replicas(d), util::replicas(d) + util::max_surge(d));
    let targets = {
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        let Some((new, old)) = all.split_last() else { return false };
        if is_scaling_event(d, &all) {
            scale_targets(d, Some(new), old)
        } else if let Some(n) = new_rs_target(d, &all, new) {
            vec![(new.metadata.name.clone().unwrap_or_default(), n)]
        } else {
            old_rs_targets(d, &active(old), new)
        }
    };
    for (name, size) in &targets {
        for r in rss.iter_mut().filter(|r| r.metadata.name.as_ref() == Some(name)) {
            if let Some(s) = r.spec.as_mut() {
                s.replicas = Some(*size);
            }
            set_replicas_annotations(r.metadata.annotations.get_or_insert_with(Default::default), want, max);
            *r = with_available(r.clone(), *size);
            if let Some(s) = r.status.as_mut() {
                s.replicas = *size;
            }
        }
    }
    !targets.is_empty()
}

#[test]
fn three_one_pod_sets_at_surge_limit_scale_the_oldest_old_set_down() {
    // kube's reconcileNewReplicaSet: 3 pods = replicas 2 + maxSurge 1, so the new set waits;
    // reconcileOldReplicaSets: maxScaledDown = allPods 3 − minAvailable 2 − newUnavailable 0 = 1,
    // no unhealthy pods, available 3 − 2 = 1 scaled from the oldest active old set.
    let (d, rss) = faults3_3([2, 2, 2, 2]);
    let refs: Vec<&ReplicaSet> = rss.iter().collect();
    let (new, old) = (refs[3], &refs[..3]);
    assert!(!is_scaling_event(&d, &refs));
    assert_eq!(new_rs_target(&d, &refs, new), None);
    assert_eq!(old_rs_targets(&d, &active(old), new), vec![("web-1-6f9794b986".to_string(), 0)]);
}

#[test]
fn stale_desired_replicas_annotations_are_rewritten_even_when_sizes_add_up() {
    // The soak's sets: two active ones still say desired 4 after the Deployment went 4 → 2.
    // Sizes already add up to replicas + maxSurge = 3, so kube's scale writes no size, but its
    // scaleReplicaSet still rewrites the annotations of every active set.
    let (d, rss) = faults3_3([4, 4, 2, 4]);
    let refs: Vec<&ReplicaSet> = rss.iter().collect();
    assert!(is_scaling_event(&d, &refs));
    let got = scale_targets(&d, Some(refs[3]), &refs[..3]);
    let mut names: Vec<(String, i32)> = got;
    names.sort();
    assert_eq!(names, vec![("web-1-589db59545".to_string(), 1), ("web-1-6f9794b986".to_string(), 1)]);
}

#[test]
fn the_faults3_3_rollout_finishes_from_its_stalled_state() {
    // (desired-replicas annotations of the four sets) → the rollout completes: new 2, old 0.
    for desired in [[2, 2, 2, 2], [4, 4, 2, 4], [4, 4, 4, 4], [3, 2, 3, 2]] {
        let (d, mut rss) = faults3_3(desired);
        let mut syncs = 0;
        while sync_once(&d, &mut rss) {
            syncs += 1;
            assert!(syncs < 10, "{desired:?}: no end after {syncs} syncs");
        }
        let sizes: Vec<i32> = rss.iter().map(util::rs_replicas).collect();
        assert_eq!(sizes, vec![0, 0, 0, 2], "{desired:?} after {syncs} syncs");
    }
}

#[test]
fn the_faults3_2_rollout_finishes_after_a_scale_up_mid_rollout() {
    // Request faults3-2's Deployment default/web-0 (keel-faults seed 5): replicas 3 (was 2),
    // default 25 %/25 % strategy (surge 1, unavailable 0); old set 3/3 annotated desired 3, the
    // new set 1/1 still annotated desired 2: 4 pods = replicas + surge, so no size changes and,
    // before the annotations were rewritten, every sync was a no-op scaling event.
    let mut d = deployment(3, None, None);
    if let Some(s) = d.spec.as_mut() {
        s.strategy = None;
    }
    let mut rss = vec![annotated(rs("web-0-6bdbf57fbc", 3, 10), 3, 1), annotated(rs("web-0-56f6fd7c6", 1, 20), 2, 1)];
    let mut syncs = 0;
    while sync_once(&d, &mut rss) {
        syncs += 1;
        assert!(syncs < 12, "no end after {syncs} syncs");
    }
    assert_eq!(rss.iter().map(util::rs_replicas).collect::<Vec<_>>(), vec![0, 3], "after {syncs} syncs");
}
