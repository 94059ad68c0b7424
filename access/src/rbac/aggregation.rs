//! ClusterRole aggregation, as kube's clusterrole-aggregation controller computes it
//! (`pkg/controller/clusterroleaggregation`): a ClusterRole with an `aggregationRule` gets the
//! rules of every other ClusterRole its label selectors match.
//!
//! Invariants (kube's):
//! - Selectors are taken in order; for each, the matching ClusterRoles in name order, skipping
//!   the aggregating role itself; a rule is appended unless an equal rule is already there.
//! - An empty selector (`{}`) matches every ClusterRole; a role without an aggregationRule is
//!   never rewritten.
//! - The pass is level-triggered and idempotent: running it on its own output changes nothing.
//!
//! Who runs it: kube runs this in kube-controller-manager (clusterrole-aggregation, with the
//! `escalate` verb on clusterroles). Keel's controller-manager should do the same over its
//! ClusterRole informer (call [`aggregate_all`] on every ClusterRole event and write each
//! returned role's `rules`); the apiserver may also run [`aggregate_all`] once over the default
//! policy before writing it, so `admin`/`edit`/`view` are complete from the first request.

use crate::rbac::Policy;
use crate::rbac::policy::rules_of;
use crate::rbac::rule::items;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Whether `labels` match a label selector (`matchLabels` and `matchExpressions`: `In`, `NotIn`,
/// `Exists`, `DoesNotExist`). An unknown operator matches nothing, as kube's conversion fails.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    for e in selector.match_expressions.as_deref().unwrap_or(&[]) {
        let values = e.values.as_deref().unwrap_or(&[]);
        let ok = match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Semantic equality of rules (an absent list equals an empty one).
pub fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    a.verbs == b.verbs
        && items(&a.api_groups) == items(&b.api_groups)
        && items(&a.resources) == items(&b.resources)
        && items(&a.resource_names) == items(&b.resource_names)
        && items(&a.non_resource_urls) == items(&b.non_resource_urls)
}

fn same_rules(a: &[PolicyRule], b: &[PolicyRule]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_rule(x, y))
}

/// The rules `target` should hold, or None when it has no aggregationRule. `all` is every
/// ClusterRole (any order).
pub fn aggregated_rules<'a>(target: &ClusterRole, all: impl IntoIterator<Item = &'a ClusterRole>) -> Option<Vec<PolicyRule>> {
    let selectors = target.aggregation_rule.as_ref()?.cluster_role_selectors.as_deref().unwrap_or(&[]);
    let mut roles: Vec<&ClusterRole> = all.into_iter().collect();
    roles.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let empty = BTreeMap::new();
    let mut out: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        for role in &roles {
            if role.metadata.name == target.metadata.name {
                continue;
            }
            if !selector_matches(selector, role.metadata.labels.as_ref().unwrap_or(&empty)) {
                continue;
            }
            for rule in rules_of(&role.rules) {
                if !out.iter().any(|r| same_rule(r, rule)) {
                    out.push(rule.clone());
                }
            }
        }
    }
    Some(out)
}

/// Every aggregating ClusterRole whose rules differ from what aggregation gives, with the rules
/// to write (name order). Writing them and calling again returns nothing.
pub fn aggregate_all(policy: &Policy) -> Vec<(String, Vec<PolicyRule>)> {
    let all: Vec<&ClusterRole> = policy.cluster_roles().collect();
    let mut out = Vec::new();
    for role in &all {
        if let Some(rules) = aggregated_rules(role, all.iter().copied())
            && !same_rules(&rules, rules_of(&role.rules))
        {
            out.push((role.metadata.name.clone().unwrap_or_default(), rules));
        }
    }
    out
}

/// Aggregates a list of ClusterRoles in place until nothing changes (roles that aggregate roles
/// that aggregate: `admin` ← `edit` ← `view`). Used on the default policy before it is written.
pub fn aggregate_in_place(roles: &mut [ClusterRole]) {
    // Each pass settles at least one more level; the default policy is three levels deep.
    for _ in 0..roles.len().max(1) {
        let snapshot: Vec<ClusterRole> = roles.to_vec();
        let mut changed = false;
        for role in roles.iter_mut() {
            if let Some(rules) = aggregated_rules(role, snapshot.iter())
                && !same_rules(&rules, rules_of(&role.rules))
            {
                role.rules = Some(rules);
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::rule::rule;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

    fn cr(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>, agg: Option<Vec<LabelSelector>>) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            rules: Some(rules),
            aggregation_rule: agg.map(|s| AggregationRule { cluster_role_selectors: Some(s) }),
        }
    }

    fn match_labels(k: &str, v: &str) -> LabelSelector {
        LabelSelector { match_labels: Some([(k.to_string(), v.to_string())].into()), match_expressions: None }
    }

    #[test]
    fn selectors_match_like_kube() {
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let expr = |op: &str, vals: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: op.into(),
                values: Some(vals.iter().map(|s| s.to_string()).collect()),
            }]),
        };
        assert!(selector_matches(&LabelSelector::default(), &labels));
        assert!(selector_matches(&match_labels("a", "1"), &labels));
        assert!(!selector_matches(&match_labels("a", "2"), &labels));
        assert!(selector_matches(&expr("In", &["1", "2"]), &labels));
        assert!(!selector_matches(&expr("NotIn", &["1"]), &labels));
        assert!(selector_matches(&expr("Exists", &[]), &labels));
        assert!(!selector_matches(&expr("DoesNotExist", &[]), &labels));
        assert!(!selector_matches(&expr("Bogus", &[]), &labels));
    }

    #[test]
    fn aggregation_collects_deduplicates_and_skips_itself() {
        let get_pods = rule(&["get"], &[""], &["pods"]);
        let list_pods = rule(&["list"], &[""], &["pods"]);
        let roles = [
            cr("agg", &[("x", "true")], vec![rule(&["*"], &["*"], &["*"])], Some(vec![match_labels("x", "true")])),
            cr("b", &[("x", "true")], vec![list_pods.clone(), get_pods.clone()], None),
            cr("a", &[("x", "true")], vec![get_pods.clone()], None),
            cr("c", &[("x", "false")], vec![rule(&["delete"], &[""], &["pods"])], None),
        ];
        let got = aggregated_rules(&roles[0], roles.iter()).unwrap();
        // a before b (name order), get_pods once, agg's own rules and c's not included.
        assert_eq!(got, vec![get_pods, list_pods]);
        assert_eq!(aggregated_rules(&roles[1], roles.iter()), None);
    }

    #[test]
    fn aggregate_all_is_idempotent() {
        let mut policy = Policy::new();
        policy.upsert_cluster_role(cr("view", &[], vec![], Some(vec![match_labels("agg-view", "true")])));
        policy.upsert_cluster_role(cr("pods", &[("agg-view", "true")], vec![rule(&["get"], &[""], &["pods"])], None));
        let changes = aggregate_all(&policy);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, "view");
        let mut view = policy.cluster_role("view").unwrap().clone();
        view.rules = Some(changes[0].1.clone());
        policy.upsert_cluster_role(view);
        assert!(aggregate_all(&policy).is_empty());
        // A new labelled role updates the aggregate on the next pass.
        policy.upsert_cluster_role(cr("svc", &[("agg-view", "true")], vec![rule(&["get"], &[""], &["services"])], None));
        let changes = aggregate_all(&policy);
        assert_eq!(changes[0].1.len(), 2);
    }
}
