//! Cases from kube's `rbac_test.go` (TestAuthorizer) and `validation/rule_test.go`
//! (TestAppliesTo), and a check that the subject index answers as kube's full scan.

use super::*;
use crate::attributes::Attributes;
use crate::authz::{Authorizer, Decision};
use crate::rbac::RbacAuthorizer;
use crate::rbac::rule::rule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn subj(s: &str) -> Subject {
    let (kind, name) = s.split_once(':').unwrap();
    let (namespace, name) = match (kind, name.split_once('/')) {
        ("ServiceAccount", Some((ns, n))) => (Some(ns.to_string()), n.to_string()),
        _ => (None, name.to_string()),
    };
    Subject { kind: kind.into(), name, namespace, api_group: None }
}

fn cr(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, rules: Some(rules), aggregation_rule: None }
}

fn crb(name: &str, role: &str, subjects: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "ClusterRole".into(), name: role.into() },
        subjects: Some(subjects.iter().map(|s| subj(s)).collect()),
    }
}

fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: &[&str]) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: kind.into(), name: role.into() },
        subjects: Some(subjects.iter().map(|s| subj(s)).collect()),
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo::new(name, groups)
}

fn res(u: UserInfo, verb: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
    Attributes::resource(u, verb, "", resource, ns, "").with_subresource(sub)
}

fn authorizer(policy: Policy) -> RbacAuthorizer {
    RbacAuthorizer::new(SharedPolicy::new(policy))
}

#[test]
fn authorizer_cases_from_kube() {
    let all = || PolicyRule { non_resource_urls: Some(vec!["*".into()]), ..rule(&["*"], &["*"], &["*"]) };
    let a = authorizer(Policy::from_objects(
        [],
        [cr("admin", vec![all()])],
        [rb("ns1", "b", "ClusterRole", "admin", &["User:admin", "Group:admins"])],
        [],
    ));
    for ok in [
        res(user("admin", &[]), "get", "Pods", "", "ns1"),
        res(user("admin", &[]), "watch", "Pods", "", "ns1"),
        res(user("admin", &["group1"]), "watch", "Foobar", "", "ns1"),
        res(user("joe", &["admins"]), "watch", "Foobar", "", "ns1"),
        res(user("joe", &["group1", "admins"]), "watch", "Foobar", "", "ns1"),
    ] {
        assert!(a.authorize(&ok).allowed(), "{ok:?}");
    }
    for no in [
        res(user("admin", &[]), "GET", "Pods", "", "ns2"),
        res(user("admin", &[]), "GET", "Nodes", "", ""),
        res(user("admin", &["admins"]), "GET", "Pods", "", "ns2"),
        res(user("admin", &["admins"]), "GET", "Nodes", "", ""),
    ] {
        assert!(!a.authorize(&no).allowed(), "{no:?}");
    }

    let url = |verbs: &[&str], u: &str| PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        non_resource_urls: Some(vec![u.into()]),
        ..Default::default()
    };
    let a = authorizer(Policy::from_objects(
        [],
        [cr("getter", vec![url(&["get"], "/apis")]), cr("any", vec![url(&["*"], "/apis")]), cr("prefix", vec![url(&["get"], "/apis/*")])],
        [],
        [
            crb("1", "getter", &["User:foo", "Group:bar"]),
            crb("2", "any", &["User:admin", "Group:admin"]),
            crb("3", "prefix", &["User:prefixed", "Group:prefixed"]),
        ],
    ));
    let nr = |u: UserInfo, verb: &str, path: &str| Attributes::non_resource(u, verb, path);
    for ok in [
        nr(user("foo", &[]), "get", "/apis"),
        nr(user("", &["bar"]), "get", "/apis"),
        nr(user("admin", &[]), "watch", "/apis"),
        nr(user("", &["admin"]), "watch", "/apis"),
        nr(user("prefixed", &[]), "get", "/apis/v1"),
        nr(user("", &["prefixed"]), "get", "/apis/v1/foobar"),
    ] {
        assert!(a.authorize(&ok).allowed(), "{ok:?}");
    }
    for no in [
        nr(user("foo", &[]), "watch", "/apis"),
        nr(user("", &["bar"]), "watch", "/apis"),
        nr(user("foo", &[]), "get", "/api/v1"),
        nr(user("admin", &[]), "get", "/api/v1"),
        nr(user("prefixed", &[]), "get", "/api/v1"),
    ] {
        assert!(!a.authorize(&no).allowed(), "{no:?}");
    }

    let a = authorizer(Policy::from_objects(
        [],
        [cr("admin", vec![rule(&["*"], &["*"], &["pods"])])],
        [rb("ns1", "b", "ClusterRole", "admin", &["User:admin"])],
        [],
    ));
    assert!(a.authorize(&res(user("admin", &[]), "get", "pods", "", "ns1")).allowed());
    assert!(!a.authorize(&res(user("admin", &[]), "get", "pods", "status", "ns1")).allowed());
    let a = authorizer(Policy::from_objects(
        [],
        [cr("admin", vec![rule(&["*"], &["*"], &["pods/status"])])],
        [rb("ns1", "b", "ClusterRole", "admin", &["User:admin"])],
        [],
    ));
    assert!(a.authorize(&res(user("admin", &[]), "get", "pods", "status", "ns1")).allowed());
    assert!(!a.authorize(&res(user("admin", &[]), "get", "pods", "", "ns1")).allowed());
}

#[test]
fn applies_to_like_kube() {
    // (subjects, user, namespace, applies, index of the subject that applied)
    let cases: Vec<(Vec<&str>, UserInfo, &str, Option<usize>)> = vec![
        (vec!["User:foobar"], user("foobar", &[]), "", Some(0)),
        (vec!["User:barfoo", "User:foobar"], user("foobar", &[]), "", Some(1)),
        (vec!["User:foobar", "Group:foobar"], user("foobar", &[]), "", Some(0)),
        (vec!["User:foobar"], user("bar", &["foobar"]), "", None),
        (vec!["Group:foobar"], user("bar", &["foobar"]), "", Some(0)),
        (vec!["ServiceAccount:kube-system/default"], user("system:serviceaccount:kube-system:default", &[]), "", Some(0)),
        // The binding's namespace fills in a namespace-less ServiceAccount subject.
        (vec!["ServiceAccount:default"], user("system:serviceaccount:kube-system:default", &[]), "kube-system", Some(0)),
        (vec!["ServiceAccount:default"], user("system:serviceaccount:kube-system:default", &[]), "", None),
        (vec!["ServiceAccount:other/default"], user("system:serviceaccount:kube-system:default", &[]), "kube-system", None),
        (vec!["Group:system:serviceaccounts:kube-system"], user("x", &["system:serviceaccounts:kube-system"]), "", Some(0)),
        (vec!["Unknown:foobar"], user("foobar", &["foobar"]), "", None),
    ];
    for (subjects, u, ns, want) in cases {
        let s: Vec<Subject> = subjects.iter().map(|s| subj(s)).collect();
        let got = applies_to(&u, &s, ns).map(|found| s.iter().position(|x| std::ptr::eq(x, found)).unwrap());
        assert_eq!(got, want, "{subjects:?} {u:?} {ns}");
    }
}

#[test]
fn allowed_reason_names_the_binding() {
    let a = authorizer(Policy::from_objects(
        [Role {
            metadata: ObjectMeta { name: Some("r".into()), namespace: Some("dev".into()), ..Default::default() },
            rules: Some(vec![rule(&["get"], &[""], &["pods"])]),
        }],
        [cr("c", vec![rule(&["list"], &[""], &["pods"])])],
        [rb("dev", "jane-r", "Role", "r", &["User:jane"]), rb("dev", "sa", "ClusterRole", "c", &["ServiceAccount:default"])],
        [],
    ));
    let v = a.authorize(&res(user("jane", &[]), "get", "pods", "", "dev"));
    assert_eq!(v.reason, r#"RBAC: allowed by RoleBinding "jane-r/dev" of Role "r" to User "jane""#);
    let v = a.authorize(&res(user("system:serviceaccount:dev:default", &[]), "list", "pods", "", "dev"));
    assert_eq!(v.reason, r#"RBAC: allowed by RoleBinding "sa/dev" of ClusterRole "c" to ServiceAccount "default/dev""#);
}

#[test]
fn missing_roles_are_reasons_not_grants() {
    let a =
        authorizer(Policy::from_objects([], [], [rb("dev", "b", "Role", "gone", &["User:jane"])], [crb("c", "gone-too", &["User:jane"])]));
    let v = a.authorize(&res(user("jane", &[]), "get", "pods", "", "dev"));
    assert_eq!(v.decision, Decision::NoOpinion);
    assert_eq!(
        v.reason,
        r#"RBAC: [clusterrole.rbac.authorization.k8s.io "gone-too" not found, role.rbac.authorization.k8s.io "gone" not found]"#
    );
}

#[test]
fn updates_and_deletes_reindex() {
    let p =
        SharedPolicy::new(Policy::from_objects([], [cr("c", vec![rule(&["get"], &[""], &["pods"])])], [], [crb("b", "c", &["User:jane"])]));
    let a = RbacAuthorizer::new(p.clone());
    let q = res(user("jane", &[]), "get", "pods", "", "dev");
    assert!(a.authorize(&q).allowed());
    p.update(|p| p.upsert_cluster_role_binding(crb("b", "c", &["User:bob"])));
    assert!(!a.authorize(&q).allowed());
    assert!(a.authorize(&res(user("bob", &[]), "get", "pods", "", "dev")).allowed());
    p.update(|p| p.remove_cluster_role_binding("b"));
    assert!(!a.authorize(&res(user("bob", &[]), "get", "pods", "", "dev")).allowed());
    p.update(|p| {
        p.upsert_role_binding(rb("dev", "x", "ClusterRole", "c", &["Group:devs"]));
        p.remove_role_binding("dev", "x");
    });
    assert!(!a.authorize(&res(user("bob", &["devs"]), "get", "pods", "", "dev")).allowed());
}

/// A seeded generator (no dependency needed for a test table).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn index_answers_as_the_full_scan() {
    let mut g = Lcg(42);
    let users = ["u0", "u1", "u2", "system:serviceaccount:ns0:sa", "system:serviceaccount:ns1:sa"];
    let groups = ["g0", "g1", "g2"];
    let subject = |g: &mut Lcg| match g.next(4) {
        0 => format!("User:{}", users[g.next(3)]),
        1 => format!("Group:{}", groups[g.next(3)]),
        2 => format!("ServiceAccount:ns{}/sa", g.next(2)),
        _ => "ServiceAccount:sa".to_string(),
    };
    let roles: Vec<ClusterRole> = (0..6).map(|i| cr(&format!("r{i}"), vec![rule(&["get"], &[""], &[&format!("res{i}")])])).collect();
    let mut policy = Policy::from_objects([], roles, [], []);
    for i in 0..200 {
        let subjects: Vec<String> = (0..1 + g.next(3)).map(|_| subject(&mut g)).collect();
        let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
        let role = format!("r{}", g.next(7)); // r6 does not exist
        if g.next(2) == 0 {
            policy.upsert_cluster_role_binding(crb(&format!("c{}", g.next(60)), &role, &refs));
        } else {
            policy.upsert_role_binding(rb(&format!("ns{}", g.next(2)), &format!("b{i}"), "ClusterRole", &role, &refs));
        }
        if i % 7 == 0 {
            policy.remove_role_binding("ns0", &format!("b{}", g.next(i + 1)));
        }
    }
    for u in users {
        for gs in [&[][..], &["g0"][..], &["g1", "g2"][..]] {
            for ns in ["", "ns0", "ns1"] {
                let usr = user(u, gs);
                assert_eq!(policy.rules_for(&usr, ns).0, policy.rules_for_by_scan(&usr, ns), "{u} {gs:?} {ns}");
            }
        }
    }
}
