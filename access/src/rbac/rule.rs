//! One RBAC rule against one request, and rules against rules: kube's `RuleAllows`
//! (`plugin/pkg/auth/authorizer/rbac`), `Covers`/`BreakdownRule`
//! (`component-helpers/auth/rbac/validation`), `CompactRules` and `CompactString`.
//!
//! Invariants, as Kubernetes: `*` matches any verb, group, resource or URL; `*/sub` matches that
//! subresource of any resource; a rule with resourceNames matches only requests naming one of
//! them (so never a list or create); a non-resource URL ending in `*` matches by prefix.

use crate::attributes::Attributes;
use crate::gostr::quote_list;
use k8s_openapi::api::rbac::v1::PolicyRule;
use std::collections::BTreeMap;

const ALL: &str = "*";

/// The slice behind an optional list field.
pub(crate) fn items(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

/// kube's `VerbMatches`.
pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

/// kube's `APIGroupMatches`.
pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    items(&rule.api_groups).iter().any(|g| g == ALL || g == group)
}

/// kube's `ResourceMatches`: `combined` is `resource` or `resource/subresource`.
pub fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    items(&rule.resources).iter().any(|r| {
        r == ALL
            || r == combined
            || (!subresource.is_empty() && r.len() == subresource.len() + 2 && r.starts_with("*/") && r.ends_with(subresource))
    })
}

/// kube's `ResourceNameMatches`: an empty list matches every name (and no name).
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = items(&rule.resource_names);
    names.is_empty() || has(names, name)
}

/// kube's `NonResourceURLMatches`.
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    items(&rule.non_resource_urls).iter().any(|u| u == ALL || u == path || url_prefix_matches(u, path))
}

fn url_prefix_matches(rule_url: &str, path: &str) -> bool {
    rule_url.ends_with('*') && path.starts_with(rule_url.trim_end_matches('*'))
}

/// kube's `RuleAllows`: whether `rule` allows the request.
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if attrs.resource_request {
        let combined_owned;
        let combined = if attrs.subresource.is_empty() {
            attrs.resource.as_str()
        } else {
            combined_owned = format!("{}/{}", attrs.resource, attrs.subresource);
            combined_owned.as_str()
        };
        verb_matches(rule, &attrs.verb)
            && api_group_matches(rule, &attrs.api_group)
            && resource_matches(rule, combined, &attrs.subresource)
            && resource_name_matches(rule, &attrs.name)
    } else {
        verb_matches(rule, &attrs.verb) && non_resource_url_matches(rule, &attrs.path)
    }
}

/// kube's `RulesAllow`.
pub fn rules_allow(attrs: &Attributes, rules: &[PolicyRule]) -> bool {
    rules.iter().any(|r| rule_allows(attrs, r))
}

fn list(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

/// kube's `BreakdownRule`: one rule per (group, resource, verb[, name]) and per (URL, verb).
pub fn breakdown_rule(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in items(&rule.api_groups) {
        for resource in items(&rule.resources) {
            for verb in &rule.verbs {
                let names = items(&rule.resource_names);
                if names.is_empty() {
                    out.push(PolicyRule {
                        api_groups: list(&[group]),
                        resources: list(&[resource]),
                        verbs: vec![verb.clone()],
                        ..Default::default()
                    });
                } else {
                    for name in names {
                        out.push(PolicyRule {
                            api_groups: list(&[group]),
                            resources: list(&[resource]),
                            verbs: vec![verb.clone()],
                            resource_names: list(&[name]),
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    for url in items(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule { non_resource_urls: list(&[url]), verbs: vec![verb.clone()], ..Default::default() });
        }
    }
    out
}

fn has_all(set: &[String], contains: &[String]) -> bool {
    contains.iter().all(|c| has(set, c))
}

fn resource_covers_all(set: &[String], covers: &[String]) -> bool {
    if has(set, ALL) || has_all(set, covers) {
        return true;
    }
    covers.iter().all(|path| has(set, path) || path.split_once('/').is_some_and(|(_, sub)| has(set, &format!("*/{sub}"))))
}

fn non_resource_urls_cover_all(set: &[String], covers: &[String]) -> bool {
    covers.iter().all(|path| set.iter().any(|owner| non_resource_url_covers(owner, path)))
}

/// kube's `nonResourceURLCovers`.
pub fn non_resource_url_covers(owner: &str, sub: &str) -> bool {
    owner == sub || url_prefix_matches(owner, sub)
}

/// kube's `ruleCovers`: `owner` (any shape) covers `sub` (one verb/resource/name at most).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(items(&owner.api_groups), ALL) || has_all(items(&owner.api_groups), items(&sub.api_groups));
    let resources = resource_covers_all(items(&owner.resources), items(&sub.resources));
    let urls = non_resource_urls_cover_all(items(&owner.non_resource_urls), items(&sub.non_resource_urls));
    let owner_names = items(&owner.resource_names);
    let sub_names = items(&sub.resource_names);
    let names = if sub_names.is_empty() { owner_names.is_empty() } else { owner_names.is_empty() || has_all(owner_names, sub_names) };
    verbs && groups && resources && names && urls
}

/// kube's `Covers`: whether `owner` rules allow everything `servant` rules do, and the broken-down
/// servant rules that are not covered.
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> =
        servant.iter().flat_map(breakdown_rule).filter(|sub| !owner.iter().any(|o| rule_covers(o, sub))).collect();
    (uncovered.is_empty(), uncovered)
}

/// kube's `CompactRules`: rules with one group, one resource and only verbs are merged per
/// (group, resource); everything else is kept as is. Merged rules come after the others, in
/// (group, resource) order.
pub fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let mut simple: BTreeMap<(String, String), PolicyRule> = BTreeMap::new();
    for rule in rules {
        let groups = items(&rule.api_groups);
        let resources = items(&rule.resources);
        let is_simple = items(&rule.resource_names).is_empty()
            && items(&rule.non_resource_urls).is_empty()
            && groups.len() == 1
            && resources.len() == 1;
        if is_simple {
            simple
                .entry((groups[0].clone(), resources[0].clone()))
                .and_modify(|r| r.verbs.extend(rule.verbs.iter().cloned()))
                .or_insert_with(|| rule.clone());
        } else {
            out.push(rule.clone());
        }
    }
    out.extend(simple.into_values());
    out
}

/// kube's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    if !items(&rule.api_groups).is_empty() {
        parts.push(format!("APIGroups:{}", quote_list(items(&rule.api_groups))));
    }
    if !items(&rule.resources).is_empty() {
        parts.push(format!("Resources:{}", quote_list(items(&rule.resources))));
    }
    if !items(&rule.non_resource_urls).is_empty() {
        parts.push(format!("NonResourceURLs:{}", quote_list(items(&rule.non_resource_urls))));
    }
    if !items(&rule.resource_names).is_empty() {
        parts.push(format!("ResourceNames:{}", quote_list(items(&rule.resource_names))));
    }
    if !rule.verbs.is_empty() {
        parts.push(format!("Verbs:{}", quote_list(&rule.verbs)));
    }
    format!("{{{}}}", parts.join(", "))
}

/// A rule from string lists (tests and the bootstrap policy build rules this way).
pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: list(groups),
        resources: list(resources),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
