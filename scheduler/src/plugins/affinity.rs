//! NodeAffinity: `spec.nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution`
//! filter (both must match), `preferredDuringSchedulingIgnoredDuringExecution` weights score.
//!
//! Semantics (component-helpers' `NodeSelector`, apimachinery's label requirements):
//! - required terms are ORed, the expressions and fields inside a term ANDed; a term with
//!   neither expressions nor fields matches nothing, and so does an empty term list;
//! - `In` needs the label with one of the values, `NotIn` passes when the label is absent,
//!   `Exists`/`DoesNotExist` test presence only, `Gt`/`Lt` compare the label as an integer
//!   (a label that is not an integer does not match);
//! - `matchFields` supports `metadata.name` with `In`/`NotIn` and one value.
//!
//! A selector that breaks these rules (an unknown operator, `In` without values, `Gt` with a
//! value that is not an integer) is a malformed pod: [`PodAffinity::compile`] says why, in the
//! apiserver's validation words, and the pod gets an event instead of a placement.

use super::{Code, Filtered, Status};
use crate::node::NodeInfo;
use crate::pod::PodInfo;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};
use std::collections::BTreeMap;

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";
/// kube-scheduler's `ErrReasonPod`.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// A selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The label is one of the values.
    In,
    /// The label is absent or none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label, as an integer, is greater.
    Gt,
    /// The label, as an integer, is less.
    Lt,
}

/// One compiled requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
    /// The bound for `Gt`/`Lt`.
    bound: i64,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n > self.bound),
            (Op::Lt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n < self.bound),
            (Op::Gt | Op::Lt, None) => false,
        }
    }
}

/// One compiled term: expressions over labels and fields over the node's name, ANDed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Term {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Term {
    /// Whether the node with `labels` and `name` satisfies every requirement (an empty term
    /// matches nothing).
    pub fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.labels.iter().all(|r| r.matches(labels.get(&r.key).map(String::as_str))) && self.fields.iter().all(|r| r.matches(Some(name)))
    }
}

/// A malformed selector, with the apiserver's field path and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAffinity {
    /// Where.
    pub field: String,
    /// What.
    pub message: String,
}

impl std::fmt::Display for BadAffinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn requirement(r: &NodeSelectorRequirement, field: &str, is_field: bool) -> Result<Requirement, BadAffinity> {
    let bad = |at: &str, m: String| Err(BadAffinity { field: format!("{field}.{at}"), message: m });
    let values = r.values.clone().unwrap_or_default();
    let op = match r.operator.as_str() {
        "In" => Op::In,
        "NotIn" => Op::NotIn,
        "Exists" if !is_field => Op::Exists,
        "DoesNotExist" if !is_field => Op::DoesNotExist,
        "Gt" if !is_field => Op::Gt,
        "Lt" if !is_field => Op::Lt,
        other => return bad("operator", format!("Unsupported value: {other:?}: not a valid selector operator")),
    };
    if is_field && r.key != "metadata.name" {
        return bad("key", format!("Invalid value: {:?}: not a valid field selector key", r.key));
    }
    if is_field && values.len() != 1 {
        return bad("values", "Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector".into());
    }
    if !is_field && r.key.is_empty() {
        return bad("key", "Invalid value: \"\": name part must be non-empty".into());
    }
    let mut bound = 0;
    match op {
        Op::In | Op::NotIn if values.is_empty() => {
            return bad("values", "Required value: must be specified when `operator` is 'In' or 'NotIn'".into());
        }
        Op::Exists | Op::DoesNotExist if !values.is_empty() => {
            return bad("values", "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into());
        }
        Op::Gt | Op::Lt => {
            if values.len() != 1 {
                return bad("values", "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'".into());
            }
            bound = match values[0].parse::<i64>() {
                Ok(b) => b,
                Err(_) => {
                    return bad(
                        "values[0]",
                        format!("Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer", values[0]),
                    );
                }
            };
        }
        _ => {}
    }
    Ok(Requirement { key: r.key.clone(), op, values, bound })
}

/// Compiles one term found at `field`.
pub fn compile_term(t: &NodeSelectorTerm, field: &str) -> Result<Term, BadAffinity> {
    let mut term = Term::default();
    for (i, r) in t.match_expressions.iter().flatten().enumerate() {
        term.labels.push(requirement(r, &format!("{field}.matchExpressions[{i}]"), false)?);
    }
    for (i, r) in t.match_fields.iter().flatten().enumerate() {
        term.fields.push(requirement(r, &format!("{field}.matchFields[{i}]"), true)?);
    }
    Ok(term)
}

/// A pod's node constraints and preferences, compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAffinity {
    /// `spec.nodeSelector`: every pair must be a label of the node.
    pub node_selector: BTreeMap<String, String>,
    /// Required terms (ORed); `None` when the pod has no required node affinity.
    pub required: Option<Vec<Term>>,
    /// Preferred terms and their weights (weight-0 terms dropped, as kube does).
    pub preferred: Vec<(i64, Term)>,
}

impl PodAffinity {
    /// Compiles `spec`'s nodeSelector and node affinity.
    pub fn compile(spec: &PodSpec) -> Result<PodAffinity, BadAffinity> {
        let mut a = PodAffinity { node_selector: spec.node_selector.clone().unwrap_or_default(), ..Default::default() };
        let Some(na) = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()) else { return Ok(a) };
        let base = "spec.affinity.nodeAffinity";
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            let f = format!("{base}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
            let terms =
                req.node_selector_terms.iter().enumerate().map(|(i, t)| compile_term(t, &format!("{f}[{i}]"))).collect::<Result<_, _>>()?;
            a.required = Some(terms);
        }
        for (i, p) in na.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            let f = format!("{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            if !(0..=100).contains(&p.weight) {
                return Err(BadAffinity {
                    field: format!("{f}.weight"),
                    message: format!("Invalid value: {}: must be in the range 1-100", p.weight),
                });
            }
            let term = compile_term(&p.preference, &format!("{f}.preference"))?;
            if p.weight != 0 {
                a.preferred.push((i64::from(p.weight), term));
            }
        }
        Ok(a)
    }

    /// Whether the node satisfies nodeSelector and the required terms.
    pub fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        if !self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
        match &self.required {
            Some(terms) => terms.iter().any(|t| t.matches(labels, name)),
            None => true,
        }
    }
}

/// Refuses nodes that do not satisfy nodeSelector and required node affinity.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    if pod.affinity.matches(&node.spec.labels, node.name()) {
        Ok(())
    } else {
        Err(Status::new(NAME, Code::UnschedulableAndUnresolvable, REASON))
    }
}

/// The raw score: the sum of the weights of the preferred terms the node matches.
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.affinity.preferred.iter().filter(|(_, t)| t.matches(&node.spec.labels, node.name())).map(|(w, _)| *w).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::node;
    use crate::pod::testing::pod;
    use serde_json::{Value, json};

    fn required(terms: Value) -> Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}})
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> Value {
        if values.is_empty() { json!({"key": key, "operator": op}) } else { json!({"key": key, "operator": op, "values": values}) }
    }

    #[test]
    fn required_affinity_and_node_selector_follow_kube() {
        let n = node("n1", json!({"zone": "a", "disk": "ssd", "cores": "8", "gen": "v2"}), json!({}), json!({"pods": "10"}));
        let t = |exprs: Vec<Value>| json!({"matchExpressions": exprs});
        let table: Vec<(&str, Value, bool)> = vec![
            ("no constraints", json!({}), true),
            ("nodeSelector matches", json!({"nodeSelector": {"zone": "a"}}), true),
            ("nodeSelector value differs", json!({"nodeSelector": {"zone": "b"}}), false),
            ("nodeSelector label missing", json!({"nodeSelector": {"gpu": "yes"}}), false),
            ("In", required(json!([t(vec![expr("zone", "In", &["a", "b"])])])), true),
            ("In, other values", required(json!([t(vec![expr("zone", "In", &["c"])])])), false),
            ("NotIn, label has another value", required(json!([t(vec![expr("zone", "NotIn", &["b"])])])), true),
            ("NotIn, label has the value", required(json!([t(vec![expr("zone", "NotIn", &["a"])])])), false),
            ("NotIn, label absent: matches", required(json!([t(vec![expr("gpu", "NotIn", &["yes"])])])), true),
            ("Exists", required(json!([t(vec![expr("disk", "Exists", &[])])])), true),
            ("Exists, absent", required(json!([t(vec![expr("gpu", "Exists", &[])])])), false),
            ("DoesNotExist", required(json!([t(vec![expr("gpu", "DoesNotExist", &[])])])), true),
            ("DoesNotExist, present", required(json!([t(vec![expr("disk", "DoesNotExist", &[])])])), false),
            ("Gt", required(json!([t(vec![expr("cores", "Gt", &["4"])])])), true),
            ("Gt, equal is not greater", required(json!([t(vec![expr("cores", "Gt", &["8"])])])), false),
            ("Lt", required(json!([t(vec![expr("cores", "Lt", &["16"])])])), true),
            ("Gt on a label that is not an integer", required(json!([t(vec![expr("gen", "Gt", &["1"])])])), false),
            ("Lt on an absent label", required(json!([t(vec![expr("ram", "Lt", &["1"])])])), false),
            (
                "expressions in a term are ANDed",
                required(json!([t(vec![expr("zone", "In", &["a"]), expr("disk", "In", &["hdd"])])])),
                false,
            ),
            ("terms are ORed", required(json!([t(vec![expr("zone", "In", &["b"])]), t(vec![expr("disk", "In", &["ssd"])])])), true),
            ("an empty term matches nothing", required(json!([{}])), false),
            ("an empty term list matches nothing", required(json!([])), false),
            (
                "matchFields on metadata.name",
                required(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])),
                true,
            ),
            (
                "matchFields NotIn",
                required(json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}])),
                false,
            ),
            (
                "nodeSelector and affinity must both match",
                {
                    let mut s = required(json!([t(vec![expr("zone", "In", &["a"])])]));
                    s["nodeSelector"] = json!({"disk": "hdd"});
                    s
                },
                false,
            ),
        ];
        for (name, spec, want) in table {
            let p = pod("p", spec);
            assert_eq!(p.invalid, None, "{name}");
            let got = filter(&p, &n);
            assert_eq!(got.is_ok(), want, "{name}");
            if let Err(s) = got {
                assert_eq!((s.reasons[0].as_ref(), s.code), (REASON, Code::UnschedulableAndUnresolvable), "{name}");
            }
        }
    }

    #[test]
    fn malformed_selectors_are_reported_not_matched() {
        let t = |e: Value| required(json!([{"matchExpressions": [e]}]));
        let table: Vec<(&str, Value, &str)> = vec![
            ("Gt with a non-integer value", t(expr("cores", "Gt", &["four"])), "for 'Gt', 'Lt' operators, the value must be an integer"),
            ("Lt with two values", t(expr("cores", "Lt", &["1", "2"])), "must be specified single value"),
            ("In without values", t(expr("zone", "In", &[])), "must be specified when `operator` is 'In' or 'NotIn'"),
            ("Exists with values", t(expr("zone", "Exists", &["a"])), "may not be specified"),
            ("unknown operator", t(expr("zone", "Near", &["a"])), "not a valid selector operator"),
            (
                "matchFields on a label",
                required(json!([{"matchFields": [{"key": "zone", "operator": "In", "values": ["a"]}]}])),
                "not a valid field selector key",
            ),
            (
                "matchFields with Exists",
                required(json!([{"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}])),
                "not a valid selector operator",
            ),
        ];
        for (name, spec, want) in table {
            let p = pod("p", spec);
            assert!(p.invalid.as_deref().is_some_and(|m| m.contains(want)), "{name}: {:?}", p.invalid);
        }
        let p = pod("p", t(expr("cores", "Gt", &["x"])));
        assert_eq!(
            p.invalid.as_deref(),
            Some(
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
            )
        );
    }

    #[test]
    fn preferred_terms_sum_their_weights() {
        let n = node("n1", json!({"zone": "a", "disk": "ssd"}), json!({}), json!({"pods": "10"}));
        let pref = |terms: Value| json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}});
        let w = |weight: i32, key: &str, v: &str| json!({"weight": weight, "preference": {"matchExpressions": [expr(key, "In", &[v])]}});
        let table = [
            ("none", json!({}), 0),
            ("one matching", pref(json!([w(10, "zone", "a")])), 10),
            ("one not matching", pref(json!([w(10, "zone", "b")])), 0),
            ("two matching add up", pref(json!([w(10, "zone", "a"), w(5, "disk", "ssd")])), 15),
            ("weight 0 is ignored", pref(json!([w(0, "zone", "a")])), 0),
            ("an empty preference matches nothing", pref(json!([{"weight": 7, "preference": {}}])), 0),
        ];
        for (name, spec, want) in table {
            assert_eq!(score(&pod("p", spec), &n), want, "{name}");
        }
    }
}
