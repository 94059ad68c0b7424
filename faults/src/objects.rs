//! Reading the few fields the checkers need out of stored Kubernetes objects (JSON as the
//! apiserver writes it), with Kubernetes' defaults where a field may be absent and Kubernetes'
//! arithmetic where a value is derived (maxSurge from an int-or-percent, rounded up).
//! Pure functions; a field of the wrong type reads as absent.

use serde_json::Value;

/// Key prefix of pods.
pub const PODS: &str = "/registry/pods/";
/// Key prefix of ReplicaSets.
pub const REPLICASETS: &str = "/registry/replicasets/";
/// Key prefix of Deployments.
pub const DEPLOYMENTS: &str = "/registry/deployments/";

/// `metadata.uid`.
pub fn uid(o: &Value) -> Option<&str> {
    o.pointer("/metadata/uid").and_then(Value::as_str)
}

/// `spec.nodeName`, when set and not empty.
pub fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// The owner reference with `controller: true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerRef<'a> {
    /// Its kind (`ReplicaSet`, `Deployment`).
    pub kind: &'a str,
    /// Its uid.
    pub uid: &'a str,
}

/// The controlling owner of `o`, if any.
pub fn controller_ref(o: &Value) -> Option<ControllerRef<'_>> {
    o.pointer("/metadata/ownerReferences")?.as_array()?.iter().find_map(|r| {
        (r.get("controller").and_then(Value::as_bool) == Some(true))
            .then(|| Some(ControllerRef { kind: r.get("kind")?.as_str()?, uid: r.get("uid")?.as_str()? }))
            .flatten()
    })
}

/// The uid of `o`'s controller when it is of `kind`.
pub fn controlled_by<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    controller_ref(o).filter(|r| r.kind == kind).map(|r| r.uid)
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn terminating(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// `status.phase` (Pending when absent).
pub fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending")
}

/// Whether a ReplicaSet controller counts the pod: not terminating and not finished (kube's
/// `controller.FilterActivePods`).
pub fn active(pod: &Value) -> bool {
    !terminating(pod) && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| c.get("type").and_then(Value::as_str) == Some("Ready") && c.get("status").and_then(Value::as_str) == Some("True"))
    })
}

/// `metadata.generation` (0 when absent).
pub fn generation(o: &Value) -> i64 {
    o.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0)
}

/// `status.observedGeneration` (0 when absent).
pub fn observed_generation(o: &Value) -> i64 {
    o.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0)
}

/// `spec.replicas` (1 when absent, as Kubernetes defaults it).
pub fn replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

/// A `status` integer field (0 when absent).
pub fn status_count(o: &Value, field: &str) -> i64 {
    o.pointer(&format!("/status/{field}")).and_then(Value::as_i64).unwrap_or(0)
}

/// Kubernetes' `intstr.GetScaledValueFromIntOrPercent`: an int as is, `"N%"` of `total` rounded
/// up or down. None for anything else.
pub fn scaled(v: &Value, total: i64, round_up: bool) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let percent: i64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    let scaled = percent * total;
    Some(if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) })
}

/// The most pods a Deployment's rollout may have, as kube's deployment controller computes it
/// (`NewRSNewReplicas`: `replicas + maxSurge`, maxSurge resolved against replicas and rounded
/// up, 25 % by default; `Recreate` never surges).
pub fn max_total_pods(d: &Value) -> i64 {
    let replicas = replicas(d);
    if d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
        return replicas;
    }
    let surge = d.pointer("/spec/strategy/rollingUpdate/maxSurge").cloned().unwrap_or_else(|| Value::from("25%"));
    replicas + scaled(&surge, replicas, true).unwrap_or(0).max(0)
}

/// The pod template without the `pod-template-hash` label, which kube's deployment controller
/// adds to its ReplicaSets' templates (`EqualIgnoreHash`).
pub fn template_ignoring_hash(o: &Value) -> Option<Value> {
    let mut t = o.pointer("/spec/template")?.clone();
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
        if labels.is_empty() {
            t.pointer_mut("/metadata").and_then(Value::as_object_mut).map(|m| m.remove("labels"));
        }
    }
    if t.pointer("/metadata").and_then(Value::as_object).is_some_and(|m| m.is_empty()) {
        t.as_object_mut().map(|m| m.remove("metadata"));
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_surge_is_resolved_as_kube_does() {
        let d = |replicas: i64, strategy: Value| json!({"spec": {"replicas": replicas, "strategy": strategy}});
        // (replicas, strategy, replicas + maxSurge)
        let table = [
            (4, json!({}), 5),                                       // 25 % of 4 = 1
            (3, json!({}), 4),                                       // 25 % of 3 = 0.75, rounded up
            (10, json!({"rollingUpdate": {"maxSurge": "30%"}}), 13), // 3
            (10, json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}), 10),
            (5, json!({"rollingUpdate": {"maxSurge": 2}}), 7),
            (0, json!({}), 0),
            (5, json!({"type": "Recreate"}), 5),
        ];
        for (replicas, strategy, want) in table {
            assert_eq!(max_total_pods(&d(replicas, strategy.clone())), want, "{replicas} {strategy}");
        }
        assert_eq!(max_total_pods(&json!({"spec": {}})), 2, "replicas default to 1, 25 % of 1 rounds up to 1");
        assert_eq!(scaled(&json!("25%"), 3, false), Some(0), "maxUnavailable rounds down");
        assert_eq!(scaled(&json!("x"), 3, true), None);
    }

    #[test]
    fn pods_count_when_neither_terminating_nor_finished() {
        let table = [
            (json!({"status": {"phase": "Running"}}), true),
            (json!({}), true),
            (json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}, "status": {"phase": "Running"}}), false),
            (json!({"status": {"phase": "Failed"}}), false),
            (json!({"status": {"phase": "Succeeded"}}), false),
        ];
        for (pod, want) in table {
            assert_eq!(active(&pod), want, "{pod}");
        }
    }

    #[test]
    fn controller_refs_and_templates() {
        let pod = json!({"metadata": {"ownerReferences": [
            {"kind": "Node", "uid": "n", "name": "x"},
            {"kind": "ReplicaSet", "uid": "rs-1", "name": "web-1", "controller": true}]}});
        assert_eq!(controlled_by(&pod, "ReplicaSet"), Some("rs-1"));
        assert_eq!(controlled_by(&pod, "Deployment"), None);
        let rs = json!({"spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"x": 1}}}});
        let d = json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"x": 1}}}});
        assert_eq!(template_ignoring_hash(&rs), template_ignoring_hash(&d));
        let bare = json!({"spec": {"template": {"metadata": {"labels": {"pod-template-hash": "abc"}}, "spec": {}}}});
        assert_eq!(template_ignoring_hash(&bare), Some(json!({"spec": {}})));
    }
}
