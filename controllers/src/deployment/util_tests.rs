//! Cases from kubernetes/pkg/controller/deployment/util/deployment_util_test.go.

use super::*;
use crate::deployment::testutil::*;

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    // TestResolveFenceposts.
    let s = |v: &str| Some(IntOrString::String(v.into()));
    type Row = (Option<IntOrString>, Option<IntOrString>, i32, Result<(i32, i32), ()>);
    let rows: Vec<Row> = vec![
        (s("0%"), s("0%"), 0, Ok((0, 1))),
        (s("39%"), s("39%"), 10, Ok((4, 3))),
        (s("oops"), s("39%"), 10, Err(())),
        (s("55%"), s("urg"), 10, Err(())),
        (s("5"), s("1"), 7, Err(())),
        (None, s("39%"), 10, Ok((0, 3))),
        (s("39%"), None, 10, Ok((4, 0))),
        (None, None, 10, Ok((0, 1))),
        (Some(IntOrString::Int(1)), Some(IntOrString::Int(1)), 2, Ok((1, 1))),
        (s("25%"), s("25%"), 8, Ok((2, 2))),
    ];
    for (i, (surge, unav, desired, want)) in rows.into_iter().enumerate() {
        let got = resolve_fenceposts(surge.as_ref(), unav.as_ref(), desired).map_err(|_| ());
        assert_eq!(got, want, "row {i}");
    }
}

#[test]
fn max_unavailable_is_capped_by_replicas_and_zero_for_recreate() {
    // TestMaxUnavailable.
    let rows = [
        (10, int(5), 5),
        (10, int(10), 10),
        (5, int(10), 5),
        (0, int(10), 0),
        (10, pct("50%"), 5),
        (10, pct("100%"), 10),
        (5, pct("100%"), 5),
    ];
    for (replicas, unav, want) in rows {
        assert_eq!(max_unavailable(&deployment(replicas, int(1), unav.clone())), want, "{replicas} {unav:?}");
    }
    let mut recreate = deployment(3, None, None);
    if let Some(s) = recreate.spec.as_mut().and_then(|s| s.strategy.as_mut()) {
        s.type_ = Some("Recreate".into());
        s.rolling_update = None;
    }
    assert_eq!(max_unavailable(&recreate), 0);
    assert_eq!(max_surge(&recreate), 0);
}

#[test]
fn new_rs_grows_up_to_surge_and_never_past_replicas() {
    // TestNewRSNewReplicas: all other ReplicaSets hold 5; (replicas, newRS, maxSurge) → size.
    for (replicas, new, surge, want) in [(1, 5, 1, 5), (6, 2, 10, 6)] {
        let d = deployment(replicas, int(surge), int(1));
        assert_eq!(new_rs_new_replicas(&d, 5, new), want, "{replicas} {new} {surge}");
    }
    let mut recreate = deployment(3, int(1), int(1));
    if let Some(s) = recreate.spec.as_mut().and_then(|s| s.strategy.as_mut()) {
        s.type_ = Some("Recreate".into());
    }
    assert_eq!(new_rs_new_replicas(&recreate, 5, 1), 3);
}

#[test]
fn new_rs_annotations_raise_the_revision_and_keep_history() {
    // TestAnnotationUtils / SetNewReplicaSetAnnotations.
    let mut d = deployment(3, int(1), int(0));
    d.metadata.annotations =
        Some([("kubernetes.io/change-cause".to_string(), "v2".to_string()), (LAST_APPLIED.to_string(), "{}".to_string())].into());
    let mut ann = BTreeMap::new();
    assert!(set_new_rs_annotations(&d, &mut ann, 1, false));
    assert_eq!(ann.get(REVISION).map(String::as_str), Some("1"));
    assert_eq!(ann.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
    assert!(!ann.contains_key(LAST_APPLIED), "last-applied is never copied");
    assert_eq!((ann.get(DESIRED_REPLICAS).map(String::as_str), ann.get(MAX_REPLICAS).map(String::as_str)), (Some("3"), Some("4")));
    assert!(!set_new_rs_annotations(&d, &mut ann, 1, true), "nothing new");
    // Rolling back to this ReplicaSet at revision 3, then 5: history keeps 1 and 3.
    assert!(set_new_rs_annotations(&d, &mut ann, 3, true));
    assert!(set_new_rs_annotations(&d, &mut ann, 5, true));
    assert_eq!(ann.get(REVISION).map(String::as_str), Some("5"));
    assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
    assert!(!set_new_rs_annotations(&d, &mut ann, 4, true), "a lower revision never replaces a higher one");
}

#[test]
fn templates_compare_without_the_hash_label_and_hash_stably() {
    let t = |labels: &[(&str, &str)], image: &str| -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap_or_default()
    };
    let a = t(&[("app", "a")], "nginx:1");
    let hashed = t(&[("app", "a"), (POD_TEMPLATE_HASH, "xyz")], "nginx:1");
    assert!(equal_ignore_hash(&a, &hashed));
    assert!(!equal_ignore_hash(&a, &t(&[("app", "a")], "nginx:2")));
    let mut with_empty = a.clone();
    with_empty.metadata.get_or_insert_with(Default::default).annotations = Some(BTreeMap::new());
    assert!(equal_ignore_hash(&a, &with_empty), "nil and empty maps are equal, as Go's semantic equality");
    assert_eq!(pod_template_hash(&a, None), pod_template_hash(&hashed, None));
    assert_ne!(pod_template_hash(&a, None), pod_template_hash(&a, Some(1)), "collisionCount changes the hash");
    assert!(pod_template_hash(&a, None).chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
}
