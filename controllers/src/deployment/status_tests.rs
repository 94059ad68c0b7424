//! Cases from kubernetes/pkg/controller/deployment/util/deployment_util_test.go
//! (TestDeploymentComplete, TestDeploymentProgressing, TestDeploymentTimedOut) and
//! progress_test.go (TestRequeueStuckDeployment, TestSyncRolloutStatus).

use super::*;
use crate::deployment::testutil::*;

fn with_status(mut d: Deployment, current: i32, updated: i32, ready: i32, avail: i32) -> Deployment {
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(current),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        ..Default::default()
    });
    d
}

fn st(current: i32, updated: i32, ready: i32, avail: i32) -> DeploymentStatus {
    DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(current),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        ..Default::default()
    }
}

#[test]
fn complete_means_all_updated_available_and_nothing_old() {
    // (desired, current, updated, available, maxUnavailable, maxSurge) → complete.
    let rows = [
        (5, 5, 5, 4, 1, 0, false),
        (5, 5, 5, 3, 1, 0, false),
        (5, 5, 5, 5, 0, 0, true),
        (5, 5, 4, 5, 0, 0, false),
        (1, 2, 1, 1, 0, 1, false),
        (1, 1, 1, 0, 1, 1, false),
    ];
    for (desired, current, updated, avail, unav, surge, want) in rows {
        let d = with_status(deployment(desired, int(surge), int(unav)), current, updated, 0, avail);
        assert_eq!(complete(&d, d.status.as_ref().unwrap_or(&Default::default())), want, "{desired} {current} {updated} {avail}");
    }
}

#[test]
fn progress_is_more_new_ready_or_available_pods_or_fewer_old_ones() {
    let rows = [
        ((10, 4, 4, 4), (10, 6, 4, 4), true),
        ((10, 4, 4, 4), (10, 4, 4, 4), false),
        ((10, 4, 6, 6), (8, 4, 6, 6), true),
        ((10, 7, 3, 3), (10, 6, 3, 3), false),
        ((10, 4, 7, 7), (8, 8, 5, 5), true),
        ((10, 10, 9, 8), (10, 10, 10, 8), true),
        ((10, 10, 10, 9), (10, 10, 10, 10), true),
    ];
    for (old, new, want) in rows {
        let d = with_status(deployment(10, None, None), old.0, old.1, old.2, old.3);
        assert_eq!(progressing(&d, &st(new.0, new.1, new.2, new.3)), want, "{old:?} → {new:?}");
    }
}

#[test]
fn timeout_compares_the_last_progress_with_the_deadline() {
    let at = |min: i64, sec: i64| ts(1_451_606_400 + min * 60 + sec);
    let mk = |reason: &str, pds: Option<i32>, from: Timestamp| {
        let mut d = deployment(1, None, None);
        if let Some(s) = d.spec.as_mut() {
            s.progress_deadline_seconds = pds;
        }
        let mut c = new_condition(PROGRESSING, "True", reason, String::new(), from);
        c.reason = (!reason.is_empty()).then(|| reason.to_string());
        d.status = Some(DeploymentStatus { conditions: Some(vec![c]), ..Default::default() });
        d
    };
    let rows = [
        ("no deadline", mk("", None, at(1, 9)), at(1, 20), false),
        ("infinite deadline", mk("", Some(i32::MAX), at(1, 9)), at(1, 20), false),
        ("10s deadline, 11s since progress", mk("", Some(10), at(1, 9)), at(1, 20), true),
        ("10s deadline, 9s since progress", mk("", Some(10), at(1, 11)), at(1, 20), false),
        ("previous rollout complete", mk(NEW_RS_AVAILABLE, Some(10), at(0, 0)), at(5, 0), false),
    ];
    for (what, d, now, want) in rows {
        assert_eq!(timed_out(&d, d.status.as_ref().unwrap_or(&Default::default()), now), want, "{what}");
    }
}

#[test]
fn a_stuck_rollout_is_rechecked_at_its_deadline() {
    // TestRequeueStuckDeployment (subset): deadline 10 s, progress reported at t.
    let t = ts(1_000);
    let mut d = deployment(3, int(1), int(0));
    if let Some(s) = d.spec.as_mut() {
        s.progress_deadline_seconds = Some(10);
    }
    let cond = |reason: &str, at| new_condition(PROGRESSING, "True", reason, String::new(), at);
    let s_incomplete = st(3, 1, 1, 1);
    d.status = Some(DeploymentStatus { conditions: Some(vec![cond(RS_UPDATED, t)]), ..st(3, 1, 1, 1) });
    assert_eq!(recheck(&d, &s_incomplete, ts(1_003)), Recheck::After(Duration::from_secs(8)));
    assert_eq!(recheck(&d, &s_incomplete, ts(1_010)), Recheck::Soon);
    assert_eq!(recheck(&d, &st(3, 3, 3, 3), ts(1_003)), Recheck::No, "complete");
    d.status = Some(DeploymentStatus { conditions: Some(vec![cond(TIMED_OUT, t)]), ..st(3, 1, 1, 1) });
    assert_eq!(recheck(&d, &s_incomplete, ts(1_003)), Recheck::No, "already timed out");
}

#[test]
fn rollout_status_reports_progress_completion_and_timeout() {
    let mut d = deployment(2, int(1), int(0));
    if let Some(s) = d.spec.as_mut() {
        s.progress_deadline_seconds = Some(60);
    }
    d.metadata.name = Some("web".into());
    let new = with_available(rs("web-b", 2, 20), 1);
    let old = rs("web-a", 1, 10);
    d.status = Some(DeploymentStatus { observed_generation: Some(1), ..st(3, 1, 2, 2) });
    let s = rollout(&[&old, &new], Some(&new), &d, ts(100));
    let p = condition(&s, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("True", Some(RS_UPDATED)));
    assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-b\" is progressing."));
    assert_eq!(condition(&s, AVAILABLE).map(|c| c.status.as_str()), Some("True"));

    // Nothing moves for longer than the deadline: ProgressDeadlineExceeded.
    d.status = Some(s.clone());
    let stuck = rollout(&[&old, &new], Some(&new), &d, ts(161));
    let p = condition(&stuck, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some(TIMED_OUT)));

    // All new and available: NewReplicaSetAvailable.
    let done = rs("web-b", 2, 20);
    let old0 = rs("web-a", 0, 10);
    let s = rollout(&[&old0, &done], Some(&done), &d, ts(200));
    let p = condition(&s, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("True", Some(NEW_RS_AVAILABLE)));
    assert_eq!((s.replicas, s.updated_replicas, s.available_replicas), (Some(2), Some(2), Some(2)));
}

#[test]
fn pausing_and_resuming_set_unknown_progress_once() {
    let mut d = deployment(1, None, None);
    if let Some(s) = d.spec.as_mut() {
        s.progress_deadline_seconds = Some(600);
        s.paused = Some(true);
    }
    let s = paused_update(&d, ts(1)).unwrap_or_default();
    assert_eq!(condition(&s, PROGRESSING).and_then(|c| c.reason.as_deref()), Some(PAUSED));
    d.status = Some(s);
    assert!(paused_update(&d, ts(2)).is_none(), "already paused");
    if let Some(sp) = d.spec.as_mut() {
        sp.paused = Some(false);
    }
    let s = paused_update(&d, ts(3)).unwrap_or_default();
    let c = condition(&s, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("Unknown", Some(RESUMED)));
}
