//! TaintToleration: a node's `NoSchedule`/`NoExecute` taints keep off every pod that does
//! not tolerate them (the filter); `PreferNoSchedule` taints only lower the node's score.
//! The node lifecycle's readiness taints (`node.kubernetes.io/not-ready`, `…/unreachable`)
//! are ordinary taints here, as in kube-scheduler.
//!
//! Toleration matching is core/v1's `ToleratesTaint`: an empty effect matches every effect, an
//! empty key (with `Exists`) every key, `Exists` ignores the value, `Equal` (or no operator)
//! compares it.

use super::{Code, Filtered, Status};
use crate::node::NodeInfo;
use crate::pod::PodInfo;
use k8s_openapi::api::core::v1::{Taint, Toleration};

/// The plugin's name.
pub const NAME: &str = "TaintToleration";

/// Whether `t` tolerates `taint` (core/v1 `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// kube-scheduler's reason for an untolerated taint: `node(s) had untolerated taint {k: v}`.
pub fn reason(taint: &Taint) -> String {
    format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value.as_deref().unwrap_or(""))
}

/// Refuses a node with a `NoSchedule` or `NoExecute` taint the pod does not tolerate (the
/// first such taint is named).
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    let untolerated = node
        .spec
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !pod.tolerations.iter().any(|t| tolerates(t, taint)));
    match untolerated {
        Some(taint) => Err(Status::new(NAME, Code::UnschedulableAndUnresolvable, reason(taint))),
        None => Ok(()),
    }
}

/// The raw score: how many `PreferNoSchedule` taints the pod does not tolerate (counting only
/// its tolerations with an empty or `PreferNoSchedule` effect). Normalised *reversed*: fewer is
/// better.
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let prefer = |t: &&Toleration| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule");
    node.spec
        .taints
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule" && !pod.tolerations.iter().filter(prefer).any(|t| tolerates(t, taint)))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::node;
    use crate::pod::testing::pod;
    use serde_json::{Value, json};

    fn tainted(taints: Value) -> NodeInfo {
        node("n", json!({}), json!({"taints": taints}), json!({"cpu": "1", "pods": "10"}))
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: Some(value.into()).filter(|v: &String| !v.is_empty()), effect: effect.into(), time_added: None }
    }

    fn tol(v: Value) -> Toleration {
        serde_json::from_value(v).expect("a toleration")
    }

    #[test]
    fn toleration_matching_follows_core_v1() {
        let gpu = taint("dedicated", "gpu", "NoSchedule");
        let table = [
            (
                "Equal, same key/value/effect",
                json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
                true,
            ),
            ("no operator means Equal", json!({"key": "dedicated", "value": "gpu"}), true),
            ("Equal, other value", json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}), false),
            ("Exists ignores the value", json!({"key": "dedicated", "operator": "Exists"}), true),
            ("empty key with Exists tolerates every taint", json!({"operator": "Exists"}), true),
            ("empty key with Exists, effect must still match", json!({"operator": "Exists", "effect": "NoExecute"}), false),
            ("empty effect matches every effect", json!({"key": "dedicated", "operator": "Exists", "effect": ""}), true),
            ("other key", json!({"key": "zone", "operator": "Exists"}), false),
            ("unknown operator tolerates nothing", json!({"key": "dedicated", "operator": "Gt", "value": "gpu"}), false),
            ("Equal without value against a valued taint", json!({"key": "dedicated", "operator": "Equal"}), false),
        ];
        for (name, t, want) in table {
            assert_eq!(tolerates(&tol(t), &gpu), want, "{name}");
        }
        let bare = taint("node.kubernetes.io/not-ready", "", "NoExecute");
        assert!(
            tolerates(&tol(json!({"key": "node.kubernetes.io/not-ready", "operator": "Equal"})), &bare),
            "Equal with both values empty"
        );
    }

    #[test]
    fn the_filter_names_the_first_untolerated_hard_taint() {
        let n = tainted(json!([
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
        ]));
        let table = [
            ("no tolerations", json!({}), Some("node(s) had untolerated taint {dedicated: gpu}")),
            (
                "tolerates gpu but not readiness",
                json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
                Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
            (
                "tolerates both (NoExecute with tolerationSeconds still tolerates)",
                json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}, {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}),
                None,
            ),
            ("tolerates everything", json!({"tolerations": [{"operator": "Exists"}]}), None),
        ];
        for (name, spec, want) in table {
            let got = filter(&pod("p", spec), &n).err().map(|s| s.reasons[0].to_string());
            assert_eq!(got.as_deref(), want, "{name}");
        }
        let unreachable = tainted(json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]));
        assert!(filter(&pod("p", json!({})), &unreachable).is_err(), "an unreachable node takes no plain pod");
    }

    #[test]
    fn prefer_no_schedule_counts_only_against_the_score() {
        let n = tainted(
            json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}, {"key": "c", "effect": "NoSchedule"}]),
        );
        let table = [
            ("no tolerations: both soft taints count", json!({"tolerations": [{"key": "c", "operator": "Exists"}]}), 2),
            (
                "tolerates a",
                json!({"tolerations": [{"key": "c", "operator": "Exists"}, {"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
                1,
            ),
            (
                "a NoSchedule toleration does not help the score",
                json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]}),
                2,
            ),
            ("tolerates all", json!({"tolerations": [{"operator": "Exists"}]}), 0),
        ];
        for (name, spec, want) in table {
            assert_eq!(score(&pod("p", spec), &n), want, "{name}");
        }
    }
}
