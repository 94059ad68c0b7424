//! DefaultTolerationSeconds admission (kube's `plugin/pkg/admission/defaulttolerationseconds`):
//! a pod created without a NoExecute toleration for `node.kubernetes.io/not-ready` or
//! `node.kubernetes.io/unreachable` gets one for 300 s (`--default-not-ready-toleration-seconds`,
//! `--default-unreachable-toleration-seconds`), so the node lifecycle controller evicts it five
//! minutes after its node goes away. A toleration with an empty key or an empty effect counts.

use k8s_openapi::api::core::v1::{Pod, Toleration};

/// The not-ready taint.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The unreachable taint.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// kube's flag defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TolerationSeconds {
    /// `--default-not-ready-toleration-seconds`.
    pub not_ready: i64,
    /// `--default-unreachable-toleration-seconds`.
    pub unreachable: i64,
}

impl Default for TolerationSeconds {
    fn default() -> TolerationSeconds {
        TolerationSeconds { not_ready: 300, unreachable: 300 }
    }
}

fn tolerates(tolerations: &[Toleration], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let k = t.key.as_deref().unwrap_or("");
        let e = t.effect.as_deref().unwrap_or("");
        (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
    })
}

/// Adds the missing default tolerations to a pod being created.
pub fn admit_pod_create(pod: &mut Pod, seconds: TolerationSeconds) {
    let Some(spec) = pod.spec.as_mut() else { return };
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, secs) in [(NOT_READY, seconds.not_ready), (UNREACHABLE, seconds.unreachable)] {
        if !tolerates(list, key) {
            list.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(secs),
                value: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
    }

    fn keys(p: &Pod) -> Vec<(String, Option<i64>)> {
        p.spec.as_ref().unwrap().tolerations.iter().flatten().map(|t| (t.key.clone().unwrap_or_default(), t.toleration_seconds)).collect()
    }

    #[test]
    fn missing_tolerations_are_added_for_300_seconds() {
        // Cases after kube's admission_test.go.
        let mut p = pod(json!([]));
        admit_pod_create(&mut p, TolerationSeconds::default());
        assert_eq!(keys(&p), [(NOT_READY.into(), Some(300)), (UNREACHABLE.into(), Some(300))]);
        let mut p = pod(json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]));
        admit_pod_create(&mut p, TolerationSeconds::default());
        assert_eq!(keys(&p), [(NOT_READY.into(), Some(60)), (UNREACHABLE.into(), Some(300))]);
        // A NoSchedule toleration does not count; an empty effect does.
        let mut p =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, {"key": NOT_READY, "operator": "Exists"}]));
        admit_pod_create(&mut p, TolerationSeconds::default());
        assert_eq!(keys(&p).len(), 3);
        // Tolerating everything (empty key, Exists) covers both.
        let mut p = pod(json!([{"operator": "Exists"}]));
        admit_pod_create(&mut p, TolerationSeconds { not_ready: 1, unreachable: 2 });
        assert_eq!(keys(&p).len(), 1);
    }
}
