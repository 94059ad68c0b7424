//! Escalation prevention for writes of roles and bindings, as kube's RBAC registry
//! (`pkg/registry/rbac/*/policybased`): nobody grants what they do not hold.
//!
//! Invariants (kube's):
//! - `system:masters` may write anything.
//! - Creating or updating a Role/ClusterRole needs every rule in it to be held by the writer in
//!   the request's namespace (cluster-wide for ClusterRoles), unless the writer is allowed the
//!   `escalate` verb on that roles/clusterroles resource. Setting or keeping an aggregationRule
//!   needs full authority (`*` on `*.*` and on every URL).
//! - Creating or updating a binding needs the `bind` verb on the referenced role (checked in the
//!   binding's namespace), or holding every rule of the referenced role.
//! - An update that only changes ownerReferences, finalizers or managedFields is never refused
//!   (the garbage collector must be able to finish deleting).

use crate::attributes::Attributes;
use crate::authz::Authorizer;
use crate::error::Error;
use crate::gostr::quote;
use crate::gostr::quote_list;
use crate::rbac::SharedPolicy;
use crate::rbac::policy::rules_of;
use crate::rbac::rule::{compact_rules, compact_string, covers};
use crate::user::{SYSTEM_MASTERS, UserInfo};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef};
use serde::Serialize;
use std::collections::BTreeSet;

const GROUP: &str = "rbac.authorization.k8s.io";

/// kube's `ConfirmNoEscalation`: Ok when `user`'s rules in `namespace` cover `rules`, else kube's
/// message listing what is missing.
pub fn confirm_no_escalation(policy: &SharedPolicy, user: &UserInfo, namespace: &str, rules: &[PolicyRule]) -> Result<(), String> {
    let (owner, errors) = policy.read(|p| p.rules_for(user, namespace));
    let (ok, missing) = covers(&owner, rules);
    if ok {
        return Ok(());
    }
    let descriptions: BTreeSet<String> = compact_rules(&missing).iter().map(compact_string).collect();
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        quote(&user.name),
        quote_list(&user.groups),
        descriptions.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        // Go prints the []error slice with %v.
        let errs: Vec<String> = errors.iter().map(|e| e.registry_message()).collect();
        msg.push_str(&format!("; resolution errors: [{}]", errs.join(" ")));
    }
    Err(msg)
}

fn full_authority() -> Vec<PolicyRule> {
    let all = || Some(vec!["*".to_string()]);
    vec![
        PolicyRule { verbs: vec!["*".into()], api_groups: all(), resources: all(), ..Default::default() },
        PolicyRule { verbs: vec!["*".into()], non_resource_urls: all(), ..Default::default() },
    ]
}

/// Serialised form with empty lists, empty maps and nulls dropped: kube's semantic equality
/// (nil and empty are the same).
fn semantic<T: Serialize>(v: &T) -> serde_json::Value {
    fn prune(v: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match v {
            Value::Null => None,
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(Value::Array(a.into_iter().map(|x| prune(x).unwrap_or(Value::Null)).collect())),
            Value::Object(m) => {
                let m: serde_json::Map<String, Value> = m.into_iter().filter_map(|(k, v)| prune(v).map(|v| (k, v))).collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            other => Some(other),
        }
    }
    prune(serde_json::to_value(v).unwrap_or_default()).unwrap_or_default()
}

/// kube's `IsOnlyMutatingGCFields`.
fn only_gc_fields<T: Serialize + Clone>(
    new: &T,
    old: &T,
    meta: impl Fn(&mut T) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    let mut copied = new.clone();
    let mut old_c = old.clone();
    let om = meta(&mut old_c).clone();
    let cm = meta(&mut copied);
    cm.owner_references = om.owner_references;
    cm.finalizers = om.finalizers;
    cm.managed_fields = om.managed_fields;
    semantic(&copied) == semantic(old)
}

/// Whether the writer holds `escalate` on the role resource being written (kube's
/// `RoleEscalationAuthorized`), from the write request's own attributes.
fn escalation_authorized(authz: &dyn Authorizer, request: &Attributes) -> bool {
    if !request.resource_request || request.api_group != GROUP || !(request.resource == "roles" || request.resource == "clusterroles") {
        return false;
    }
    let attrs = Attributes {
        verb: "escalate".into(),
        api_version: "*".into(),
        subresource: String::new(),
        field_selector: Vec::new(),
        label_selector: String::new(),
        ..request.clone()
    };
    authz.authorize(&attrs).allowed()
}

/// Whether the writer holds `bind` on the referenced role in the binding's namespace (kube's
/// `BindingAuthorized`).
fn binding_authorized(authz: &dyn Authorizer, user: &UserInfo, role_ref: &RoleRef, binding_namespace: &str) -> bool {
    let resource = match role_ref.kind.as_str() {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return false,
    };
    let attrs = Attributes::resource(user.clone(), "bind", &role_ref.api_group, resource, binding_namespace, &role_ref.name);
    authz.authorize(&attrs).allowed()
}

fn meta_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

/// May the writer of `request` create (`old` = None) or update this Role?
pub fn check_role(
    authz: &dyn Authorizer,
    policy: &SharedPolicy,
    request: &Attributes,
    role: &Role,
    old: Option<&Role>,
) -> Result<(), Error> {
    if request.user.in_group(SYSTEM_MASTERS) || escalation_authorized(authz, request) {
        return Ok(());
    }
    if let Some(old) = old
        && only_gc_fields(role, old, |r| &mut r.metadata)
    {
        return Ok(());
    }
    confirm_no_escalation(policy, &request.user, &request.namespace, rules_of(&role.rules))
        .map_err(|m| Error::forbidden(GROUP, "roles", meta_name(&role.metadata), m))
}

fn has_aggregation_rule(r: &ClusterRole) -> bool {
    r.aggregation_rule.as_ref().and_then(|a| a.cluster_role_selectors.as_ref()).is_some_and(|s| !s.is_empty())
}

/// May the writer of `request` create (`old` = None) or update this ClusterRole?
pub fn check_cluster_role(
    authz: &dyn Authorizer,
    policy: &SharedPolicy,
    request: &Attributes,
    role: &ClusterRole,
    old: Option<&ClusterRole>,
) -> Result<(), Error> {
    if request.user.in_group(SYSTEM_MASTERS) || escalation_authorized(authz, request) {
        return Ok(());
    }
    if let Some(old) = old
        && only_gc_fields(role, old, |r| &mut r.metadata)
    {
        return Ok(());
    }
    let name = meta_name(&role.metadata);
    confirm_no_escalation(policy, &request.user, "", rules_of(&role.rules))
        .map_err(|m| Error::forbidden(GROUP, "clusterroles", name, m))?;
    if has_aggregation_rule(role) || old.is_some_and(has_aggregation_rule) {
        confirm_no_escalation(policy, &request.user, "", &full_authority())
            .map_err(|_| Error::forbidden(GROUP, "clusterroles", name, "must have cluster-admin privileges to use the aggregationRule"))?;
    }
    Ok(())
}

fn check_binding(
    authz: &dyn Authorizer,
    policy: &SharedPolicy,
    request: &Attributes,
    resource: &str,
    name: &str,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> Result<(), Error> {
    if binding_authorized(authz, &request.user, role_ref, binding_namespace) {
        return Ok(());
    }
    let rules = policy
        .read(|p| p.role_reference_rules(role_ref, binding_namespace).map(<[PolicyRule]>::to_vec))
        .map_err(|e| Error::forbidden(GROUP, resource, name, e.registry_message()))?;
    confirm_no_escalation(policy, &request.user, &request.namespace, &rules).map_err(|m| Error::forbidden(GROUP, resource, name, m))
}

/// May the writer of `request` create (`old` = None) or update this RoleBinding?
pub fn check_role_binding(
    authz: &dyn Authorizer,
    policy: &SharedPolicy,
    request: &Attributes,
    binding: &RoleBinding,
    old: Option<&RoleBinding>,
) -> Result<(), Error> {
    if request.user.in_group(SYSTEM_MASTERS) {
        return Ok(());
    }
    if let Some(old) = old
        && only_gc_fields(binding, old, |b| &mut b.metadata)
    {
        return Ok(());
    }
    let ns = binding.metadata.namespace.as_deref().unwrap_or(&request.namespace);
    check_binding(authz, policy, request, "rolebindings", meta_name(&binding.metadata), &binding.role_ref, ns)
}

/// May the writer of `request` create (`old` = None) or update this ClusterRoleBinding?
pub fn check_cluster_role_binding(
    authz: &dyn Authorizer,
    policy: &SharedPolicy,
    request: &Attributes,
    binding: &ClusterRoleBinding,
    old: Option<&ClusterRoleBinding>,
) -> Result<(), Error> {
    if request.user.in_group(SYSTEM_MASTERS) {
        return Ok(());
    }
    if let Some(old) = old
        && only_gc_fields(binding, old, |b| &mut b.metadata)
    {
        return Ok(());
    }
    check_binding(authz, policy, request, "clusterrolebindings", meta_name(&binding.metadata), &binding.role_ref, "")
}

#[cfg(test)]
#[path = "escalation_tests.rs"]
mod tests;
