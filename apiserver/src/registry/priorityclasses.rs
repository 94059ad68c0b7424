//! PriorityClasses (`scheduling.k8s.io/v1`, cluster-scoped), as kube's scheduling registry:
//! the two system classes every cluster has ([`SYSTEM`], created at bootstrap), names with the
//! `system-` prefix reserved for them, user values at most one billion, `value` and
//! `preemptionPolicy` immutable, `PreemptLowerPriority` by default. The Priority admission
//! that turns a pod's `priorityClassName` into its `priority` is
//! [`crate::rest::admission`]'s.

use crate::registry::strategy::{Column, Strategy, age, name};
use crate::registry::validation::{Cause, immutable};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{Value, json};

/// The priorityclasses strategy.
pub struct PriorityClasses;

/// The largest value a user-defined class may have (kube's HighestUserDefinablePriority).
pub const HIGHEST_USER_DEFINABLE: i32 = 1_000_000_000;

/// The built-in classes: (name, value, description).
pub const SYSTEM: &[(&str, i32, &str)] = &[
    ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Why `pc` is not a valid system class, when its name claims to be one (kube's IsKnownSystemPriorityClass).
fn system_problem(pc: &PriorityClass) -> Option<String> {
    let n = name(&pc.metadata);
    let Some((_, value, _)) = SYSTEM.iter().find(|(s, _, _)| *s == n) else {
        return Some(format!("{n} is not a known system priority class"));
    };
    if pc.value != *value {
        return Some(format!("value of {n} PriorityClass must be {value}"));
    }
    if pc.global_default == Some(true) {
        return Some(format!("globalDefault of {n} PriorityClass must be false"));
    }
    None
}

/// A built-in class as created at bootstrap.
pub fn system_class(name: &str, value: i32, description: &str) -> Value {
    json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value, "description": description})
}

impl Strategy for PriorityClasses {
    type Object = PriorityClass;

    fn default(&self, pc: &mut PriorityClass) {
        pc.preemption_policy.get_or_insert_with(|| "PreemptLowerPriority".into());
    }

    fn validate(&self, pc: &PriorityClass) -> Vec<Cause> {
        let mut out = Vec::new();
        if name(&pc.metadata).starts_with("system-") {
            if let Some(p) = system_problem(pc) {
                out.push(("metadata.name".into(), format!("Forbidden: priority class is a system priority class: {p}")));
            }
        } else if pc.value > HIGHEST_USER_DEFINABLE {
            out.push(("value".into(), format!("Forbidden: maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}")));
        }
        if let Some(p) = pc.preemption_policy.as_deref().filter(|p| *p != "PreemptLowerPriority" && *p != "Never") {
            out.push((
                "preemptionPolicy".into(),
                format!("Unsupported value: {p:?}: supported values: \"Never\", \"PreemptLowerPriority\""),
            ));
        }
        out
    }

    fn validate_update(&self, new: &PriorityClass, old: &PriorityClass, _status: bool) -> Vec<Cause> {
        let mut out = Vec::new();
        if new.value != old.value {
            out.push(("value".into(), "Forbidden: may not be changed in an update.".into()));
        }
        if new.preemption_policy != old.preemption_policy {
            out.push(immutable("preemptionPolicy", format!("{:?}", new.preemption_policy.as_deref().unwrap_or(""))));
        }
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Value", 0), ("Global-Default", 0), ("Age", 0), ("PreemptionPolicy", 0)]
    }

    fn cells(&self, pc: &PriorityClass, now: i64) -> Vec<Value> {
        vec![
            json!(name(&pc.metadata)),
            json!(pc.value),
            json!(pc.global_default.unwrap_or(false)),
            json!(age(&pc.metadata, now)),
            json!(pc.preemption_policy.clone().unwrap_or_default()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::strategy::Behaviour;

    fn causes(obj: Value, old: Option<&Value>) -> Vec<String> {
        let w = crate::registry::strategy::Write { old, status: false, version: "scheduling.k8s.io/v1" };
        match PriorityClasses.finish("PriorityClass", obj, w, false) {
            Ok(_) => vec![],
            Err(crate::error::ApiError::Invalid { causes, .. }) => causes.into_iter().map(|(f, _)| f).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn system_names_are_reserved_and_values_bounded_and_fixed() {
        for (n, v, d) in SYSTEM {
            assert!(causes(system_class(n, *v, d), None).is_empty(), "{n}");
        }
        assert_eq!(causes(system_class("system-node-critical", 5, ""), None), vec!["metadata.name"]);
        assert_eq!(causes(system_class("system-mine", 5, ""), None), vec!["metadata.name"]);
        assert_eq!(causes(json!({"metadata": {"name": "big"}, "value": 1_000_000_001}), None), vec!["value"]);
        let old = json!({"metadata": {"name": "p"}, "value": 10, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(causes(json!({"metadata": {"name": "p"}, "value": 11}), Some(&old)), vec!["value"]);
        assert_eq!(
            causes(json!({"metadata": {"name": "p"}, "value": 10, "preemptionPolicy": "Never"}), Some(&old)),
            vec!["preemptionPolicy"]
        );
        assert!(causes(json!({"metadata": {"name": "p"}, "value": 10, "description": "changed"}), Some(&old)).is_empty());
    }
}
