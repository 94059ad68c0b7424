//! ServiceAccount tokens: the `serviceaccounts/<name>/token` subresource (TokenRequest, what
//! `kubectl create token` and kubelets' projected volumes ask for) and the objects the token
//! authenticator of [`crate::http::access`] checks a token against ([`StoredObjects`]).
//!
//! Invariants (kube's `pkg/registry/core/serviceaccount/storage/token.go`):
//! - Served only with a signing key (`--service-account-signing-key-file`); without one the
//!   path is 404, as a kube-apiserver without an issuer has no token subresource.
//! - A token is issued for a service account that exists (404 `serviceaccounts "x" not found`)
//!   and bound only to an object that exists now: the bound Pod, Secret or Node (and a pod's
//!   Node) are read from the store, not a cache, so a token never names an object already
//!   gone. keel-access validates the request and signs ([`keel_access::authn::serviceaccount`]).
//! - NodeRestriction: a kubelet only gets tokens bound to a pod on its own node.
//! - Nothing is stored; the answer is 201 with the TokenRequest and its `status.token`.
//! - Authentication finds a token's objects in the watch caches and reads the store for one a
//!   cache does not hold (kube falls back to a live lookup too), so a token for an object just
//!   created works at once; a deleted object stops its tokens once the cache has seen the delete.

use crate::error::ApiError;
use crate::http::access::{Named, Objects};
use crate::http::json;
use crate::http::request::{Call, Media};
use crate::registry::{self, Resource};
use crate::rest::Api;
use crate::storage::keys;
use axum::http::StatusCode;
use axum::response::Response;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use keel_access::authn::serviceaccount::{ObjectLookup, ObjectRef};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

fn resource(kind: Named) -> Option<&'static Resource> {
    let plural = match kind {
        Named::ServiceAccount => "serviceaccounts",
        Named::Pod => "pods",
        Named::Secret => "secrets",
        Named::Node => "nodes",
    };
    registry::find("", "v1", plural)
}

/// What a token checks of an object: its uid, whether it is being deleted, and for pods the
/// service account and node.
pub fn object_ref(v: &Value) -> ObjectRef {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    ObjectRef {
        uid: s("/metadata/uid"),
        deletion: v.pointer("/metadata/deletionTimestamp").and_then(Value::as_str).and_then(|t| t.parse().ok()),
        service_account_name: s("/spec/serviceAccountName"),
        node_name: s("/spec/nodeName"),
    }
}

/// The resource and store key of the object of `kind` called `name` in `namespace`.
fn located(kind: Named, namespace: &str, name: &str) -> Option<(&'static Resource, String)> {
    let res = resource(kind)?;
    Some((res, keys::key(res, Some(namespace).filter(|_| res.namespaced), name)))
}

/// The objects tokens name, from the server's watch caches, else the store.
pub struct StoredObjects(pub Arc<Api>);

impl StoredObjects {
    /// From a started cache only, without waiting: `None` when the cache is not started (or
    /// being started) or does not hold the object.
    fn in_cache(&self, kind: Named, namespace: &str, name: &str) -> Option<ObjectRef> {
        let (res, key) = located(kind, namespace, name)?;
        let o = self.0.caches.started(res)?.get(&key)?;
        Some(object_ref(&o.value))
    }

    async fn object(&self, kind: Named, namespace: &str, name: &str) -> Option<ObjectRef> {
        let (res, key) = located(kind, namespace, name)?;
        if let Some(o) = self.0.caches.of(res).await.ok().and_then(|c| c.get(&key)) {
            // The four fields a token checks, read in place: no copy of the whole object.
            return Some(object_ref(&o.value));
        }
        // Not in the cache (not there yet, or absent): the store decides.
        match self.0.store.get(&key).await {
            Ok(Some(s)) => crate::storage::decode(&s).ok().map(|v| object_ref(&v)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("token lookup of {key}: {e}");
                None
            }
        }
    }
}

impl Objects for StoredObjects {
    fn cached(&self, kind: Named, namespace: &str, name: &str) -> Option<ObjectRef> {
        self.in_cache(kind, namespace, name)
    }
    fn find<'a>(&'a self, kind: Named, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Option<ObjectRef>> {
        Box::pin(self.object(kind, namespace, name))
    }
}

/// Objects read for one TokenRequest.
#[derive(Default)]
struct Read(BTreeMap<(Named, String), ObjectRef>);

impl ObjectLookup for Read {
    fn service_account(&self, _: &str, name: &str) -> Option<ObjectRef> {
        self.0.get(&(Named::ServiceAccount, name.to_string())).cloned()
    }
    fn pod(&self, _: &str, name: &str) -> Option<ObjectRef> {
        self.0.get(&(Named::Pod, name.to_string())).cloned()
    }
    fn secret(&self, _: &str, name: &str) -> Option<ObjectRef> {
        self.0.get(&(Named::Secret, name.to_string())).cloned()
    }
    fn node(&self, name: &str) -> Option<ObjectRef> {
        self.0.get(&(Named::Node, name.to_string())).cloned()
    }
}

async fn read(api: &Api, kind: Named, namespace: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let Some(res) = resource(kind) else { return Ok(None) };
    let key = keys::key(res, Some(namespace).filter(|_| res.namespaced), name);
    api.store.get(&key).await?.map(|s| crate::storage::decode(&s)).transpose()
}

fn request(call: &Call) -> Result<TokenRequest, ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("TokenRequest in version \"v1\" cannot be handled: {e}"));
    let mut v: Value = match call.media {
        Media::Json => serde_json::from_slice(&call.body).map_err(|e| bad(e.to_string()))?,
        Media::Protobuf => crate::http::review_pb::decode(&call.body)?,
        _ => return Err(ApiError::UnsupportedMediaType),
    };
    let Some(o) = v.as_object_mut() else { return Err(bad("not an object".into())) };
    if o.get("kind").and_then(Value::as_str).is_some_and(|k| k != "TokenRequest") {
        return Err(bad("expected a TokenRequest".into()));
    }
    o.insert("apiVersion".into(), "authentication.k8s.io/v1".into());
    o.insert("kind".into(), "TokenRequest".into());
    // Every field of the spec is optional to kube (audiences default to the apiserver's).
    let spec = o.entry("spec").or_insert_with(|| Value::Object(Default::default()));
    if let Some(spec) = spec.as_object_mut() {
        spec.entry("audiences").or_insert_with(|| Value::Array(Vec::new()));
    }
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

/// POST `serviceaccounts/<name>/token` (see the module doc).
pub async fn create(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let Some(issuer) = api.access.as_ref().and_then(|a| a.issuer.as_ref()) else { return Err(ApiError::NoSuchPath) };
    let (_, stored) = api.read(call).await?;
    let sa: ServiceAccount =
        serde_json::from_value(api.view(call, &stored)?).map_err(|e| ApiError::Store(format!("stored serviceaccount: {e}")))?;
    let ns = call.target.namespace.clone().unwrap_or_default();
    let req = request(call)?;
    let mut objects = Read::default();
    let mut bound_pod: Option<Pod> = None;
    if let Some(r) = &req.spec.bound_object_ref {
        let name = r.name.clone().unwrap_or_default();
        let kind = match r.kind.as_deref() {
            Some("Pod") => Some(Named::Pod),
            Some("Secret") => Some(Named::Secret),
            Some("Node") => Some(Named::Node),
            _ => None,
        };
        if let Some(kind) = kind
            && let Some(v) = read(api, kind, &ns, &name).await?
        {
            let found = object_ref(&v);
            if kind == Named::Pod {
                if !found.node_name.is_empty()
                    && let Some(node) = read(api, Named::Node, "", &found.node_name).await?
                {
                    objects.0.insert((Named::Node, found.node_name.clone()), object_ref(&node));
                }
                bound_pod = serde_json::from_value(v).ok();
            }
            objects.0.insert((kind, name), found);
        }
    }
    if let Some(node) = call.node()
        && api.admission_plugins.contains("NodeRestriction")
    {
        let sa_name = call.name()?;
        keel_access::admission::node_restriction::admit_token_request(node, sa_name, &req, bound_pod.as_ref()).map_err(ApiError::Access)?;
    }
    let issued = issuer.token_request(&sa, req, &objects, api.clock.now(), &api.ids.uid()).map_err(ApiError::Access)?;
    let body = serde_json::to_value(&issued).map_err(|e| ApiError::Store(e.to_string()))?;
    Ok(json(StatusCode::CREATED, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_ref_carries_what_tokens_check() {
        let pod = json!({"metadata": {"uid": "u1", "deletionTimestamp": "2030-01-01T00:00:00Z"},
            "spec": {"serviceAccountName": "sa", "nodeName": "n1"}});
        let r = object_ref(&pod);
        assert_eq!((r.uid.as_str(), r.service_account_name.as_str(), r.node_name.as_str()), ("u1", "sa", "n1"));
        assert_eq!(r.deletion.map(|t| t.as_second()), Some(1_893_456_000));
        let bare = object_ref(&json!({"metadata": {"uid": "u2"}}));
        assert_eq!(bare, ObjectRef { uid: "u2".into(), ..Default::default() });
    }
}
