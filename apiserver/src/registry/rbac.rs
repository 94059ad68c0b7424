//! RBAC objects (`rbac.authorization.k8s.io/v1`): Roles, ClusterRoles, RoleBindings,
//! ClusterRoleBindings, stored as written (their schema checked) with kubectl's columns. What
//! they grant is keel-access's to decide, fed from the watch caches (`crate::rest::rbac`).
//! Not yet: kube's escalation check on their writes and roleRef immutability.

use crate::registry::strategy::{Column, Strategy, age, name};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::{Value, json};

/// Roles.
pub struct Roles;
/// ClusterRoles.
pub struct ClusterRoles;
/// RoleBindings.
pub struct RoleBindings;
/// ClusterRoleBindings.
pub struct ClusterRoleBindings;

const ROLE_COLUMNS: &[Column] = &[("Name", 0), ("Created At", 0)];
const BINDING_COLUMNS: &[Column] = &[("Name", 0), ("Role", 0), ("Age", 0)];

fn created(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Value {
    json!(m.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default())
}

impl Strategy for Roles {
    type Object = Role;
    fn columns(&self) -> &'static [Column] {
        ROLE_COLUMNS
    }
    fn cells(&self, r: &Role, _now: i64) -> Vec<Value> {
        vec![json!(name(&r.metadata)), created(&r.metadata)]
    }
}

impl Strategy for ClusterRoles {
    type Object = ClusterRole;
    fn columns(&self) -> &'static [Column] {
        ROLE_COLUMNS
    }
    fn cells(&self, r: &ClusterRole, _now: i64) -> Vec<Value> {
        vec![json!(name(&r.metadata)), created(&r.metadata)]
    }
}

impl Strategy for RoleBindings {
    type Object = RoleBinding;
    fn columns(&self) -> &'static [Column] {
        BINDING_COLUMNS
    }
    fn cells(&self, b: &RoleBinding, now: i64) -> Vec<Value> {
        vec![json!(name(&b.metadata)), json!(format!("{}/{}", b.role_ref.kind, b.role_ref.name)), json!(age(&b.metadata, now))]
    }
}

impl Strategy for ClusterRoleBindings {
    type Object = ClusterRoleBinding;
    fn columns(&self) -> &'static [Column] {
        BINDING_COLUMNS
    }
    fn cells(&self, b: &ClusterRoleBinding, now: i64) -> Vec<Value> {
        vec![json!(name(&b.metadata)), json!(format!("{}/{}", b.role_ref.kind, b.role_ref.name)), json!(age(&b.metadata, now))]
    }
}
