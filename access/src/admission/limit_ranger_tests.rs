//! Cases after kube's limitranger `admission_test.go` (TestPodLimitFunc,
//! TestDefaultContainerResourceRequirements, TestMergePodResourceRequirements).

use super::*;
use serde_json::{Value, json};

fn lr(items: Value) -> LimitRange {
    serde_json::from_value(json!({"metadata": {"name": "lr", "namespace": "dev"}, "spec": {"limits": items}})).unwrap()
}

fn container(name: &str, requests: Value, limits: Value) -> Value {
    json!({"name": name, "image": "i", "resources": {"requests": requests, "limits": limits}})
}

fn pod(containers: Vec<Value>, init: Vec<Value>) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "dev"}, "spec": {"containers": containers, "initContainers": init}}),
    )
    .unwrap()
}

fn item(kind: &str, min: Value, max: Value, ratio: Value) -> Value {
    json!({"type": kind, "min": min, "max": max, "maxLimitRequestRatio": ratio})
}

#[test]
fn valid_pods_pass() {
    let cases = [
        (
            item("Container", json!({"cpu": "100m", "memory": "10Mi"}), json!({"cpu": "1", "memory": "1Gi"}), json!({})),
            pod(vec![container("a", json!({"cpu": "100m", "memory": "10Mi"}), json!({"cpu": "1", "memory": "1Gi"}))], vec![]),
        ),
        (
            item("Pod", json!({"cpu": "200m"}), json!({"cpu": "2"}), json!({})),
            pod(
                vec![
                    container("a", json!({"cpu": "100m"}), json!({"cpu": "1"})),
                    container("b", json!({"cpu": "100m"}), json!({"cpu": "1"})),
                ],
                vec![container("i", json!({"cpu": "200m"}), json!({"cpu": "2"}))],
            ),
        ),
        (
            item("Container", json!({}), json!({}), json!({"cpu": "10"})),
            pod(vec![container("a", json!({"cpu": "100m"}), json!({"cpu": "1"}))], vec![]),
        ),
    ];
    for (i, p) in cases {
        assert_eq!(validate_pod(&lr(json!([i])), &p).unwrap(), None);
    }
}

#[test]
fn violations_are_kubes_messages() {
    let cases = [
        (
            item("Container", json!({"cpu": "100m"}), json!({}), json!({})),
            pod(vec![container("a", json!({}), json!({}))], vec![]),
            "minimum cpu usage per Container is 100m.  No request is specified",
        ),
        (
            item("Container", json!({"cpu": "100m"}), json!({}), json!({})),
            pod(vec![container("a", json!({"cpu": "50m"}), json!({}))], vec![]),
            "minimum cpu usage per Container is 100m, but request is 50m",
        ),
        (
            item("Container", json!({"memory": "100Mi"}), json!({}), json!({})),
            pod(vec![container("a", json!({"memory": "200Mi"}), json!({"memory": "50Mi"}))], vec![]),
            "minimum memory usage per Container is 100Mi, but limit is 50Mi",
        ),
        (
            item("Container", json!({}), json!({"cpu": "1"}), json!({})),
            pod(vec![container("a", json!({"cpu": "1"}), json!({}))], vec![]),
            "maximum cpu usage per Container is 1.  No limit is specified",
        ),
        (
            item("Container", json!({}), json!({"cpu": "1"}), json!({})),
            pod(vec![container("a", json!({"cpu": "500m"}), json!({"cpu": "1500m"}))], vec![]),
            "maximum cpu usage per Container is 1, but limit is 1500m",
        ),
        (
            item("Container", json!({}), json!({"memory": "1Gi"}), json!({})),
            pod(vec![], vec![container("init", json!({}), json!({"memory": "2Gi"}))]),
            "maximum memory usage per Container is 1Gi, but limit is 2Gi",
        ),
        (
            item("Container", json!({}), json!({}), json!({"cpu": "2"})),
            pod(vec![container("a", json!({"cpu": "250m"}), json!({"cpu": "1"}))], vec![]),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
        ),
        (
            item("Container", json!({}), json!({}), json!({"cpu": "2"})),
            pod(vec![container("a", json!({}), json!({"cpu": "1"}))], vec![]),
            "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
        ),
        (
            item("Pod", json!({}), json!({"cpu": "1"}), json!({})),
            pod(
                vec![
                    container("a", json!({"cpu": "600m"}), json!({"cpu": "600m"})),
                    container("b", json!({"cpu": "600m"}), json!({"cpu": "600m"})),
                ],
                vec![],
            ),
            "maximum cpu usage per Pod is 1, but limit is 1200m",
        ),
        (
            item("Pod", json!({"memory": "100Mi"}), json!({}), json!({})),
            pod(vec![container("a", json!({"memory": "10Mi"}), json!({}))], vec![container("i", json!({"memory": "50Mi"}), json!({}))]),
            "minimum memory usage per Pod is 100Mi, but request is 50Mi",
        ),
        (
            item("Container", json!({"cpu": "100m"}), json!({"cpu": "1"}), json!({})),
            pod(vec![container("a", json!({}), json!({}))], vec![]),
            "[minimum cpu usage per Container is 100m.  No request is specified, maximum cpu usage per Container is 1.  No limit is specified]",
        ),
    ];
    for (i, p, want) in cases {
        assert_eq!(validate_pod(&lr(json!([i])), &p).unwrap().as_deref(), Some(want));
    }
}

#[test]
fn defaults_fill_what_is_missing_and_are_recorded() {
    let range = lr(
        json!([{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]),
    );
    let mut p =
        pod(vec![container("nginx", json!({"cpu": "200m"}), json!({}))], vec![container("setup", json!({}), json!({"memory": "64Mi"}))]);
    admit_pod_create(&[range], &mut p).unwrap();
    let spec = p.spec.as_ref().unwrap();
    let res = spec.containers[0].resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "200m");
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "128Mi");
    assert_eq!(res.limits.as_ref().unwrap()["cpu"].0, "500m");
    let init = spec.init_containers.as_ref().unwrap()[0].resources.as_ref().unwrap();
    assert_eq!(init.limits.as_ref().unwrap()["memory"].0, "64Mi");
    assert_eq!(
        p.metadata.annotations.as_ref().unwrap()[ANNOTATION],
        "LimitRanger plugin set: memory request for container nginx; cpu, memory limit for container nginx; cpu, memory request for init container setup; cpu limit for init container setup"
    );
}

#[test]
fn a_pod_over_the_max_is_403() {
    let range = lr(json!([{"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "1"}}]));
    let mut p = pod(vec![container("a", json!({}), json!({"cpu": "2"}))], vec![]);
    let err = admit_pod_create(&[range], &mut p).unwrap_err();
    assert_eq!(err.code(), 403);
    assert_eq!(err.to_string(), r#"pods "web" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#);
    let mut unnamed = pod(vec![container("a", json!({}), json!({"cpu": "2"}))], vec![]);
    unnamed.metadata.name = None;
    unnamed.metadata.generate_name = Some("web-".into());
    let range = lr(json!([{"type": "Container", "max": {"cpu": "1"}}]));
    assert!(admit_pod_create(&[range], &mut unnamed).unwrap_err().to_string().starts_with(r#"pods "web-" is forbidden"#));
}

#[test]
fn limit_range_defaulting_as_kube() {
    let mut range =
        lr(json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"}}, {"type": "Pod", "max": {"cpu": "4"}}]));
    default_limit_range(&mut range);
    let items = &range.spec.as_ref().unwrap().limits;
    assert_eq!(items[0].default.as_ref().unwrap()["cpu"].0, "2");
    assert_eq!(items[0].default_request.as_ref().unwrap()["cpu"].0, "2");
    assert_eq!(items[0].default_request.as_ref().unwrap()["memory"].0, "10Mi");
    assert!(items[1].default.is_none());
}

#[test]
fn claims_are_checked_on_storage() {
    let range = lr(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]));
    let pvc: PersistentVolumeClaim =
        serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "20Gi"}}}})).unwrap();
    assert_eq!(
        admit_pvc(&[range], &pvc).unwrap_err().to_string(),
        r#"persistentvolumeclaims "data" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"#
    );
}
