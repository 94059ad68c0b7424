use super::*;

fn at(kind: ObjKind, revision: i64, at_ms: u128, uid: &str) -> Version {
    let plural = match kind {
        ObjKind::Pod => "pods",
        ObjKind::ReplicaSet => "replicasets",
        ObjKind::Deployment => "deployments",
        ObjKind::Node => "nodes",
    };
    Version {
        revision,
        at_ms,
        kind,
        key: format!("/registry/{plural}/default/{uid}"),
        uid: uid.into(),
        deleted: false,
        node: None,
        active: true,
        owner: None,
        replicas: 1,
        max_surge: 0,
        image: None,
        cpu_millis: 0,
        terminal: false,
    }
}

fn d(revision: i64, at_ms: u128, replicas: i32, max_surge: i32) -> Version {
    Version { replicas, max_surge, image: Some("i1".into()), ..at(ObjKind::Deployment, revision, at_ms, "d") }
}

fn rs(revision: i64, at_ms: u128, uid: &str, replicas: i32) -> Version {
    Version { replicas, owner: Some("d".into()), ..at(ObjKind::ReplicaSet, revision, at_ms, uid) }
}

fn pod(revision: i64, at_ms: u128, uid: &str, owner: &str, active: bool) -> Version {
    Version { owner: Some(owner.into()), active, ..at(ObjKind::Pod, revision, at_ms, uid) }
}

#[test]
fn surge_resolves_like_kube() {
    use serde_json::json;
    let cases =
        [(json!(null), 4, 1), (json!(null), 1, 1), (json!(null), 0, 0), (json!("25%"), 5, 2), (json!(2), 7, 2), (json!("bad"), 3, 0)];
    for (v, replicas, want) in cases {
        assert_eq!(resolve_surge(&v, replicas), want, "{v} of {replicas}");
    }
}

#[test]
fn rollout_bounds_hold_within_the_staleness_window() {
    let base = || vec![d(1, 0, 2, 1), rs(2, 0, "a", 2), pod(3, 10, "p1", "a", true), pod(4, 10, "p2", "a", true)];
    let cases: Vec<(&str, Vec<Version>, usize)> = vec![
        ("a ReplicaSet fills its replicas", base(), 0),
        ("one pod too many", [base(), vec![pod(5, 20, "p3", "a", true)]].concat(), 1),
        ("a pod replaces a terminating one", [base(), vec![pod(5, 20, "p1", "a", false), pod(6, 30, "p3", "a", true)]].concat(), 0),
        (
            "a scale-down the informer had not seen yet",
            [base(), vec![rs(5, 100, "a", 1), pod(6, 101, "p1", "a", false), pod(7, 102, "p3", "a", true)]].concat(),
            0,
        ),
        (
            "the same long after the scale-down",
            [base(), vec![rs(5, 100, "a", 1), pod(6, 101, "p1", "a", false), pod(7, 100 + 10_001, "p3", "a", true)]].concat(),
            1,
        ),
        ("a surge within maxSurge", [base(), vec![rs(5, 50, "b", 1)]].concat(), 0),
        ("a surge beyond maxSurge", [base(), vec![rs(5, 50, "b", 2)]].concat(), 1),
        ("scaled up first, then surged", [base(), vec![d(5, 50, 3, 1), rs(6, 60, "b", 2)]].concat(), 0),
        ("a scale-down of the old one is never a violation", [base(), vec![rs(5, 50, "b", 1), rs(6, 60, "a", 1)]].concat(), 0),
        (
            "a new ReplicaSet sized by an informer that had not seen the old one yet",
            vec![d(1, 0, 2, 1), rs(2, 20_000, "a", 2), rs(3, 21_000, "b", 2)],
            0,
        ),
        ("the same when the old one is older than the window", vec![d(1, 0, 2, 1), rs(2, 20_000, "a", 2), rs(3, 30_001, "b", 2)], 1),
        (
            "a scale-up of the old one the informer had not seen yet",
            vec![d(1, 0, 2, 1), rs(2, 0, "a", 1), rs(3, 20_000, "a", 2), rs(4, 20_500, "b", 2)],
            0,
        ),
        ("the same once the window has passed", vec![d(1, 0, 2, 1), rs(2, 0, "a", 1), rs(3, 20_000, "a", 2), rs(4, 30_001, "b", 2)], 1),
        (
            "an old ReplicaSet released by its Deployment no longer counts",
            vec![d(1, 0, 2, 1), rs(2, 0, "a", 2), Version { owner: None, ..rs(3, 100, "a", 2) }, rs(4, 20_000, "b", 3)],
            0,
        ),
        ("an unowned pod is not judged", [base(), vec![pod(5, 20, "x", "", true)]].concat(), 0),
    ];
    for (name, history, violations) in cases {
        let got = rollout_bounds(&history);
        assert_eq!(got.len(), violations, "{name}: {got:?}");
    }
}

#[test]
fn acknowledged_writes_are_kept() {
    let w = |revision, replicas, image: &str| Written {
        key: "/registry/deployments/default/d".into(),
        revision,
        replicas,
        image: image.into(),
    };
    let h = vec![d(3, 0, 2, 1), d(5, 0, 4, 1), Version { image: Some("i2".into()), ..d(9, 0, 4, 1) }];
    let cases: Vec<(&str, Vec<Written>, usize)> = vec![
        ("every write kept, the last one last", vec![w(3, 2, "i1"), w(5, 4, "i1"), w(9, 4, "i2")], 0),
        ("a write that is not in the history", vec![w(3, 2, "i1"), w(7, 3, "i1")], 2),
        ("a write stored with other values", vec![w(5, 3, "i1")], 2),
        ("an unacknowledged later write explains the end", vec![w(3, 2, "i1"), w(0, 4, "i2")], 0),
        ("the end holds an earlier write only", vec![w(9, 4, "i2"), w(0, 1, "i1")], 0),
        ("the end is older than the last acknowledged write", vec![w(3, 2, "i1"), w(5, 4, "i1")], 1),
    ];
    for (name, writes, violations) in cases {
        let h = if name.starts_with("the end is older") { [h.clone(), vec![d(11, 0, 2, 1)]].concat() } else { h.clone() };
        let got = lost_writes(&h, &writes);
        assert_eq!(got.len(), violations, "{name}: {got:?}");
    }
}

#[test]
fn versions_read_the_stored_json() {
    let pod = br#"{"metadata":{"uid":"u1","ownerReferences":[{"uid":"o","controller":true}],"deletionTimestamp":"x"},"spec":{"nodeName":"n1"},"status":{"phase":"Running"}}"#;
    let v = version_of(7, 1, "/registry/pods/d/p", pod, false).expect("a pod");
    assert_eq!((v.uid.as_str(), v.node.as_deref(), v.owner.as_deref(), v.active), ("u1", Some("n1"), Some("o"), false));
    let dep = br#"{"metadata":{"uid":"u"},"spec":{"replicas":4,"template":{"spec":{"containers":[{"image":"x:1"}]}}}}"#;
    let v = version_of(8, 1, "/registry/deployments/d/w", dep, false).expect("a deployment");
    assert_eq!((v.replicas, v.max_surge, v.image.as_deref()), (4, 1, Some("x:1")));
    assert!(version_of(9, 1, "/registry/leases/d/l", b"{}", false).is_none());
}

#[test]
fn nodes_are_never_overcommitted() {
    let node = |revision, name: &str, cpu| Version { node: Some(name.into()), cpu_millis: cpu, ..at(ObjKind::Node, revision, 0, name) };
    let p = |revision, uid: &str, on: Option<&str>, cpu| Version {
        node: on.map(str::to_string),
        cpu_millis: cpu,
        ..at(ObjKind::Pod, revision, 0, uid)
    };
    let base =
        || vec![node(1, "n1", 1000), node(2, "n2", 1000), p(3, "a", None, 500), p(4, "a", Some("n1"), 500), p(5, "b", Some("n1"), 500)];
    let cases: Vec<(&str, Vec<Version>, usize)> = vec![
        ("a full node", base(), 0),
        ("one more", [base(), vec![p(6, "c", Some("n1"), 500)]].concat(), 1),
        ("one more elsewhere", [base(), vec![p(6, "c", Some("n2"), 500)]].concat(), 0),
        (
            "after a deletion",
            [base(), vec![Version { deleted: true, ..p(6, "a", Some("n1"), 500) }, p(7, "c", Some("n1"), 500)]].concat(),
            0,
        ),
        (
            "a terminating pod still holds its room",
            [base(), vec![Version { active: false, ..p(6, "a", Some("n1"), 500) }, p(7, "c", Some("n1"), 500)]].concat(),
            1,
        ),
        (
            "a finished pod does not",
            [base(), vec![Version { terminal: true, ..p(6, "a", Some("n1"), 500) }, p(7, "c", Some("n1"), 500)]].concat(),
            0,
        ),
        ("updates of a bound pod are not bindings", [base(), vec![p(6, "b", Some("n1"), 500)]].concat(), 0),
    ];
    for (name, history, violations) in cases {
        let got = no_overcommit(&history);
        assert_eq!(got.len(), violations, "{name}: {got:?}");
    }
    assert_eq!((cpu_millis("500m"), cpu_millis("2"), cpu_millis("1.5"), cpu_millis("x")), (500, 2000, 1500, 0));
}
