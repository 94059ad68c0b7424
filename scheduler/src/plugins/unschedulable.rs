//! NodeUnschedulable: a cordoned node (`spec.unschedulable: true`) takes only pods that
//! tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint (DaemonSet pods do).

use super::taints::tolerates;
use super::{Code, Filtered, Status};
use crate::node::NodeInfo;
use crate::pod::PodInfo;
use k8s_openapi::api::core::v1::Taint;

/// The plugin's name.
pub const NAME: &str = "NodeUnschedulable";
/// kube-scheduler's `ErrReasonUnschedulable`.
pub const REASON: &str = "node(s) were unschedulable";
/// The taint a cordon stands for.
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// Refuses cordoned nodes unless the pod tolerates the unschedulable taint.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    if !node.spec.unschedulable {
        return Ok(());
    }
    let taint = Taint { key: TAINT_KEY.into(), effect: "NoSchedule".into(), ..Default::default() };
    if pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
        return Ok(());
    }
    Err(Status::new(NAME, Code::UnschedulableAndUnresolvable, REASON))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::node;
    use crate::pod::testing::pod;
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let cordoned = node("n", json!({}), json!({"unschedulable": true}), json!({"cpu": "1", "pods": "10"}));
        let open = node("n", json!({}), json!({}), json!({"cpu": "1", "pods": "10"}));
        let table = [
            ("open node, plain pod", &open, json!({}), true),
            ("cordoned, plain pod", &cordoned, json!({}), false),
            (
                "cordoned, tolerates by key",
                &cordoned,
                json!({"tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}),
                true,
            ),
            ("cordoned, tolerates everything", &cordoned, json!({"tolerations": [{"operator": "Exists"}]}), true),
            (
                "cordoned, wrong effect",
                &cordoned,
                json!({"tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoExecute"}]}),
                false,
            ),
        ];
        for (name, n, spec, fits) in table {
            assert_eq!(filter(&pod("p", spec), n).is_ok(), fits, "{name}");
        }
        let s = filter(&pod("p", json!({})), &cordoned).expect_err("refused");
        assert_eq!((s.reasons[0].as_ref(), s.code), (REASON, Code::UnschedulableAndUnresolvable));
    }
}
