//! Cases from kube's `rbac_test.go` (TestRuleMatches) and `policy_comparator_test.go` (Covers).

use super::*;
use crate::user::UserInfo;

fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
    Attributes::resource(UserInfo::default(), verb, group, resource, "ns", name).with_subresource(sub)
}

fn url(verb: &str, path: &str) -> Attributes {
    Attributes::non_resource(UserInfo::default(), verb, path)
}

fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    rule(verbs, groups, resources)
}

fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule { verbs: verbs.iter().map(|s| s.to_string()).collect(), non_resource_urls: list(urls), ..Default::default() }
}

fn named(mut p: PolicyRule, names: &[&str]) -> PolicyRule {
    p.resource_names = list(names);
    p
}

#[test]
fn rule_matches_like_kube() {
    type Case = (&'static str, PolicyRule, Vec<(Attributes, bool)>);
    let cases: Vec<Case> = vec![
        (
            "star verb, exact match other",
            r(&["*"], &["group1"], &["resource1"]),
            vec![
                (res("verb1", "group1", "resource1", "", ""), true),
                (res("verb1", "group2", "resource1", "", ""), false),
                (res("verb1", "group1", "resource2", "", ""), false),
                (res("verb2", "group1", "resource1", "", ""), true),
            ],
        ),
        (
            "star group, exact match other",
            r(&["verb1"], &["*"], &["resource1"]),
            vec![
                (res("verb1", "group1", "resource1", "", ""), true),
                (res("verb1", "group2", "resource1", "", ""), true),
                (res("verb1", "group1", "resource2", "", ""), false),
                (res("verb2", "group1", "resource1", "", ""), false),
            ],
        ),
        (
            "star resource, exact match other",
            r(&["verb1"], &["group1"], &["*"]),
            vec![
                (res("verb1", "group1", "resource1", "", ""), true),
                (res("verb1", "group2", "resource1", "", ""), false),
                (res("verb1", "group1", "resource2", "", ""), true),
                (res("verb2", "group1", "resource1", "", ""), false),
            ],
        ),
        (
            "tuple expansion",
            r(&["verb1", "verb2"], &["group1", "group2"], &["resource1", "resource2"]),
            vec![
                (res("verb1", "group1", "resource1", "", ""), true),
                (res("verb1", "group2", "resource2", "", ""), true),
                (res("verb2", "group1", "resource2", "", ""), true),
                (res("verb2", "group2", "resource1", "", ""), true),
            ],
        ),
        (
            "subresource expansion",
            r(&["*"], &["*"], &["resource1/subresource1"]),
            vec![
                (res("verb1", "group1", "resource1", "subresource1", ""), true),
                (res("verb1", "group2", "resource1", "subresource2", ""), false),
                (res("verb1", "group1", "resource2", "subresource1", ""), false),
                (res("verb1", "group1", "resource1", "", ""), false),
            ],
        ),
        (
            "star subresource of any resource",
            r(&["get"], &["*"], &["*/scale"]),
            vec![
                (res("get", "apps", "deployments", "scale", "web"), true),
                (res("get", "apps", "deployments", "status", "web"), false),
                (res("get", "apps", "deployments", "", "web"), false),
                (res("get", "apps", "deployments", "xscale", "web"), false),
            ],
        ),
        (
            "pods/log is its own resource",
            r(&["get"], &[""], &["pods/log"]),
            vec![(res("get", "", "pods", "log", "p"), true), (res("get", "", "pods", "", "p"), false)],
        ),
        (
            "resource names",
            named(r(&["get", "update"], &[""], &["configmaps"]), &["a", "b"]),
            vec![
                (res("get", "", "configmaps", "", "a"), true),
                (res("update", "", "configmaps", "", "b"), true),
                (res("get", "", "configmaps", "", "c"), false),
                (res("get", "", "configmaps", "", ""), false),
            ],
        ),
        (
            "star nonresource",
            urls(&["verb1"], &["*"]),
            vec![(url("verb1", "/foo"), true), (url("verb1", "/foo/bar/one"), true), (url("verb2", "/foo"), false)],
        ),
        (
            "star nonresource subpath",
            urls(&["verb1"], &["/foo/*"]),
            vec![
                (url("verb1", "/foo"), false),
                (url("verb1", "/foo/bar"), true),
                (url("verb1", "/foo/baz/one"), true),
                (url("verb1", "/bar/foo"), false),
            ],
        ),
        (
            "exact nonresource",
            urls(&["verb1"], &["/foo/bar"]),
            vec![(url("verb1", "/foo"), false), (url("verb1", "/foo/bar"), true), (url("verb1", "/foo/bar/one"), false)],
        ),
        (
            "resource rule never matches a non-resource request",
            r(&["*"], &["*"], &["*"]),
            vec![(url("get", "/healthz"), false), (res("get", "", "pods", "", ""), true)],
        ),
        ("verbs are case-sensitive", r(&["get"], &[""], &["pods"]), vec![(res("GET", "", "pods", "", ""), false)]),
    ];
    for (name, rule, requests) in cases {
        for (attrs, want) in requests {
            assert_eq!(rule_allows(&attrs, &rule), want, "{name}: {attrs:?}");
        }
    }
}

/// Each case: owner rules, servant rules, expected covered, expected uncovered (as a set).
#[test]
fn covers_like_kube() {
    let g = |groups: &[&str], verbs: &[&str], resources: &[&str]| r(verbs, groups, resources);
    type Case = (&'static str, Vec<PolicyRule>, Vec<PolicyRule>, bool, Vec<PolicyRule>);
    let cases: Vec<Case> = vec![
        ("ExactMatch", vec![g(&["v1"], &["get"], &["builds"])], vec![g(&["v1"], &["get"], &["builds"])], true, vec![]),
        ("SubresourceWildcard", vec![g(&["v1"], &["get"], &["*/scale"])], vec![g(&["v1"], &["get"], &["foo/scale"])], true, vec![]),
        (
            "MultipleRulesCoveringSingleRule",
            vec![
                g(&["v1"], &["delete"], &["deployments"]),
                g(&["v1"], &["delete"], &["builds"]),
                g(&["v1"], &["update"], &["builds", "deployments"]),
            ],
            vec![g(&["v1"], &["delete", "update"], &["builds", "deployments"])],
            true,
            vec![],
        ),
        (
            "MultipleAPIGroupsCoveringSingleRule",
            vec![
                g(&["group1"], &["delete"], &["deployments"]),
                g(&["group1"], &["delete"], &["builds"]),
                g(&["group1"], &["update"], &["builds", "deployments"]),
                g(&["group2"], &["delete"], &["deployments"]),
                g(&["group2"], &["delete"], &["builds"]),
                g(&["group2"], &["update"], &["builds", "deployments"]),
            ],
            vec![g(&["group1", "group2"], &["delete", "update"], &["builds", "deployments"])],
            true,
            vec![],
        ),
        (
            "SingleAPIGroupsCoveringMultiple",
            vec![g(&["group1", "group2"], &["delete", "update"], &["builds", "deployments"])],
            vec![
                g(&["group1"], &["delete"], &["deployments"]),
                g(&["group1"], &["update"], &["builds", "deployments"]),
                g(&["group2"], &["delete"], &["builds"]),
            ],
            true,
            vec![],
        ),
        (
            "MultipleRulesMissingSingleVerbResourceCombination",
            vec![g(&["v1"], &["delete", "update"], &["builds", "deployments"]), g(&["v1"], &["delete"], &["pods"])],
            vec![g(&["v1"], &["delete", "update"], &["builds", "deployments", "pods"])],
            false,
            vec![g(&["v1"], &["update"], &["pods"])],
        ),
        (
            "APIGroupStarCoveringMultiple",
            vec![g(&["*"], &["get"], &["roles"])],
            vec![g(&["group1", "group2"], &["get"], &["roles"])],
            true,
            vec![],
        ),
        (
            "EnumerationNotCoveringAPIGroupStar",
            vec![g(&["dummy-group"], &["get"], &["roles"])],
            vec![g(&["*"], &["get"], &["roles"])],
            false,
            vec![g(&["*"], &["get"], &["roles"])],
        ),
        ("APIGroupStarCoveringStar", vec![g(&["*"], &["get"], &["roles"])], vec![g(&["*"], &["get"], &["roles"])], true, vec![]),
        ("VerbStarCoveringMultiple", vec![g(&["v1"], &["*"], &["roles"])], vec![g(&["v1"], &["watch", "list"], &["roles"])], true, vec![]),
        (
            "EnumerationNotCoveringVerbStar",
            vec![g(&["v1"], &["get", "list", "watch", "create", "update", "delete", "exec"], &["roles"])],
            vec![g(&["v1"], &["*"], &["roles"])],
            false,
            vec![g(&["v1"], &["*"], &["roles"])],
        ),
        ("VerbStarCoveringStar", vec![g(&["v1"], &["*"], &["roles"])], vec![g(&["v1"], &["*"], &["roles"])], true, vec![]),
        (
            "ResourceStarCoveringMultiple",
            vec![g(&["v1"], &["get"], &["*"])],
            vec![g(&["v1"], &["get"], &["resourcegroup:deployments"])],
            true,
            vec![],
        ),
        (
            "EnumerationNotCoveringResourceStar",
            vec![g(&["v1"], &["get"], &["roles", "resourcegroup:deployments"])],
            vec![g(&["v1"], &["get"], &["*"])],
            false,
            vec![g(&["v1"], &["get"], &["*"])],
        ),
        ("ResourceStarCoveringStar", vec![g(&["v1"], &["get"], &["*"])], vec![g(&["v1"], &["get"], &["*"])], true, vec![]),
        (
            "ResourceNameEmptyCoveringMultiple",
            vec![named(g(&["v1"], &["get"], &["pods"]), &[])],
            vec![named(g(&["v1"], &["get"], &["pods"]), &["foo", "bar"])],
            true,
            vec![],
        ),
        (
            "EnumerationNotCoveringResourceNameEmpty",
            vec![named(g(&["v1"], &["get"], &["pods"]), &["foo", "bar"])],
            vec![named(g(&["v1"], &["get"], &["pods"]), &[])],
            false,
            vec![g(&["v1"], &["get"], &["pods"])],
        ),
        ("NonResourceURLs", vec![urls(&["*"], &["/apis"])], vec![urls(&["*"], &["/apis"])], true, vec![]),
        ("NonResourceURLsStar", vec![urls(&["*"], &["*"])], vec![urls(&["*"], &["/apis", "/apis/v1", "/"])], true, vec![]),
        (
            "NonResourceURLsStarAfterPrefixDoesntCover",
            vec![urls(&["*"], &["/apis/*"])],
            vec![urls(&["get"], &["/apis", "/apis/v1"])],
            false,
            vec![urls(&["get"], &["/apis"])],
        ),
        (
            "NonResourceURLsStarAfterPrefix",
            vec![urls(&["*"], &["/apis/*"])],
            vec![urls(&["get"], &["/apis/v1/foo", "/apis/v1"])],
            true,
            vec![],
        ),
        (
            "NonResourceURLsWithOtherFields",
            vec![PolicyRule { non_resource_urls: list(&["/apis"]), ..g(&["v1"], &["get"], &["builds"]) }],
            vec![PolicyRule { non_resource_urls: list(&["/apis"]), ..g(&["v1"], &["get"], &["builds"]) }],
            true,
            vec![],
        ),
        (
            "NonResourceURLsWithOtherFieldsFailure",
            vec![g(&["v1"], &["get"], &["builds"])],
            vec![PolicyRule { non_resource_urls: list(&["/apis"]), ..g(&["v1"], &["get"], &["builds"]) }],
            false,
            vec![urls(&["get"], &["/apis"])],
        ),
    ];
    for (name, owner, servant, want_covered, want_uncovered) in cases {
        let (covered, uncovered) = covers(&owner, &servant);
        assert_eq!(covered, want_covered, "{name}");
        assert_eq!(uncovered.len(), want_uncovered.len(), "{name}: {uncovered:?}");
        for w in &want_uncovered {
            assert!(uncovered.contains(w), "{name}: missing {w:?} in {uncovered:?}");
        }
    }
}

#[test]
fn non_resource_url_covers_like_kube() {
    let cases = [
        ("*", "", true),
        ("*", "/", true),
        ("*", "/api", true),
        ("/*", "", false),
        ("/*", "/", true),
        ("/*", "/foo", true),
        ("/api", "/api", true),
        ("/apis", "/api", false),
        ("/api/v1", "/api", false),
        ("/api/v1", "/api/v1", true),
        ("/api/*", "/api/v1", true),
        ("/api/*", "/api", false),
        ("/api/*/*", "/api/v1", false),
        ("/*/v1/*", "/api/v1", false),
    ];
    for (owner, requested, want) in cases {
        assert_eq!(non_resource_url_covers(owner, requested), want, "{owner} {requested}");
    }
}

#[test]
fn compact_merges_simple_rules_and_strings_match_kube() {
    let rules = [r(&["get"], &[""], &["pods"]), r(&["list"], &[""], &["pods"]), urls(&["get"], &["/healthz"])];
    let compact = compact_rules(&rules);
    assert_eq!(compact.len(), 2);
    assert_eq!(compact_string(&compact[0]), r#"{NonResourceURLs:["/healthz"], Verbs:["get"]}"#);
    assert_eq!(compact_string(&compact[1]), r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}"#);
    let n = named(r(&["get"], &["apps"], &["deployments"]), &["web"]);
    assert_eq!(compact_string(&n), r#"{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["web"], Verbs:["get"]}"#);
}
