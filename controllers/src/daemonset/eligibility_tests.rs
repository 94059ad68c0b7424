//! Cases after kubernetes/pkg/controller/daemon/daemon_controller_test.go
//! (TestNodeShouldRunDaemonPod, TestTaintPressureNodeDaemonLaunchesPod, the selector/affinity
//! tests) and util/daemonset_util_test.go (TestReplaceDaemonSetPodNodeNameNodeAffinity).

use super::*;
use k8s_openapi::api::apps::v1::DaemonSetSpec;
use k8s_openapi::api::core::v1::{NodeSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints.iter().map(|(k, e)| Taint { key: k.to_string(), effect: e.to_string(), ..Default::default() }).collect()),
            ..Default::default()
        }),
        status: None,
    }
}

fn ds(spec: PodSpec) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta { name: Some("ds".into()), namespace: Some("default".into()), ..Default::default() },
        spec: Some(DaemonSetSpec { template: PodTemplateSpec { metadata: None, spec: Some(spec) }, ..Default::default() }),
        status: None,
    }
}

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement { key: key.into(), operator: op.into(), values: Some(values.iter().map(|s| s.to_string()).collect()) }
}

fn affinity(terms: Vec<NodeSelectorTerm>) -> Option<Affinity> {
    Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector { node_selector_terms: terms }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[test]
fn eligibility_follows_node_name_selector_affinity_and_taints() {
    let plain = PodSpec::default();
    let rows: Vec<(&str, PodSpec, Node, (bool, bool))> = vec![
        ("any node", plain.clone(), node("n", &[], &[]), (true, true)),
        ("other nodeName", PodSpec { node_name: Some("x".into()), ..Default::default() }, node("n", &[], &[]), (false, false)),
        ("own nodeName", PodSpec { node_name: Some("n".into()), ..Default::default() }, node("n", &[], &[]), (true, true)),
        (
            "nodeSelector matches",
            PodSpec { node_selector: Some([("disk".to_string(), "ssd".to_string())].into()), ..Default::default() },
            node("n", &[("disk", "ssd")], &[]),
            (true, true),
        ),
        (
            "nodeSelector does not",
            PodSpec { node_selector: Some([("disk".to_string(), "ssd".to_string())].into()), ..Default::default() },
            node("n", &[], &[]),
            (false, false),
        ),
        (
            "affinity In",
            PodSpec {
                affinity: affinity(vec![NodeSelectorTerm {
                    match_expressions: Some(vec![req("zone", "In", &["a", "b"])]),
                    match_fields: None,
                }]),
                ..Default::default()
            },
            node("n", &[("zone", "b")], &[]),
            (true, true),
        ),
        (
            "affinity terms are ORed",
            PodSpec {
                affinity: affinity(vec![
                    NodeSelectorTerm { match_expressions: Some(vec![req("zone", "In", &["a"])]), match_fields: None },
                    NodeSelectorTerm { match_expressions: None, match_fields: Some(vec![req("metadata.name", "In", &["n"])]) },
                ]),
                ..Default::default()
            },
            node("n", &[("zone", "c")], &[]),
            (true, true),
        ),
        (
            "affinity Gt",
            PodSpec {
                affinity: affinity(vec![NodeSelectorTerm {
                    match_expressions: Some(vec![req("cores", "Gt", &["4"])]),
                    match_fields: None,
                }]),
                ..Default::default()
            },
            node("n", &[("cores", "2")], &[]),
            (false, false),
        ),
        ("NoSchedule taint: not placed, kept", plain.clone(), node("n", &[], &[("dedicated", NO_SCHEDULE)]), (false, true)),
        ("NoExecute taint: not placed, not kept", plain.clone(), node("n", &[], &[("dedicated", NO_EXECUTE)]), (false, false)),
        (
            "not-ready and unreachable are tolerated",
            plain.clone(),
            node("n", &[], &[(NOT_READY, NO_EXECUTE), (UNREACHABLE, NO_SCHEDULE)]),
            (false, true),
        ),
        (
            "pressure and cordon are tolerated",
            plain.clone(),
            node("n", &[], &[(MEMORY_PRESSURE, NO_SCHEDULE), (DISK_PRESSURE, NO_SCHEDULE), (UNSCHEDULABLE, NO_SCHEDULE)]),
            (true, true),
        ),
        ("network-unavailable only for hostNetwork", plain.clone(), node("n", &[], &[(NETWORK_UNAVAILABLE, NO_SCHEDULE)]), (false, true)),
        (
            "hostNetwork tolerates network-unavailable",
            PodSpec { host_network: Some(true), ..Default::default() },
            node("n", &[], &[(NETWORK_UNAVAILABLE, NO_SCHEDULE)]),
            (true, true),
        ),
    ];
    for (what, spec, n, want) in rows {
        assert_eq!(should_run(&n, &ds(spec)), want, "{what}");
    }
}

#[test]
fn daemon_pods_are_pinned_labelled_and_found_by_node() {
    let mut d = ds(PodSpec {
        affinity: affinity(vec![NodeSelectorTerm { match_expressions: Some(vec![req("zone", "In", &["a"])]), match_fields: None }]),
        ..Default::default()
    });
    d.metadata.annotations = Some([(TEMPLATE_GENERATION_ANNOTATION.to_string(), "3".to_string())].into());
    let t = pod_template(&d, "abc", "node-7");
    let labels = t.metadata.clone().unwrap_or_default().labels.unwrap_or_default();
    assert_eq!(
        (labels.get(REVISION_HASH).map(String::as_str), labels.get(TEMPLATE_GENERATION).map(String::as_str)),
        (Some("abc"), Some("3"))
    );
    let pod = Pod { metadata: t.metadata.clone().unwrap_or_default(), spec: t.spec.clone(), status: None };
    assert_eq!(target_node(&pod).as_deref(), Some("node-7"));
    let terms = t
        .spec
        .and_then(|s| s.affinity)
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default();
    assert_eq!(terms.len(), 1, "the required terms become the one name term");
    assert!(is_updated(&pod, "abc", None));
    assert!(is_updated(&pod, "other", Some(3)), "the template generation also marks it updated");
    assert!(!is_updated(&pod, "other", Some(4)));
    let tols = daemon_spec(&d).tolerations.unwrap_or_default();
    assert_eq!(tols.len(), 6);
}
