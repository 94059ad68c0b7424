//! Cases after kubernetes/pkg/controller/daemon/daemon_controller_test.go and update_test.go.

use super::*;
use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn nodes(n: usize) -> Vec<Node> {
    (1..=n)
        .map(|i| Node {
            metadata: ObjectMeta { name: Some(format!("n{i}")), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: None,
        })
        .collect()
}

fn ds(surge: i32, unavailable: i32) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta { name: Some("ds".into()), namespace: Some("default".into()), ..Default::default() },
        spec: Some(DaemonSetSpec {
            template: PodTemplateSpec { metadata: None, spec: Some(PodSpec::default()) },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_surge: Some(IntOrString::Int(surge)),
                    max_unavailable: Some(IntOrString::Int(unavailable)),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A running pod on `node` with revision `hash`, ready (and available) when `ready`.
fn pod(name: &str, node: &str, hash: &str, ready: bool, created: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([(eligibility::REVISION_HASH.to_string(), hash.to_string())].into()),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: Some(PodSpec { node_name: Some(node.into()), ..Default::default() }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: ready.then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(ts(0))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn group(pods: &[Pod]) -> ByNode<'_> {
    let mut m: ByNode<'_> = BTreeMap::new();
    for p in pods {
        m.entry(pod::node_name(p).to_string()).or_default().push(p);
    }
    m
}

fn names(keys: &[ObjectKey]) -> Vec<String> {
    keys.iter().map(|k| k.name.clone()).collect()
}

#[test]
fn a_pod_per_node_duplicates_removed_oldest_kept() {
    let ns = nodes(3);
    let refs: Vec<&Node> = ns.iter().collect();
    let d = ds(0, 1);
    let m = manage(&d, &refs, &BTreeMap::new(), "h", ts(100), &BTreeSet::new());
    assert_eq!(m.create_on, ["n1", "n2", "n3"], "TestSimpleDaemonSetLaunchesPods");
    let pods = [pod("a", "n1", "h", true, 5), pod("b", "n1", "h", true, 1), pod("c", "n2", "h", true, 1)];
    let m = manage(&d, &refs, &group(&pods), "h", ts(100), &BTreeSet::new());
    assert_eq!(
        (m.create_on, names(&m.delete)),
        (vec!["n3".to_string()], vec!["a".to_string()]),
        "TestDealsWithExistingPods: the newer duplicate goes"
    );
}

#[test]
fn failed_pods_are_replaced_unless_backing_off_and_misplaced_pods_go() {
    let mut ns = nodes(2);
    let refs_all: Vec<&Node> = ns.iter().collect();
    let mut failed = pod("f", "n1", "h", false, 1);
    if let Some(s) = failed.status.as_mut() {
        s.phase = Some("Failed".into());
    }
    let pods = [failed];
    let m = manage(&ds(0, 1), &refs_all, &group(&pods), "h", ts(100), &BTreeSet::new());
    assert_eq!((names(&m.delete), m.failed_on.clone()), (vec!["f".to_string()], vec!["n1".to_string()]));
    let m = manage(&ds(0, 1), &refs_all, &group(&pods), "h", ts(100), &BTreeSet::from(["n1".to_string()]));
    assert!(m.delete.is_empty() && m.backing_off == ["n1"]);
    // n2 gets a NoExecute taint the daemon does not tolerate: its pod goes.
    ns[1].spec = Some(NodeSpec {
        taints: Some(vec![Taint { key: "k".into(), effect: "NoExecute".into(), ..Default::default() }]),
        ..Default::default()
    });
    let refs: Vec<&Node> = ns.iter().collect();
    let pods = [pod("p", "n2", "h", true, 1)];
    let m = manage(&ds(0, 1), &refs, &group(&pods), "h", ts(100), &BTreeSet::new());
    assert_eq!(names(&m.delete), ["p"]);
    assert_eq!(m.create_on, ["n1"]);
}

#[test]
fn rolling_update_without_surge_stays_within_max_unavailable() {
    let ns = nodes(5);
    let refs: Vec<&Node> = ns.iter().collect();
    let old: Vec<Pod> = (1..=5).map(|i| pod(&format!("old{i}"), &format!("n{i}"), "v1", true, 1)).collect();
    // TestDaemonSetUpdatesPods: maxUnavailable 1 → one old pod at a time.
    let (del, create) = rolling_update(&ds(0, 1), &refs, &group(&old), "v2", ts(100));
    assert_eq!((del.len(), create.len()), (1, 0));
    let (del, _) = rolling_update(&ds(0, 2), &refs, &group(&old), "v2", ts(100));
    assert_eq!(del.len(), 2);
    // One node already has a new pod that is not ready yet: it uses the budget.
    let mut mixed = old[1..].to_vec();
    mixed.push(pod("new1", "n1", "v2", false, 50));
    let (del, _) = rolling_update(&ds(0, 1), &refs, &group(&mixed), "v2", ts(100));
    assert!(del.is_empty(), "budget spent on the unready new pod");
    // An unavailable old pod is replaced regardless of the budget.
    let mut sick = old.clone();
    sick[4] = pod("old5", "n5", "v1", false, 1);
    let (del, _) = rolling_update(&ds(0, 1), &refs, &group(&sick), "v2", ts(100));
    assert!(names(&del).contains(&"old5".to_string()));
}

#[test]
fn rolling_update_with_surge_adds_before_it_removes() {
    let ns = nodes(3);
    let refs: Vec<&Node> = ns.iter().collect();
    let old: Vec<Pod> = (1..=3).map(|i| pod(&format!("old{i}"), &format!("n{i}"), "v1", true, 1)).collect();
    // TestDaemonSetUpdatesPodsWithMaxSurge: surge 1 → one new pod beside an old one.
    let (del, create) = rolling_update(&ds(1, 0), &refs, &group(&old), "v2", ts(100));
    assert_eq!((del.len(), create.len()), (0, 1));
    let mut surged = old.clone();
    surged.push(pod("new1", "n1", "v2", false, 50));
    let (del, create) = rolling_update(&ds(1, 0), &refs, &group(&surged), "v2", ts(100));
    assert!(del.is_empty() && create.is_empty(), "waiting for the new pod");
    surged[3] = pod("new1", "n1", "v2", true, 50);
    let (del, create) = rolling_update(&ds(1, 0), &refs, &group(&surged), "v2", ts(100));
    assert_eq!(names(&del), ["old1"]);
    assert_eq!(create.len(), 1, "an available replacement frees its surge slot for the next node");
}

#[test]
fn status_counts_desired_current_ready_updated_and_misscheduled() {
    let mut ns = nodes(3);
    ns[2].spec = Some(NodeSpec {
        taints: Some(vec![Taint { key: "k".into(), effect: "NoExecute".into(), ..Default::default() }]),
        ..Default::default()
    });
    let refs: Vec<&Node> = ns.iter().collect();
    let pods = [pod("a", "n1", "v2", true, 1), pod("b", "n2", "v1", false, 1), pod("c", "n3", "v2", true, 1)];
    let s = status(&ds(0, 1), &refs, &group(&pods), "v2", ts(100));
    assert_eq!((s.desired_number_scheduled, s.current_number_scheduled, s.number_ready, s.number_misscheduled), (2, 2, 1, 1));
    assert_eq!((s.updated_number_scheduled, s.number_available, s.number_unavailable), (Some(1), Some(1), Some(1)));
}
