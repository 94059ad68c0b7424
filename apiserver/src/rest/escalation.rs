//! RBAC escalation prevention on writes of Roles, ClusterRoles and their bindings (kube's
//! `pkg/registry/rbac/*/policybased` storage): nobody creates or updates a role with rules they
//! do not hold, nor binds a role whose rules they do not hold, unless allowed `escalate` (roles)
//! or `bind` (bindings). The decisions are keel-access's ([`keel_access::rbac::escalation`]);
//! this module decodes the objects and hands them over.
//!
//! Invariants:
//! - Checked after the kind's validation and before the write, on create, update, patch and
//!   apply, with the request's authorization attributes (after impersonation).
//! - The server's own writes (the bootstrap policy) and a server without authentication are not
//!   checked (kube's AlwaysAllow grants `escalate` and `bind` anyway).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::rest::Api;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use keel_access::rbac::escalation as core;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn decode<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    T::deserialize(v).map_err(|e| ApiError::BadRequest(format!("rbac: {e}")))
}

fn old_of<T: DeserializeOwned>(old: Option<&Value>) -> Result<Option<T>, ApiError> {
    old.map(decode).transpose()
}

/// Checks the write of `new` (over `old`, None for a create) that `call` makes.
pub fn admit(api: &Api, call: &Call, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    let (Some(access), Some(attrs)) = (&api.access, &call.requester) else { return Ok(()) };
    let res = call.target.res;
    if res.group != "rbac.authorization.k8s.io" {
        return Ok(());
    }
    let (chain, policy) = (&access.chain, &access.policy);
    let checked = match res.plural {
        "roles" => core::check_role(chain, policy, attrs, &decode::<Role>(new)?, old_of(old)?.as_ref()),
        "clusterroles" => core::check_cluster_role(chain, policy, attrs, &decode::<ClusterRole>(new)?, old_of(old)?.as_ref()),
        "rolebindings" => core::check_role_binding(chain, policy, attrs, &decode::<RoleBinding>(new)?, old_of(old)?.as_ref()),
        "clusterrolebindings" => {
            core::check_cluster_role_binding(chain, policy, attrs, &decode::<ClusterRoleBinding>(new)?, old_of(old)?.as_ref())
        }
        _ => Ok(()),
    };
    checked.map_err(ApiError::Access)
}
