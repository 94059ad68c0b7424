//! Table tests of the ResourceQuota controller's pure parts (cases after kube's
//! `resource_quota_controller_test.go` `TestSyncResourceQuota`).

use super::*;
use serde_json::json;

fn quota(hard: serde_json::Value, status: Option<serde_json::Value>) -> ResourceQuota {
    let mut v = json!({"metadata": {"name": "q", "namespace": "dev", "resourceVersion": "5"}, "spec": {"hard": hard}});
    if let Some(s) = status {
        v["status"] = s;
    }
    serde_json::from_value(v).expect("a quota")
}

fn pod(name: &str, phase: &str, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "dev"},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": phase}
    }))
    .expect("a pod")
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The list with every quantity in one canonical spelling (by value: `2Gi` = `2147483648`).
fn strings(
    m: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Vec<(String, String)> {
    m.iter().flatten().map(|(k, v)| (k.clone(), canonical(&v.0))).collect()
}

fn canonical(q: &str) -> String {
    Quantity::parse(q).map(|q| q.milli_value().to_string()).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn want(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), canonical(v))).collect()
}

#[test]
fn object_counts_are_named_as_kube_names_them() {
    let cases = [
        ("count/pods", Some(("", "pods"))),
        ("count/configmaps", Some(("", "configmaps"))),
        ("count/deployments.apps", Some(("apps", "deployments"))),
        ("count/widgets.example.com", Some(("example.com", "widgets"))),
        ("configmaps", Some(("", "configmaps"))),
        ("services", Some(("", "services"))),
        ("pods", None),
        ("cpu", None),
        ("requests.memory", None),
    ];
    for (name, want) in cases {
        assert_eq!(counted(name), want.map(|(g, r)| (g.to_string(), r.to_string())), "{name}");
    }
}

#[test]
fn status_is_hard_from_the_spec_and_used_recounted() {
    let running = [pod("a", "Running", "100m", "1Gi"), pod("b", "Pending", "200m", "1Gi")];
    let with_done = [running.to_vec(), vec![pod("c", "Succeeded", "1", "4Gi"), pod("d", "Failed", "1", "4Gi")]].concat();
    let hard = json!({"pods": "10", "requests.cpu": "2", "limits.memory": "8Gi", "count/configmaps": "5", "configmaps": "5"});
    let mut counts = ResourceList::new();
    counts.insert("count/configmaps".into(), Quantity::from_units(3));
    counts.insert("configmaps".into(), Quantity::from_units(3));
    let want_used =
        want(&[("configmaps", "3"), ("count/configmaps", "3"), ("limits.memory", "2Gi"), ("pods", "2"), ("requests.cpu", "300m")]);
    let want_hard =
        want(&[("configmaps", "5"), ("count/configmaps", "5"), ("limits.memory", "8Gi"), ("pods", "10"), ("requests.cpu", "2")]);

    // A new quota: hard copied, used counted; terminal pods use nothing.
    let fresh = quota(hard.clone(), None);
    let st = next_status(&fresh, &with_done, &counts, now()).ok().flatten().expect("a first status");
    assert_eq!(strings(&st.hard), want_hard);
    assert_eq!(strings(&st.used), want_used);

    // Drift (an admission charge for a pod that later failed): corrected.
    let drifted = quota(
        hard.clone(),
        Some(
            json!({"hard": hard.clone(), "used": {"pods": "3", "requests.cpu": "1300m", "limits.memory": "6Gi", "count/configmaps": "3", "configmaps": "3"}}),
        ),
    );
    let st = next_status(&drifted, &with_done, &counts, now()).ok().flatten().expect("corrected");
    assert_eq!(strings(&st.used), want_used);

    // Right already (quantities compared by value, not spelling): nothing written.
    let right = quota(
        hard.clone(),
        Some(
            json!({"hard": hard.clone(), "used": {"pods": "2", "requests.cpu": "0.3", "limits.memory": "2048Mi", "count/configmaps": "3", "configmaps": "3"}}),
        ),
    );
    assert!(matches!(next_status(&right, &running, &counts, now()), Ok(None)));

    // The spec changed: hard follows it, used gains the new key (zero) and drops the old.
    let changed = quota(json!({"pods": "4", "requests.memory": "1Gi"}), Some(json!({"hard": hard.clone(), "used": {"pods": "2"}})));
    let st = next_status(&changed, &running, &ResourceList::new(), now()).ok().flatten().expect("follows the spec");
    assert_eq!(strings(&st.hard), want(&[("pods", "4"), ("requests.memory", "1Gi")]));
    assert_eq!(strings(&st.used), want(&[("pods", "2"), ("requests.memory", "2Gi")]));

    // A pod past its deletion grace period uses no compute, only its count.
    let mut leaving = pod("e", "Running", "1", "1Gi");
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(1_799_999_000).unwrap_or(Timestamp::UNIX_EPOCH)));
    leaving.metadata.deletion_grace_period_seconds = Some(30);
    let q = quota(json!({"requests.cpu": "4", "count/pods": "10"}), None);
    let st = next_status(&q, &[leaving], &ResourceList::new(), now()).ok().flatten().expect("a status");
    assert_eq!(strings(&st.used), want(&[("count/pods", "1"), ("requests.cpu", "0")]));

    // A quota with an unparsable quantity is invalid, not a panic.
    let bad = quota(json!({"cpu": "lots"}), None);
    assert!(matches!(next_status(&bad, &running, &ResourceList::new(), now()), Err(Error::Invalid { .. })));
}

#[test]
fn a_quota_needs_a_count_when_its_status_lags_its_spec() {
    let hard = json!({"pods": "10", "cpu": "2"});
    let cases = [
        ("no status", quota(hard.clone(), None), true),
        (
            "status hard differs",
            quota(hard.clone(), Some(json!({"hard": {"pods": "5", "cpu": "2"}, "used": {"pods": "1", "cpu": "0"}}))),
            true,
        ),
        ("used lacks cpu", quota(hard.clone(), Some(json!({"hard": hard.clone(), "used": {"pods": "1"}}))), true),
        ("settled", quota(hard.clone(), Some(json!({"hard": hard.clone(), "used": {"pods": "1", "cpu": "0"}}))), false),
        (
            "same hard spelled differently",
            quota(hard.clone(), Some(json!({"hard": {"pods": "10", "cpu": "2000m"}, "used": {"pods": "1", "cpu": "0"}}))),
            false,
        ),
    ];
    for (name, q, want) in cases {
        assert_eq!(needs_count(&q), want, "{name}");
    }
}
