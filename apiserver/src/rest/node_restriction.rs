//! NodeRestriction admission (kube's `plugin/pkg/admission/noderestriction`, on with
//! `--enable-admission-plugins NodeRestriction` as kubeadm does): the Node authorizer lets every
//! kubelet write Node objects, create mirror pods, update pod status and delete or evict pods;
//! this keeps each kubelet to its own Node and the pods bound to it. The decisions are
//! keel-access's ([`keel_access::admission::node_restriction`]); this module picks the one a
//! request needs and hands it the objects.
//!
//! Invariants:
//! - Only requests of a node user (`system:node:<name>` in `system:nodes`) are checked; every
//!   other request passes untouched.
//! - Pods: a create is checked on the object to store, a status update on the stored pod, a
//!   delete or an eviction on the stored pod; any other pod update by a node is refused (the
//!   Node authorizer does not grant one either).
//! - Nodes: a create or update (also of `status`) only of the node's own, with kube's label and
//!   taint rules; a delete only of its own.

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::Subresource;
use crate::rest::Api;
use k8s_openapi::api::core::v1::{Node, Pod};
use keel_access::admission::node_restriction as core;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn decode<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    T::deserialize(v).map_err(|e| ApiError::BadRequest(format!("NodeRestriction: {e}")))
}

/// Checks the write `call` makes: `old` the stored object (None for a create), `new` the object
/// to store (None for a delete or an eviction).
pub fn admit(api: &Api, call: &Call, old: Option<&Value>, new: Option<&Value>) -> Result<(), ApiError> {
    let Some(node) = call.node() else { return Ok(()) };
    if !api.admission_plugins.contains("NodeRestriction") {
        return Ok(());
    }
    let res = call.target.res;
    if !res.group.is_empty() {
        return Ok(());
    }
    let name = |v: Option<&Value>| v.and_then(|v| v.pointer("/metadata/name")).and_then(Value::as_str).unwrap_or("").to_string();
    let requested = call.target.name.clone().unwrap_or_else(|| name(new.or(old)));
    let refused = |msg: String| ApiError::Access(keel_access::Error::forbidden("", res.plural, &requested, msg));
    let sub = call.target.sub;
    match res.plural {
        "nodes" => match new {
            Some(new) => {
                let old: Option<Node> = old.map(decode).transpose()?;
                core::admit_node_write(node, &requested, &decode(new)?, old.as_ref()).map_err(ApiError::Access)
            }
            None if requested == node => Ok(()),
            None => Err(refused(format!("node \"{node}\" is not allowed to modify node \"{requested}\""))),
        },
        "pods" => match (old, new, sub) {
            (None, Some(new), _) => core::admit_pod_create(node, &decode::<Pod>(new)?).map_err(ApiError::Access),
            (Some(old), Some(_), Some(Subresource::Status)) => {
                core::admit_pod_change(node, "status", &decode::<Pod>(old)?).map_err(ApiError::Access)
            }
            (Some(old), None, s) => {
                let what = if s == Some(Subresource::Eviction) { "eviction" } else { "" };
                core::admit_pod_change(node, what, &decode::<Pod>(old)?).map_err(ApiError::Access)
            }
            _ => Err(refused(format!("unexpected operation \"UPDATE\", node \"{node}\" can only create and delete mirror pods"))),
        },
        _ => Ok(()),
    }
}
