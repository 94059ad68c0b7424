//! A ReplicaSet's status from the pods it owns, without I/O (kube's
//! `replicaset.calculateStatus`): `replicas` counts active owned pods, `fullyLabeledReplicas`
//! those whose labels include all of the template's, `readyReplicas` the ready ones,
//! `availableReplicas` those ready for `minReadySeconds`; a failed create/delete sets the
//! `ReplicaFailure` condition, a later success removes it.

use crate::pod;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The `ReplicaFailure` condition type.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// `Some(n)` unless zero: counts Kubernetes serializes with `omitempty`.
pub fn nz(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The desired replica count (`spec.replicas`, default 1).
pub fn desired(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.minReadySeconds`.
pub fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// The status `rs` should have, given its active owned `pods` and the error of the last
/// create/delete round (`None` when it succeeded or did not run).
pub fn calculate(rs: &ReplicaSet, pods: &[&Pod], manage_error: Option<&str>, now: Timestamp) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = min_ready_seconds(rs);
    let (mut fully, mut ready, mut available) = (0, 0, 0);
    for p in pods {
        let labels = p.metadata.labels.as_ref();
        if template_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            fully += 1;
        }
        if pod::is_ready(p) {
            ready += 1;
            if pod::is_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let has_failure = status.conditions.iter().flatten().any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(msg) if !has_failure => {
            let diff = pods.len() as i64 - i64::from(desired(rs));
            let reason = if diff < 0 {
                "FailedCreate"
            } else if diff > 0 {
                "FailedDelete"
            } else {
                ""
            };
            let cond = ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: (!reason.is_empty()).then(|| reason.into()),
                message: Some(msg.into()),
                last_transition_time: Some(Time(now)),
            };
            status.conditions.get_or_insert_with(Vec::new).push(cond);
        }
        None if has_failure => {
            if let Some(c) = status.conditions.as_mut() {
                c.retain(|c| c.type_ != REPLICA_FAILURE);
                if c.is_empty() {
                    status.conditions = None;
                }
            }
        }
        _ => {}
    }
    status.replicas = pods.len() as i32;
    status.fully_labeled_replicas = nz(fully);
    status.ready_replicas = nz(ready);
    status.available_replicas = nz(available);
    status
}

/// True when `new` differs from what `rs` reports, or `rs`'s generation is not yet observed.
pub fn needs_update(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    old.replicas != new.replicas
        || n(old.fully_labeled_replicas) != n(new.fully_labeled_replicas)
        || n(old.ready_replicas) != n(new.ready_replicas)
        || n(old.available_replicas) != n(new.available_replicas)
        || old.conditions.unwrap_or_default() != new.conditions.clone().unwrap_or_default()
        || old.observed_generation.unwrap_or(0) != rs.metadata.generation.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { generation: Some(2), ..Default::default() },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".into(), "a".into()), ("v".into(), "1".into())].into()),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(labels: &[(&str, &str)], ready_at: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(t))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    // The rows of kubernetes/pkg/controller/replicaset/replica_set_utils_test.go
    // TestCalculateStatus: (replicas, fullyLabeled, ready, available).
    #[test]
    fn counts_follow_labels_readiness_and_min_ready_seconds() {
        let full = [("app", "a"), ("v", "1")];
        let partial = [("app", "a")];
        type Row = (&'static str, ReplicaSet, Vec<Pod>, (i32, i32, i32, i32));
        let rows: Vec<Row> = vec![
            ("1 fully labelled pod", rs(1, 0), vec![pod(&full, None)], (1, 1, 0, 0)),
            ("1 not fully labelled", rs(1, 0), vec![pod(&partial, None)], (1, 0, 0, 0)),
            (
                "2 fully, 2 partially",
                rs(4, 0),
                vec![pod(&full, None), pod(&full, None), pod(&partial, None), pod(&partial, None)],
                (4, 2, 0, 0),
            ),
            ("1 ready and available", rs(2, 0), vec![pod(&full, Some(0)), pod(&full, None)], (2, 2, 1, 1)),
            ("ready but not yet available", rs(2, 3600), vec![pod(&full, Some(99)), pod(&full, Some(0))], (2, 2, 2, 1)),
        ];
        for (what, r, pods, (replicas, fully, ready, avail)) in rows {
            let refs: Vec<&Pod> = pods.iter().collect();
            let s = calculate(&r, &refs, None, ts(3601));
            let got = (s.replicas, s.fully_labeled_replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0));
            assert_eq!(got, (replicas, fully, ready, avail), "{what}");
        }
    }

    // TestCalculateStatusConditions.
    #[test]
    fn a_failed_round_sets_replica_failure_and_a_good_round_clears_it() {
        let mut r = rs(2, 0);
        let p = pod(&[("app", "a")], None);
        let s = calculate(&r, &[&p], Some("quota"), ts(1));
        let conds = s.conditions.clone().unwrap_or_default();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].reason.as_deref(), Some("FailedCreate"));
        r.status = Some(s);
        let again = calculate(&r, &[&p], Some("other"), ts(2));
        assert_eq!(again.conditions.unwrap_or_default()[0].message.as_deref(), Some("quota"), "an existing failure is kept");
        let ok = calculate(&r, &[&p], None, ts(3));
        assert_eq!(ok.conditions, None);
        let mut three = rs(1, 0);
        three.status = None;
        let s = calculate(&three, &[&p, &p], Some("no"), ts(1));
        assert_eq!(s.conditions.unwrap_or_default()[0].reason.as_deref(), Some("FailedDelete"));
    }

    #[test]
    fn an_unobserved_generation_needs_an_update_even_with_equal_counts() {
        let mut r = rs(0, 0);
        let s = calculate(&r, &[], None, ts(1));
        assert!(needs_update(&r, &s));
        let mut observed = s.clone();
        observed.observed_generation = Some(2);
        r.status = Some(observed);
        assert!(!needs_update(&r, &s));
    }
}
