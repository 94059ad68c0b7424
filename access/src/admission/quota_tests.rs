//! Cases after kube's resourcequota `admission_test.go` and the pod evaluator tests.

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

fn quota(name: &str, hard: Value, used: Value, spec_extra: Value) -> ResourceQuota {
    let mut spec = json!({"hard": hard});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "dev", "resourceVersion": "7"}, "spec": spec,
        "status": {"hard": hard, "used": used}}))
    .unwrap()
}

fn pod(name: &str, requests: Value, limits: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "dev"},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": requests, "limits": limits}}]}}))
    .unwrap()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

fn now() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

fn admit(quotas: &[ResourceQuota], p: &Pod) -> Result<Vec<Charge>, Error> {
    check(quotas, Subject::Pod(p), &pod_usage(p, now()).unwrap(), None, ("", "pods"), &p.metadata)
}

#[test]
fn pod_usage_counts_what_kube_counts() {
    let p = pod("p", json!({"cpu": "100m", "memory": "1Gi", "example.com/gpu": "1"}), json!({"cpu": "200m"}));
    let u = pod_usage(&p, now()).unwrap();
    let got: Vec<String> = u.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        got,
        [
            "count/pods=1",
            "cpu=100m",
            "limits.cpu=200m",
            "memory=1Gi",
            "pods=1",
            "requests.cpu=100m",
            "requests.example.com/gpu=1",
            "requests.memory=1Gi"
        ]
    );
    let mut done = p.clone();
    done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    assert_eq!(pod_usage(&done, now()).unwrap().keys().collect::<Vec<_>>(), ["count/pods"]);
    assert_eq!(object_count_usage("", "configmaps").keys().collect::<Vec<_>>(), ["configmaps", "count/configmaps"]);
    assert_eq!(object_count_usage("apps", "deployments").keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
}

#[test]
fn the_last_unit_of_quota_is_charged_once() {
    // Five pods fit in pods: 5; each admission charges one, the sixth is refused.
    let mut q = quota("compute", json!({"pods": "5"}), json!({"pods": "0"}), json!({}));
    for i in 0..5 {
        let charges = admit(std::slice::from_ref(&q), &pod(&format!("p{i}"), json!({}), json!({}))).unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!(charges[0].resource_version, "7");
        q.status.as_mut().unwrap().used = Some(crate::admission::resources::to_kube(&charges[0].used));
    }
    let err = admit(&[q], &pod("p5", json!({}), json!({}))).unwrap_err();
    assert_eq!(err.code(), 403);
    assert_eq!(err.to_string(), r#"pods "p5" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=5, limited: pods=5"#);
}

#[test]
fn compute_quotas_need_requests_and_report_what_is_exceeded() {
    let q = quota(
        "mem",
        json!({"requests.memory": "1Gi", "limits.cpu": "1"}),
        json!({"requests.memory": "768Mi", "limits.cpu": "0"}),
        json!({}),
    );
    let err = admit(std::slice::from_ref(&q), &pod("p", json!({}), json!({}))).unwrap_err();
    assert_eq!(err.to_string(), r#"pods "p" is forbidden: failed quota: mem: must specify limits.cpu for: c; requests.memory for: c"#);
    let err = admit(std::slice::from_ref(&q), &pod("p", json!({"memory": "512Mi"}), json!({"cpu": "500m"}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"pods "p" is forbidden: exceeded quota: mem, requested: requests.memory=512Mi, used: requests.memory=768Mi, limited: requests.memory=1Gi"#
    );
    let ok = admit(&[q], &pod("p", json!({"memory": "256Mi"}), json!({"cpu": "500m"}))).unwrap();
    assert_eq!(ok[0].used["requests.memory"].to_string(), "1Gi");
    assert_eq!(ok[0].used["limits.cpu"].to_string(), "500m");
}

#[test]
fn quotas_without_computed_usage_refuse() {
    let q = quota("fresh", json!({"pods": "5", "count/configmaps": "2"}), json!({}), json!({}));
    let err = admit(&[q], &pod("p", json!({}), json!({}))).unwrap_err();
    assert_eq!(err.to_string(), r#"pods "p" is forbidden: status unknown for quota: fresh, resources: pods"#);
}

#[test]
fn object_counts_and_unrelated_quotas() {
    let q = quota("objects", json!({"configmaps": "1"}), json!({"configmaps": "1"}), json!({}));
    let usage = object_count_usage("", "configmaps");
    let err = check(std::slice::from_ref(&q), Subject::Other, &usage, None, ("", "configmaps"), &meta("cm")).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"configmaps "cm" is forbidden: exceeded quota: objects, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"#
    );
    // A quota on configmaps does not concern pods or secrets.
    assert!(admit(std::slice::from_ref(&q), &pod("p", json!({}), json!({}))).unwrap().is_empty());
    assert!(check(&[q], Subject::Other, &object_count_usage("", "secrets"), None, ("", "secrets"), &meta("s")).unwrap().is_empty());
}

#[test]
fn updates_charge_only_growth() {
    let q = quota("cpu", json!({"requests.cpu": "1"}), json!({"requests.cpu": "900m"}), json!({}));
    let old = pod_usage(&pod("p", json!({"cpu": "500m"}), json!({})), now()).unwrap();
    let same = pod("p", json!({"cpu": "500m"}), json!({}));
    let usage = pod_usage(&same, now()).unwrap();
    assert!(check(std::slice::from_ref(&q), Subject::Pod(&same), &usage, Some(&old), ("", "pods"), &same.metadata).unwrap().is_empty());
    let bigger = pod("p", json!({"cpu": "700m"}), json!({}));
    let usage = pod_usage(&bigger, now()).unwrap();
    let err = check(&[q], Subject::Pod(&bigger), &usage, Some(&old), ("", "pods"), &bigger.metadata).unwrap_err();
    assert!(err.to_string().contains("requested: requests.cpu=200m, used: requests.cpu=900m"), "{err}");
}

#[test]
fn scopes_select_pods() {
    let be = quota("best-effort", json!({"pods": "0"}), json!({"pods": "0"}), json!({"scopes": ["BestEffort"]}));
    assert!(admit(std::slice::from_ref(&be), &pod("p", json!({}), json!({}))).is_err());
    assert!(admit(std::slice::from_ref(&be), &pod("p", json!({"cpu": "1"}), json!({}))).unwrap().is_empty());
    let prio = quota(
        "prio",
        json!({"pods": "0"}),
        json!({"pods": "0"}),
        json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
    );
    let mut high = pod("p", json!({}), json!({}));
    high.spec.as_mut().unwrap().priority_class_name = Some("high".into());
    assert!(admit(std::slice::from_ref(&prio), &high).is_err());
    assert!(admit(&[prio], &pod("p", json!({}), json!({}))).unwrap().is_empty());
}

#[test]
fn used_is_recomputed_from_what_exists() {
    let q = quota("all", json!({"pods": "10", "requests.cpu": "4", "count/configmaps": "5"}), json!({}), json!({}));
    let pods = [pod("a", json!({"cpu": "1"}), json!({})), pod("b", json!({"cpu": "500m"}), json!({}))];
    let counts: ResourceList = [("count/configmaps".to_string(), Quantity::from_units(3))].into();
    let used = recompute_used(&q, &pods, &counts, now()).unwrap();
    let got: Vec<String> = used.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(got, ["count/configmaps=3", "pods=2", "requests.cpu=1500m"]);
}

#[test]
fn a_removed_object_gives_back_what_it_used_and_never_below_zero() {
    let compute = quota("compute", json!({"pods": "5", "requests.cpu": "1"}), json!({"pods": "2", "requests.cpu": "300m"}), json!({}));
    let counts = quota("counts", json!({"configmaps": "3"}), json!({"configmaps": "1"}), json!({}));
    let best_effort = quota("be", json!({"pods": "9"}), json!({"pods": "1"}), json!({"scopes": ["BestEffort"]}));
    let quotas = [compute, counts, best_effort];
    let p = pod("p", json!({"cpu": "500m"}), json!({}));
    let freed = pod_usage(&p, now()).unwrap();
    let got: Vec<(String, String)> = release(&quotas, Subject::Pod(&p), &freed)
        .unwrap()
        .iter()
        .map(|c| (c.name.clone(), c.used.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")))
        .collect();
    // compute: pods 2-1, requests.cpu 300m-500m floored at 0; counts and the BestEffort quota
    // do not apply to this pod.
    assert_eq!(got, [("compute".to_string(), "pods=1,requests.cpu=0".to_string())]);
    let cm = object_count_usage("", "configmaps");
    let got = release(&quotas, Subject::Other, &cm).unwrap();
    assert_eq!(got.iter().map(|c| (c.name.as_str(), c.used["configmaps"].to_string())).collect::<Vec<_>>(), [("counts", "0".to_string())]);
    assert!(release(&quotas, Subject::Other, &object_count_usage("", "secrets")).unwrap().is_empty(), "nothing limited");
}
