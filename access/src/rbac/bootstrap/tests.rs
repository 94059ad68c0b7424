use super::*;
use crate::attributes::Attributes;
use crate::authz::{Authorizer, Chain, Mode};
use crate::node::SharedGraph;
use crate::rbac::SharedPolicy;
use crate::user::UserInfo;
use std::collections::BTreeSet;

fn chain() -> Chain {
    Chain::new(&[Mode::Rbac], &SharedPolicy::new(default_policy(true).into_policy()), &SharedGraph::default())
}

#[test]
fn names_are_unique_and_bindings_reference_existing_roles() {
    let p = default_policy(false);
    let names: BTreeSet<_> = p.cluster_roles.iter().map(|r| r.metadata.name.clone().unwrap()).collect();
    assert_eq!(names.len(), p.cluster_roles.len());
    for b in &p.cluster_role_bindings {
        assert!(names.contains(&b.role_ref.name), "{:?}", b.metadata.name);
    }
    for b in &p.role_bindings {
        let ns = b.metadata.namespace.as_deref();
        assert!(p.roles.iter().any(|r| r.metadata.namespace.as_deref() == ns && r.metadata.name == Some(b.role_ref.name.clone())));
    }
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:monitoring",
    ] {
        assert!(names.contains(name), "{name}");
    }
}

#[test]
fn admin_edit_view_aggregate_as_kube() {
    let p = default_policy(true);
    let get = |n: &str| p.cluster_roles.iter().find(|r| r.metadata.name.as_deref() == Some(n)).unwrap().rules.clone().unwrap_or_default();
    let (view, edit, admin) = (get("view"), get("edit"), get("admin"));
    assert_eq!(view, get("system:aggregate-to-view"));
    assert_eq!(edit.len(), view.len() + get("system:aggregate-to-edit").len());
    assert_eq!(admin.len(), edit.len() + get("system:aggregate-to-admin").len());
    assert!(default_policy(false).cluster_roles.iter().find(|r| r.metadata.name.as_deref() == Some("admin")).unwrap().rules.is_none());
}

fn allowed(c: &Chain, user: &UserInfo, verb: &str, group: &str, resource: &str, ns: &str) -> bool {
    c.authorize(&Attributes::resource(user.clone(), verb, group, resource, ns, "")).allowed()
}

#[test]
fn anonymous_gets_only_public_info() {
    let c = chain();
    let anon = UserInfo::anonymous();
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert!(c.authorize(&Attributes::non_resource(anon.clone(), "get", path)).allowed(), "{path}");
    }
    for path in ["/api", "/apis", "/metrics", "/openapi/v2"] {
        assert!(!c.authorize(&Attributes::non_resource(anon.clone(), "get", path)).allowed(), "{path}");
    }
    assert!(!allowed(&c, &anon, "create", "authorization.k8s.io", "selfsubjectaccessreviews", ""));
    assert!(!allowed(&c, &anon, "list", "", "namespaces", ""));
}

#[test]
fn authenticated_users_discover_and_ask_about_themselves() {
    let c = chain();
    let jane = UserInfo::new("jane", &["system:authenticated"]);
    assert!(c.authorize(&Attributes::non_resource(jane.clone(), "get", "/apis/apps/v1")).allowed());
    assert!(allowed(&c, &jane, "create", "authorization.k8s.io", "selfsubjectaccessreviews", ""));
    assert!(allowed(&c, &jane, "create", "authorization.k8s.io", "selfsubjectrulesreviews", ""));
    assert!(!allowed(&c, &jane, "list", "", "pods", "default"));
}

#[test]
fn scheduler_and_controller_manager_hold_what_they_use() {
    let c = chain();
    let sched = UserInfo::new("system:kube-scheduler", &["system:authenticated"]);
    assert!(!allowed(&c, &sched, "create", "", "pods", "dev"));
    assert!(c.authorize(&Attributes::resource(sched.clone(), "create", "", "pods", "dev", "p").with_subresource("binding")).allowed());
    assert!(allowed(&c, &sched, "watch", "", "nodes", ""));
    assert!(
        c.authorize(&Attributes::resource(sched.clone(), "update", "coordination.k8s.io", "leases", "kube-system", "kube-scheduler"))
            .allowed()
    );
    assert!(!c.authorize(&Attributes::resource(sched, "update", "coordination.k8s.io", "leases", "kube-system", "other")).allowed());

    let kcm = UserInfo::new("system:kube-controller-manager", &["system:authenticated"]);
    // Through Keel's bindings of the controller roles to the single identity.
    for (verb, group, resource) in [
        ("create", "", "pods"),
        ("delete", "", "pods"),
        ("create", "apps", "replicasets"),
        ("update", "apps", "deployments"),
        ("patch", "", "nodes"),
        ("deletecollection", "apps", "replicasets"),
        ("create", "", "serviceaccounts"),
        ("create", "discovery.k8s.io", "endpointslices"),
        ("list", "rbac.authorization.k8s.io", "clusterroles"),
    ] {
        assert!(allowed(&c, &kcm, verb, group, resource, "dev"), "{verb} {group}/{resource}");
    }
    assert!(
        c.authorize(&Attributes::resource(kcm.clone(), "update", "apps", "replicasets", "dev", "r").with_subresource("status")).allowed()
    );
    assert!(
        c.authorize(&Attributes::resource(kcm.clone(), "escalate", "rbac.authorization.k8s.io", "clusterroles", "", "admin")).allowed()
    );
    assert!(!allowed(&c, &kcm, "create", "rbac.authorization.k8s.io", "clusterrolebindings", ""));
}

#[test]
fn edit_and_view_mean_what_kube_means() {
    let c = chain();
    let jane = UserInfo::new("jane", &["system:authenticated"]);
    let policy = SharedPolicy::new(default_policy(true).into_policy());
    policy.update(|p| {
        p.upsert_role_binding(k8s_openapi::api::rbac::v1::RoleBinding {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("jane-edit".into()),
                namespace: Some("dev".into()),
                ..Default::default()
            },
            role_ref: RoleRef { api_group: RBAC_GROUP.into(), kind: "ClusterRole".into(), name: "edit".into() },
            subjects: Some(vec![subject("User:jane")]),
        })
    });
    let c2 = Chain::new(&[Mode::Rbac], &policy, &SharedGraph::default());
    assert!(!allowed(&c, &jane, "create", "apps", "deployments", "dev"));
    assert!(allowed(&c2, &jane, "create", "apps", "deployments", "dev"));
    assert!(allowed(&c2, &jane, "get", "", "secrets", "dev"));
    assert!(!allowed(&c2, &jane, "create", "apps", "deployments", "prod"));
    assert!(!allowed(&c2, &jane, "create", "rbac.authorization.k8s.io", "roles", "dev"));
    assert!(!allowed(&c2, &jane, "update", "", "resourcequotas", "dev"));
}

#[test]
fn rule_lists_are_sorted_as_kubes_rule_builder_sorts_them() {
    let p = default_policy(false);
    let Some(edit) = p.cluster_roles.iter().find(|r| r.metadata.name.as_deref() == Some("system:aggregate-to-edit")) else {
        panic!("system:aggregate-to-edit is a default role")
    };
    let rules = edit.rules.as_deref().unwrap_or_default();
    let pods = rules.iter().find(|r| r.resources.as_deref().unwrap_or_default().first().map(String::as_str) == Some("pods"));
    let Some(pods) = pods else { panic!("edit writes pods: {rules:?}") };
    assert_eq!(pods.verbs, ["create", "delete", "deletecollection", "patch", "update"]);
    assert_eq!(pods.resources.as_deref().unwrap_or_default(), ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]);
    for r in p.cluster_roles.iter().flat_map(|r| r.rules.iter().flatten()) {
        let sorted = |v: &[String]| v.windows(2).all(|w| w[0] <= w[1]);
        assert!(sorted(&r.verbs) && sorted(r.resources.as_deref().unwrap_or_default()), "{r:?}");
    }
}
