//! Taints and tolerations without I/O: the taints the node lifecycle controller keeps in step
//! with a node's conditions (kube's `nodeConditionToTaintKeyStatusMap`, `unschedulable`), the
//! NoExecute pair `not-ready`/`unreachable`, and toleration matching with the time a pod may
//! stay (`v1helper.GetMatchingTolerations`, `getMinTolerationTime`).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// `node.kubernetes.io/not-ready`: Ready is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable`: Ready is Unknown (the kubelet went silent).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/unschedulable`: `spec.unschedulable` (cordoned).
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// `node.kubernetes.io/memory-pressure`.
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// `node.kubernetes.io/disk-pressure`.
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// `node.kubernetes.io/pid-pressure`.
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
/// `node.kubernetes.io/network-unavailable`.
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// Effect: no new pods.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// Effect: running pods are evicted.
pub const NO_EXECUTE: &str = "NoExecute";

/// (condition type, condition status, taint key) of the NoSchedule taints conditions imply.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", MEMORY_PRESSURE),
    ("DiskPressure", "True", DISK_PRESSURE),
    ("NetworkUnavailable", "True", NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", PID_PRESSURE),
];

/// A taint with no time (kube's templates; `timeAdded` is set when added).
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint { key: key.into(), effect: effect.into(), value: None, time_added: None }
}

/// The node's condition `type_`.
pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The node's taints.
pub fn taints(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

/// True when the node has a taint with `key` and `effect`.
pub fn has(node: &Node, key: &str, effect: &str) -> bool {
    taints(node).iter().any(|t| t.key == key && t.effect == effect)
}

fn is_condition_key(key: &str) -> bool {
    key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
}

/// `doNoScheduleTaintingPass`: (to add, to remove) so the node's NoSchedule condition taints
/// match its conditions and `spec.unschedulable`.
pub fn no_schedule_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    let mut want: Vec<Taint> = Vec::new();
    for c in node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten() {
        for (ty, st, key) in CONDITION_TAINTS {
            if c.type_ == *ty && c.status == *st {
                want.push(taint(key, NO_SCHEDULE));
            }
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        want.push(taint(UNSCHEDULABLE, NO_SCHEDULE));
    }
    let have: Vec<&Taint> = taints(node).iter().filter(|t| t.effect == NO_SCHEDULE && is_condition_key(&t.key)).collect();
    let add = want.iter().filter(|w| !have.iter().any(|h| h.key == w.key)).cloned().collect();
    let del = have.iter().filter(|h| !want.iter().any(|w| w.key == h.key)).map(|t| (*t).clone()).collect();
    (add, del)
}

/// `SwapNodeControllerTaint` on a taint list: removes `del` (by key and effect), adds `add`
/// stamped `now` when missing. `None` when nothing changes.
pub fn swap(current: &[Taint], add: &[Taint], del: &[Taint], now: Timestamp) -> Option<Vec<Taint>> {
    let mut out: Vec<Taint> = current.iter().filter(|t| !del.iter().any(|d| d.key == t.key && d.effect == t.effect)).cloned().collect();
    for a in add {
        if !out.iter().any(|t| t.key == a.key && t.effect == a.effect) {
            let mut a = a.clone();
            a.time_added = Some(Time(now));
            out.push(a);
        }
    }
    (out != current).then_some(out)
}

/// `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => !key.is_empty() && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// How long a pod with `tolerations` may stay on a node with `taints` (NoExecute ones only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stay {
    /// No NoExecute taint, or all tolerated forever.
    Forever,
    /// Tolerated for this long (the least of the matching tolerationSeconds).
    For(Duration),
    /// Some taint is not tolerated: evict now.
    Evict,
}

/// `GetMatchingTolerations` + `getMinTolerationTime` over the NoExecute `taints`.
pub fn stay(taints: &[Taint], tolerations: &[Toleration]) -> Stay {
    let mut min: Option<i64> = None;
    let mut any = false;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        any = true;
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Stay::Evict;
        }
        for t in matching {
            if let Some(s) = t.toleration_seconds {
                min = Some(min.map_or(s, |m| m.min(s)));
            }
        }
    }
    match (any, min) {
        (false, _) | (true, None) => Stay::Forever,
        (true, Some(s)) => Stay::For(Duration::from_secs(s.max(0) as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(conds: &[(&str, &str)], taints: &[(&str, &str)], unschedulable: bool) -> Node {
        Node {
            metadata: Default::default(),
            spec: Some(NodeSpec {
                taints: Some(taints.iter().map(|(k, e)| taint(k, e)).collect()),
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(
                    conds
                        .iter()
                        .map(|(t, s)| NodeCondition { type_: t.to_string(), status: s.to_string(), ..Default::default() })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn keys(t: &[Taint]) -> Vec<&str> {
        t.iter().map(|t| t.key.as_str()).collect()
    }

    // TestTaintsNodeByCondition (node_lifecycle_controller_test.go).
    #[test]
    fn no_schedule_taints_follow_conditions_and_cordon() {
        let rows: Vec<(&str, Node, Vec<&str>, Vec<&str>)> = vec![
            ("ready node keeps user taints", node(&[("Ready", "True")], &[("user", NO_SCHEDULE)], false), vec![], vec![]),
            ("not ready", node(&[("Ready", "False")], &[], false), vec![NOT_READY], vec![]),
            ("unknown", node(&[("Ready", "Unknown")], &[], false), vec![UNREACHABLE], vec![]),
            ("memory pressure", node(&[("Ready", "True"), ("MemoryPressure", "True")], &[], false), vec![MEMORY_PRESSURE], vec![]),
            (
                "recovered",
                node(&[("Ready", "True")], &[(NOT_READY, NO_SCHEDULE), (UNREACHABLE, NO_SCHEDULE)], false),
                vec![],
                vec![NOT_READY, UNREACHABLE],
            ),
            ("cordoned", node(&[("Ready", "True")], &[], true), vec![UNSCHEDULABLE], vec![]),
            ("uncordoned", node(&[("Ready", "True")], &[(UNSCHEDULABLE, NO_SCHEDULE)], false), vec![], vec![UNSCHEDULABLE]),
            ("NoExecute taints are not this pass's", node(&[("Ready", "True")], &[(UNREACHABLE, NO_EXECUTE)], false), vec![], vec![]),
        ];
        for (what, n, add, del) in rows {
            let (a, d) = no_schedule_diff(&n);
            assert_eq!((keys(&a), keys(&d)), (add, del), "{what}");
        }
    }

    #[test]
    fn swap_adds_stamped_taints_and_removes_by_key_and_effect() {
        let now = Timestamp::UNIX_EPOCH;
        let cur = vec![taint(NOT_READY, NO_EXECUTE), taint("user", NO_SCHEDULE)];
        let out = swap(&cur, &[taint(UNREACHABLE, NO_EXECUTE)], &[taint(NOT_READY, NO_EXECUTE)], now).unwrap_or_default();
        assert_eq!(keys(&out), ["user", UNREACHABLE]);
        assert!(out[1].time_added.is_some());
        assert_eq!(swap(&out, &[taint(UNREACHABLE, NO_EXECUTE)], &[], now), None, "no change");
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: secs,
            value: None,
        }
    }

    // TestGetMinTolerationTime and the taint manager's eviction cases.
    #[test]
    fn stay_is_the_shortest_matching_toleration_or_evict() {
        let unreach = [taint(UNREACHABLE, NO_EXECUTE)];
        let soft = [taint(UNREACHABLE, NO_SCHEDULE)];
        let rows: Vec<(&str, &[Taint], Vec<Toleration>, Stay)> = vec![
            ("no taints", &[], vec![], Stay::Forever),
            ("untolerated", &unreach, vec![], Stay::Evict),
            ("tolerated forever", &unreach, vec![tol(UNREACHABLE, "Exists", NO_EXECUTE, None)], Stay::Forever),
            ("tolerated 300 s", &unreach, vec![tol(UNREACHABLE, "Exists", NO_EXECUTE, Some(300))], Stay::For(Duration::from_secs(300))),
            (
                "shortest of two",
                &unreach,
                vec![tol(UNREACHABLE, "Exists", NO_EXECUTE, Some(300)), tol("", "Exists", "", Some(5))],
                Stay::For(Duration::from_secs(5)),
            ),
            ("negative means now", &unreach, vec![tol(UNREACHABLE, "Exists", NO_EXECUTE, Some(-3))], Stay::For(Duration::ZERO)),
            ("other key", &unreach, vec![tol(NOT_READY, "Exists", NO_EXECUTE, Some(300))], Stay::Evict),
            ("NoSchedule taints never evict", &soft, vec![], Stay::Forever),
        ];
        for (what, taints, tols, want) in rows {
            assert_eq!(stay(taints, &tols), want, "{what}");
        }
        let eq = Toleration { key: Some("k".into()), operator: Some("Equal".into()), value: Some("v".into()), ..Default::default() };
        let t = Taint { key: "k".into(), value: Some("v".into()), effect: NO_EXECUTE.into(), time_added: None };
        assert!(tolerates(&eq, &t));
        assert!(!tolerates(&eq, &Taint { value: Some("w".into()), ..t }));
    }
}
