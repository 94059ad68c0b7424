//! The default roles and bindings kube-apiserver creates at startup
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`), written out for Keel.
//!
//! Invariants:
//! - Every object carries kube's label `kubernetes.io/bootstrapping: rbac-defaults` and
//!   annotation `rbac.authorization.kubernetes.io/autoupdate: "true"`.
//! - Names, rules and subjects are kube's (1.33), for the resources Keel serves and the ones it
//!   may serve later; roles of kube components Keel does not run are kept so `kubectl get
//!   clusterroles` looks as users expect.
//! - One Keel addition: kube's controllers each run as their own ServiceAccount
//!   (`--use-service-account-credentials`); Keel's controller-manager runs every controller
//!   with one identity, `system:kube-controller-manager`, so each `system:controller:*` role is
//!   also bound to that user by a `keel:kube-controller-manager:<controller>` binding (kube's
//!   own bindings to the ServiceAccounts are kept as they are).

mod cluster_roles;
mod controller_roles;

pub use cluster_roles::{cluster_roles, node_rules};
pub use controller_roles::{CONTROLLERS, controller_roles, namespace_roles};

use crate::user::{ALL_AUTHENTICATED, ALL_SERVICE_ACCOUNTS, ALL_UNAUTHENTICATED, KUBE_CONTROLLER_MANAGER, KUBE_PROXY, KUBE_SCHEDULER};
use crate::user::{MONITORING_GROUP, SYSTEM_MASTERS};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A rule under construction, as kube's `rbacv1helpers.NewRule(...)...RuleOrDie()`.
pub(crate) struct RuleBuilder(PolicyRule);

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `NewRule(verbs...)`.
pub(crate) fn new_rule(verbs: &[&str]) -> RuleBuilder {
    RuleBuilder(PolicyRule { verbs: strings(verbs), ..Default::default() })
}

impl RuleBuilder {
    pub(crate) fn groups(mut self, g: &[&str]) -> RuleBuilder {
        self.0.api_groups = Some(strings(g));
        self
    }
    pub(crate) fn resources(mut self, r: &[&str]) -> RuleBuilder {
        self.0.resources = Some(strings(r));
        self
    }
    pub(crate) fn names(mut self, n: &[&str]) -> RuleBuilder {
        self.0.resource_names = Some(strings(n));
        self
    }
    pub(crate) fn urls(mut self, u: &[&str]) -> RuleBuilder {
        self.0.non_resource_urls = Some(strings(u));
        self
    }
    /// The rule, its lists sorted as kube's `Rule()` sorts them (what `kubectl get clusterrole
    /// -o yaml` and `kubectl auth can-i --list` print shows that order).
    pub(crate) fn rule(mut self) -> PolicyRule {
        let r = &mut self.0;
        for l in [&mut r.api_groups, &mut r.resources, &mut r.resource_names, &mut r.non_resource_urls].into_iter().flatten() {
            l.sort();
        }
        r.verbs.sort();
        self.0
    }
}

/// kube's `eventsRule()`.
pub(crate) fn events_rule() -> PolicyRule {
    new_rule(&["create", "update", "patch"]).groups(&["", "events.k8s.io"]).resources(&["events"]).rule()
}

/// kube's bootstrap metadata: the rbac-defaults label and the autoupdate annotation.
pub(crate) fn meta(namespace: Option<&str>, name: &str, extra_labels: &[(&str, &str)]) -> ObjectMeta {
    let mut labels: BTreeMap<String, String> = [("kubernetes.io/bootstrapping".to_string(), "rbac-defaults".to_string())].into();
    labels.extend(extra_labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(labels),
        annotations: Some([("rbac.authorization.kubernetes.io/autoupdate".to_string(), "true".to_string())].into()),
        ..Default::default()
    }
}

pub(crate) fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: meta(None, name, &[]), rules: Some(rules), aggregation_rule: None }
}

pub(crate) fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role { metadata: meta(Some(namespace), name, &[]), rules: Some(rules) }
}

/// A subject: `User:x`, `Group:x` or `ServiceAccount:ns/x`.
fn subject(s: &str) -> Subject {
    let (kind, rest) = s.split_once(':').unwrap_or(("User", s));
    match kind {
        "ServiceAccount" => {
            let (ns, name) = rest.split_once('/').unwrap_or(("kube-system", rest));
            Subject { kind: kind.into(), name: name.into(), namespace: Some(ns.into()), api_group: None }
        }
        _ => Subject { kind: kind.into(), name: rest.into(), namespace: None, api_group: Some(RBAC_GROUP.into()) },
    }
}

fn cluster_binding(name: &str, role: &str, subjects: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name, &[]),
        role_ref: RoleRef { api_group: RBAC_GROUP.into(), kind: "ClusterRole".into(), name: role.into() },
        subjects: (!subjects.is_empty()).then(|| subjects.iter().map(|s| subject(s)).collect()),
    }
}

pub(crate) fn role_binding(namespace: &str, name: &str, role: &str, subjects: &[&str]) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(namespace), name, &[]),
        role_ref: RoleRef { api_group: RBAC_GROUP.into(), kind: "Role".into(), name: role.into() },
        subjects: Some(subjects.iter().map(|s| subject(s)).collect()),
    }
}

/// kube's default ClusterRoleBindings, then the controller bindings (kube's to each
/// controller's ServiceAccount, and Keel's to the controller-manager's single identity).
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let mut out = vec![
        cluster_binding("cluster-admin", "cluster-admin", &[&format!("Group:{SYSTEM_MASTERS}")]),
        cluster_binding("system:monitoring", "system:monitoring", &[&format!("Group:{MONITORING_GROUP}")]),
        cluster_binding("system:discovery", "system:discovery", &[&format!("Group:{ALL_AUTHENTICATED}")]),
        cluster_binding("system:basic-user", "system:basic-user", &[&format!("Group:{ALL_AUTHENTICATED}")]),
        cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[&format!("Group:{ALL_AUTHENTICATED}"), &format!("Group:{ALL_UNAUTHENTICATED}")],
        ),
        cluster_binding("system:node-proxier", "system:node-proxier", &[&format!("User:{KUBE_PROXY}")]),
        cluster_binding("system:kube-controller-manager", "system:kube-controller-manager", &[&format!("User:{KUBE_CONTROLLER_MANAGER}")]),
        cluster_binding("system:kube-dns", "system:kube-dns", &["ServiceAccount:kube-system/kube-dns"]),
        cluster_binding("system:kube-scheduler", "system:kube-scheduler", &[&format!("User:{KUBE_SCHEDULER}")]),
        cluster_binding("system:volume-scheduler", "system:volume-scheduler", &[&format!("User:{KUBE_SCHEDULER}")]),
        // Kept with no subjects since kube 1.8: kubelets are authorized by the Node authorizer.
        cluster_binding("system:node", "system:node", &[]),
        cluster_binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &[&format!("Group:{ALL_SERVICE_ACCOUNTS}")],
        ),
    ];
    for c in CONTROLLERS {
        let role = format!("system:controller:{c}");
        out.push(cluster_binding(&role, &role, &[&format!("ServiceAccount:kube-system/{c}")]));
    }
    for c in CONTROLLERS {
        let role = format!("system:controller:{c}");
        out.push(cluster_binding(&format!("keel:kube-controller-manager:{c}"), &role, &[&format!("User:{KUBE_CONTROLLER_MANAGER}")]));
    }
    out
}

/// kube's default RoleBindings in `kube-system` and `kube-public`.
pub fn namespace_role_bindings() -> Vec<RoleBinding> {
    let ks = "kube-system";
    vec![
        role_binding(
            "kube-public",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &["ServiceAccount:kube-system/bootstrap-signer"],
        ),
        role_binding(
            ks,
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            &[&format!("User:{KUBE_CONTROLLER_MANAGER}"), &format!("User:{KUBE_SCHEDULER}")],
        ),
        role_binding(
            ks,
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            &[
                &format!("User:{KUBE_CONTROLLER_MANAGER}"),
                "ServiceAccount:kube-system/kube-controller-manager",
                "ServiceAccount:kube-system/leader-election-controller",
            ],
        ),
        role_binding(
            ks,
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            &[&format!("User:{KUBE_SCHEDULER}"), "ServiceAccount:kube-system/kube-scheduler"],
        ),
        role_binding(
            ks,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &["ServiceAccount:kube-system/bootstrap-signer"],
        ),
        role_binding(
            ks,
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            &["ServiceAccount:kube-system/cloud-provider"],
        ),
        role_binding(
            ks,
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            &["ServiceAccount:kube-system/token-cleaner"],
        ),
    ]
}

/// Everything the apiserver writes at startup (when absent), in the order kube creates it.
#[derive(Debug, Clone)]
pub struct DefaultPolicy {
    /// ClusterRoles (kube's and the `system:controller:*` ones).
    pub cluster_roles: Vec<ClusterRole>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Roles in `kube-system` and `kube-public`.
    pub roles: Vec<Role>,
    /// RoleBindings in `kube-system` and `kube-public`.
    pub role_bindings: Vec<RoleBinding>,
}

/// The default policy. With `aggregate`, the aggregating roles (`admin`, `edit`, `view`) carry
/// their computed rules already, so they work before any controller has run.
pub fn default_policy(aggregate: bool) -> DefaultPolicy {
    let mut cluster_roles = cluster_roles();
    cluster_roles.extend(controller_roles());
    if aggregate {
        crate::rbac::aggregation::aggregate_in_place(&mut cluster_roles);
    }
    DefaultPolicy {
        cluster_roles,
        cluster_role_bindings: cluster_role_bindings(),
        roles: namespace_roles(),
        role_bindings: namespace_role_bindings(),
    }
}

impl DefaultPolicy {
    /// The policy index holding these objects.
    pub fn into_policy(self) -> crate::rbac::Policy {
        crate::rbac::Policy::from_objects(self.roles, self.cluster_roles, self.role_bindings, self.cluster_role_bindings)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
