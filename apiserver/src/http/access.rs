//! Authentication and authorization in front of every route, as kube-apiserver's filter chain
//! (authentication → impersonation → authorization, then the handler), decided by keel-access
//! ([`keel_access::Access::check`]): x509 client certificates (`--client-ca-file`, CN the
//! user, O the groups), `--token-auth-file` bearer tokens, anonymous requests
//! (`--anonymous-auth`), `Impersonate-*` headers, and the `--authorization-mode` chain. A
//! refusal is kube's Status: 401 for bad credentials, 403 with kube's message
//! (`pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the
//! namespace "dev"`).
//!
//! Keel differs from kube in one way for now: the front is on only when one of those flags is
//! given (see `main.rs`), because the kubeconfigs Keel writes carry a token nobody checks yet.
//! `RBAC` decides over the RBAC objects the feeders of [`crate::rest::rbac`] keep in keel-access's
//! policy, `Node` over the graph [`crate::rest::node_graph`] keeps from the pods. The acting
//! user goes on to the handlers as a [`Requester`] in the request's extensions. ServiceAccount tokens are not accepted (no issuer flags yet): the lookup below knows
//! no objects.

use crate::http::audit::{Failure, Subject};
use crate::http::serve::PeerCertificates;
use crate::seams::Clock;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_access::authn::serviceaccount::{ObjectLookup, ObjectRef};
use std::sync::Arc;

/// What the front needs: keel-access's state and the clock (token expiry).
pub struct Front {
    /// Built from the flags once.
    pub access: Arc<keel_access::Access>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
}

/// No objects: ServiceAccount tokens are not accepted yet, so nothing is looked up.
struct NoObjects;

impl ObjectLookup for NoObjects {
    fn service_account(&self, _: &str, _: &str) -> Option<ObjectRef> {
        None
    }
    fn pod(&self, _: &str, _: &str) -> Option<ObjectRef> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<ObjectRef> {
        None
    }
    fn node(&self, _: &str) -> Option<ObjectRef> {
        None
    }
}

/// The request's authorization attributes with the user it acts as (after impersonation), put
/// in the request's extensions for the handlers (admission that depends on the user:
/// NodeRestriction, RBAC escalation checks; the review endpoints).
#[derive(Clone, Debug)]
pub struct Requester(pub Arc<keel_access::attributes::Attributes>);

/// The middleware: the request goes on only if keel-access allows it.
pub async fn check(State(front): State<Arc<Front>>, mut req: Request, next: Next) -> Response {
    let verdict = {
        let headers: Vec<(&str, &str)> = req.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
        let peer = req.extensions().get::<PeerCertificates>().map(|p| p.0.clone());
        let head = keel_access::RequestHead {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or_default(),
            headers: &headers,
            peer_certificates: peer.as_deref().map(Vec::as_slice),
        };
        front.access.check(&head, &NoObjects, front.clock.now())
    };
    match verdict {
        Ok(allowed) => {
            let attributes = Arc::new(allowed.attributes);
            req.extensions_mut().insert(Requester(attributes.clone()));
            let mut response = next.run(req).await;
            let impersonated = allowed.impersonated.then(|| attributes.user.clone());
            let decision = Some(("allow", allowed.reason));
            response.extensions_mut().insert(Subject { attributes, user: allowed.authenticated, impersonated, decision });
            response
        }
        Err(refused) => {
            let refused = *refused;
            let code = StatusCode::from_u16(refused.error.code()).unwrap_or(StatusCode::FORBIDDEN);
            let status = refused.error.status();
            let mut response = (code, [(header::CONTENT_TYPE, "application/json")], refused.error.status_json()).into_response();
            let user = refused.authenticated.unwrap_or_default();
            // The acting user differs from who authenticated only when impersonating.
            let impersonated = (refused.attributes.user != user).then(|| refused.attributes.user.clone()).filter(|u| !u.name.is_empty());
            let decision = refused.reason.map(|r| ("forbid", r));
            let failure = serde_json::to_value(&status).unwrap_or_default();
            response.extensions_mut().insert(Failure(Arc::new(failure)));
            response.extensions_mut().insert(Subject { attributes: Arc::new(refused.attributes), user, impersonated, decision });
            response
        }
    }
}
