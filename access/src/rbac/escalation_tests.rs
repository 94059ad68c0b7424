use super::*;
use crate::authz::{Chain, Mode};
use crate::node::SharedGraph;
use crate::rbac::Policy;
use crate::rbac::rule::rule;
use k8s_openapi::api::rbac::v1::{AggregationRule, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: ns.map(Into::into), ..Default::default() }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: meta(None, name), rules: Some(rules), aggregation_rule: None }
}

fn role(ns: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role { metadata: meta(Some(ns), name), rules: Some(rules) }
}

fn user_subject(name: &str) -> Subject {
    Subject { kind: "User".into(), name: name.into(), api_group: Some(GROUP.into()), namespace: None }
}

fn rb(ns: &str, name: &str, kind: &str, role: &str, user: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(ns), name),
        role_ref: RoleRef { api_group: GROUP.into(), kind: kind.into(), name: role.into() },
        subjects: Some(vec![user_subject(user)]),
    }
}

fn crb(name: &str, role: &str, user: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name),
        role_ref: RoleRef { api_group: GROUP.into(), kind: "ClusterRole".into(), name: role.into() },
        subjects: Some(vec![user_subject(user)]),
    }
}

const WRITER: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];

/// jane may manage roles and bindings in dev and read pods there; she holds nothing else.
fn setup() -> (SharedPolicy, Chain) {
    let policy = SharedPolicy::new(Policy::from_objects(
        [role("dev", "pod-reader", vec![rule(&["get", "list"], &[""], &["pods"])])],
        [
            // Explicit verbs: `*` would include escalate and bind.
            cluster_role("rbac-writer", vec![rule(WRITER, &[GROUP], &["roles", "rolebindings"])]),
            cluster_role("pod-admin", vec![rule(&["*"], &[""], &["pods"])]),
            cluster_role("escalator", vec![rule(&["escalate"], &[GROUP], &["roles"])]),
            cluster_role(
                "binder",
                vec![PolicyRule { resource_names: Some(vec!["pod-admin".into()]), ..rule(&["bind"], &[GROUP], &["clusterroles"]) }],
            ),
        ],
        [rb("dev", "jane-rbac", "ClusterRole", "rbac-writer", "jane"), rb("dev", "jane-read", "Role", "pod-reader", "jane")],
        [],
    ));
    let chain = Chain::new(&[Mode::Rbac], &policy, &SharedGraph::default());
    (policy, chain)
}

fn write(user: &UserInfo, verb: &str, resource: &str, ns: &str) -> Attributes {
    Attributes::resource(user.clone(), verb, GROUP, resource, ns, "")
}

fn jane() -> UserInfo {
    UserInfo::new("jane", &["system:authenticated"])
}

#[test]
fn a_role_within_held_rules_is_allowed() {
    let (policy, chain) = setup();
    let r = role("dev", "mine", vec![rule(&["get"], &[""], &["pods"])]);
    assert!(check_role(&chain, &policy, &write(&jane(), "create", "roles", "dev"), &r, None).is_ok());
}

#[test]
fn a_role_granting_more_is_refused_with_kubes_message() {
    let (policy, chain) = setup();
    let r = role("dev", "more", vec![rule(&["get", "delete"], &[""], &["pods"]), rule(&["create"], &["apps"], &["deployments"])]);
    let err = check_role(&chain, &policy, &write(&jane(), "create", "roles", "dev"), &r, None).unwrap_err();
    assert_eq!(err.code(), 403);
    assert_eq!(
        err.to_string(),
        "roles.rbac.authorization.k8s.io \"more\" is forbidden: user \"jane\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n\
         {APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"create\"]}"
    );
}

#[test]
fn rules_held_only_in_another_namespace_do_not_count() {
    let (policy, chain) = setup();
    let r = role("prod", "copy", vec![rule(&["get"], &[""], &["pods"])]);
    // jane can write roles only in dev, but escalation is checked in the request's namespace.
    assert!(check_role(&chain, &policy, &write(&jane(), "create", "roles", "prod"), &r, None).is_err());
}

#[test]
fn star_verbs_on_roles_include_escalate() {
    let (policy, chain) = setup();
    policy.update(|p| {
        p.upsert_cluster_role(cluster_role("rbac-star", vec![rule(&["*"], &[GROUP], &["roles"])]));
        p.upsert_role_binding(rb("dev", "jane-star", "ClusterRole", "rbac-star", "jane"));
    });
    let r = role("dev", "big", vec![rule(&["*"], &["*"], &["*"])]);
    assert!(check_role(&chain, &policy, &write(&jane(), "create", "roles", "dev"), &r, None).is_ok());
}

#[test]
fn escalate_verb_skips_the_check() {
    let (policy, chain) = setup();
    policy.update(|p| p.upsert_role_binding(rb("dev", "jane-esc", "ClusterRole", "escalator", "jane")));
    let r = role("dev", "big", vec![rule(&["*"], &["*"], &["*"])]);
    assert!(check_role(&chain, &policy, &write(&jane(), "create", "roles", "dev"), &r, None).is_ok());
}

#[test]
fn system_masters_skip_every_check() {
    let (policy, chain) = setup();
    let admin = UserInfo::new("admin", &[SYSTEM_MASTERS]);
    let r = cluster_role("big", vec![rule(&["*"], &["*"], &["*"])]);
    assert!(check_cluster_role(&chain, &policy, &write(&admin, "create", "clusterroles", ""), &r, None).is_ok());
    let b = crb("all", "cluster-admin", "jane");
    assert!(check_cluster_role_binding(&chain, &policy, &write(&admin, "create", "clusterrolebindings", ""), &b, None).is_ok());
}

#[test]
fn binding_a_role_one_holds_is_allowed_and_more_is_refused() {
    let (policy, chain) = setup();
    let ok = rb("dev", "bob-read", "Role", "pod-reader", "bob");
    assert!(check_role_binding(&chain, &policy, &write(&jane(), "create", "rolebindings", "dev"), &ok, None).is_ok());
    let too_much = rb("dev", "bob-admin", "ClusterRole", "pod-admin", "bob");
    let err = check_role_binding(&chain, &policy, &write(&jane(), "create", "rolebindings", "dev"), &too_much, None).unwrap_err();
    assert!(err.to_string().starts_with(
        "rolebindings.rbac.authorization.k8s.io \"bob-admin\" is forbidden: user \"jane\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"*\"]}"
    ), "{err}");
}

#[test]
fn bind_verb_on_the_role_allows_the_binding() {
    let (policy, chain) = setup();
    policy.update(|p| p.upsert_role_binding(rb("dev", "jane-bind", "ClusterRole", "binder", "jane")));
    let b = rb("dev", "bob-admin", "ClusterRole", "pod-admin", "bob");
    assert!(check_role_binding(&chain, &policy, &write(&jane(), "create", "rolebindings", "dev"), &b, None).is_ok());
    // bind is limited by resourceNames: another cluster role is still checked.
    let other = rb("dev", "bob-rbac", "ClusterRole", "escalator", "bob");
    assert!(check_role_binding(&chain, &policy, &write(&jane(), "create", "rolebindings", "dev"), &other, None).is_err());
}

#[test]
fn binding_a_missing_role_is_refused_with_not_found() {
    let (policy, chain) = setup();
    let b = rb("dev", "ghost", "Role", "nope", "bob");
    let err = check_role_binding(&chain, &policy, &write(&jane(), "create", "rolebindings", "dev"), &b, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"rolebindings.rbac.authorization.k8s.io "ghost" is forbidden: roles.rbac.authorization.k8s.io "nope" not found"#
    );
}

#[test]
fn gc_only_updates_pass_and_real_updates_are_checked() {
    let (policy, chain) = setup();
    let old = role("dev", "big", vec![rule(&["*"], &["*"], &["*"])]);
    let mut gc = old.clone();
    gc.metadata.finalizers = Some(vec!["foregroundDeletion".into()]);
    gc.metadata.owner_references = Some(vec![OwnerReference { name: "x".into(), ..Default::default() }]);
    let req = write(&jane(), "update", "roles", "dev");
    assert!(check_role(&chain, &policy, &req, &gc, Some(&old)).is_ok());
    let mut relabel = old.clone();
    relabel.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    assert!(check_role(&chain, &policy, &req, &relabel, Some(&old)).is_err());
}

#[test]
fn aggregation_rules_need_full_authority() {
    let (policy, chain) = setup();
    policy.update(|p| {
        p.upsert_cluster_role(cluster_role("crole-writer", vec![rule(WRITER, &[GROUP], &["clusterroles"])]));
        p.upsert_cluster_role_binding(crb("jane-crole", "crole-writer", "jane"));
    });
    let mut agg = cluster_role("agg", vec![]);
    agg.aggregation_rule = Some(AggregationRule { cluster_role_selectors: Some(vec![LabelSelector::default()]) });
    let err = check_cluster_role(&chain, &policy, &write(&jane(), "create", "clusterroles", ""), &agg, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"clusterroles.rbac.authorization.k8s.io "agg" is forbidden: must have cluster-admin privileges to use the aggregationRule"#
    );
    let plain = cluster_role("plain", vec![rule(&["get"], &[GROUP], &["clusterroles"])]);
    assert!(check_cluster_role(&chain, &policy, &write(&jane(), "create", "clusterroles", ""), &plain, None).is_ok());
}

#[test]
fn resolution_errors_are_appended() {
    let (policy, _) = setup();
    policy.update(|p| p.upsert_role_binding(rb("dev", "dangling", "Role", "gone", "jane")));
    let msg = confirm_no_escalation(&policy, &jane(), "dev", &[rule(&["delete"], &[""], &["pods"])]).unwrap_err();
    assert!(msg.ends_with(r#"; resolution errors: [roles.rbac.authorization.k8s.io "gone" not found]"#), "{msg}");
}
