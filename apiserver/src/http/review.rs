//! The access reviews of `authorization.k8s.io/v1` (what `kubectl auth can-i` sends): POST
//! only, never stored, answered 201 with the review and its `status`, decided by keel-access
//! ([`keel_access::review`]) over the server's authorizer chain.
//!
//! - `selfsubjectaccessreviews` and `selfsubjectrulesreviews` ask about the requesting user,
//!   the one the front authenticated (after impersonation, so `kubectl auth can-i --as jane`
//!   asks about jane);
//! - `subjectaccessreviews` and `namespaces/{ns}/localsubjectaccessreviews` about the user the
//!   spec names.
//!
//! And `authentication.k8s.io/v1` `selfsubjectreviews` (`kubectl auth whoami`): the requesting
//! user's name, uid, groups and extra, as the front authenticated them (kube's
//! SelfSubjectReview REST: no spec, `metadata.creationTimestamp` now).
//!
//! The front authorizes the review request itself first (`create` on the review resource;
//! kube's `system:basic-user` grants the self reviews to everyone authenticated). A server
//! without authentication answers as kube's `AlwaysAllow` does: everything is allowed, and the
//! rules review lists `*`.

use crate::error::ApiError;
use crate::http::access::{Front, Requester};
use crate::http::json;
use crate::seams::Clock;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_access::authz::{Chain, Mode};
use keel_access::node::SharedGraph;
use keel_access::rbac::SharedPolicy;
use keel_access::review;
use keel_access::user::UserInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The authorizer the reviews ask.
pub struct Reviews {
    front: Option<Arc<Front>>,
    always_allow: Chain,
    clock: Arc<dyn Clock>,
}

/// Which review a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SelfAccess,
    SelfRules,
    Subject,
    Local,
    SelfSubject,
}

const BODY_BYTES_MAX: usize = crate::http::request::BODY_BYTES_MAX;

impl Reviews {
    fn chain(&self) -> &Chain {
        self.front.as_ref().map_or(&self.always_allow, |f| &f.access.chain)
    }
}

fn decode<T: DeserializeOwned>(kind: &str, content_type: &str, body: &[u8]) -> Result<T, ApiError> {
    let value = if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        crate::http::review_pb::decode(body)?
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("{kind} in version \"v1\" cannot be handled: {e}")))?
    };
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("{kind} in version \"v1\" cannot be handled: {e}")))
}

fn created<T: Serialize>(v: &T) -> Result<Response, ApiError> {
    let v = serde_json::to_value(v).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(json(StatusCode::CREATED, &v))
}

async fn serve(reviews: &Reviews, kind: Kind, namespace: &str, req: Request) -> Result<Response, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let user = req.extensions().get::<Requester>().map_or_else(UserInfo::anonymous, |r| r.0.user.clone());
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = axum::body::to_bytes(req.into_body(), BODY_BYTES_MAX).await.map_err(|_| ApiError::TooLarge { limit: BODY_BYTES_MAX })?;
    let chain = reviews.chain();
    let done = match kind {
        Kind::SelfAccess => {
            review::self_subject_access_review(chain, &user, decode("SelfSubjectAccessReview", &content_type, &body)?).map(|r| created(&r))
        }
        Kind::SelfRules => {
            review::self_subject_rules_review(chain, &user, decode("SelfSubjectRulesReview", &content_type, &body)?).map(|r| created(&r))
        }
        Kind::Subject => review::subject_access_review(chain, decode("SubjectAccessReview", &content_type, &body)?).map(|r| created(&r)),
        Kind::Local => review::local_subject_access_review(chain, namespace, decode("LocalSubjectAccessReview", &content_type, &body)?)
            .map(|r| created(&r)),
        Kind::SelfSubject => Ok(decode::<Map<String, Value>>("SelfSubjectReview", &content_type, &body)
            .and_then(|r| self_subject_kind(&r))
            .and_then(|()| created(&self_subject_review(&user, reviews.clock.now())))),
    };
    done.map_err(ApiError::Access)?
}

/// A SelfSubjectReview body names that kind, or none (kube then takes the path's).
fn self_subject_kind(r: &Map<String, Value>) -> Result<(), ApiError> {
    match (r.get("apiVersion").and_then(Value::as_str), r.get("kind").and_then(Value::as_str)) {
        (None | Some("authentication.k8s.io/v1"), None | Some("SelfSubjectReview")) => Ok(()),
        (v, k) => Err(ApiError::BadRequest(format!(
            "SelfSubjectReview in version \"v1\" cannot be handled as a SelfSubjectReview: the body is kind {:?} of apiVersion {:?}",
            k.unwrap_or(""),
            v.unwrap_or("")
        ))),
    }
}

/// kube's SelfSubjectReview answer for `user` at `now`: `status.userInfo` with Go's omitempty
/// fields (username, uid, groups, extra).
fn self_subject_review(user: &UserInfo, now: jiff::Timestamp) -> Value {
    let mut info = Map::new();
    if !user.name.is_empty() {
        info.insert("username".into(), json!(user.name));
    }
    if !user.uid.is_empty() {
        info.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        info.insert("extra".into(), json!(user.extra));
    }
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()},
        "status": {"userInfo": info},
    })
}

fn answer(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn self_access(State(r): State<Arc<Reviews>>, req: Request) -> Response {
    answer(serve(&r, Kind::SelfAccess, "", req).await)
}

async fn self_rules(State(r): State<Arc<Reviews>>, req: Request) -> Response {
    answer(serve(&r, Kind::SelfRules, "", req).await)
}

async fn subject(State(r): State<Arc<Reviews>>, req: Request) -> Response {
    answer(serve(&r, Kind::Subject, "", req).await)
}

async fn local(State(r): State<Arc<Reviews>>, Path(ns): Path<String>, req: Request) -> Response {
    answer(serve(&r, Kind::Local, &ns, req).await)
}

async fn self_subject(State(r): State<Arc<Reviews>>, req: Request) -> Response {
    answer(serve(&r, Kind::SelfSubject, "", req).await)
}

/// The review routes, asking `front`'s chain (AlwaysAllow without one); `clock` stamps the
/// SelfSubjectReview.
pub fn routes(front: Option<Arc<Front>>, clock: Arc<dyn Clock>) -> Router {
    let always_allow = Chain::new(&[Mode::AlwaysAllow], &SharedPolicy::default(), &SharedGraph::default());
    let state = Arc::new(Reviews { front, always_allow, clock });
    let base = "/apis/authorization.k8s.io/v1";
    Router::new()
        .route(&format!("{base}/selfsubjectaccessreviews"), axum::routing::any(self_access))
        .route(&format!("{base}/selfsubjectrulesreviews"), axum::routing::any(self_rules))
        .route(&format!("{base}/subjectaccessreviews"), axum::routing::any(subject))
        .route(&format!("{base}/namespaces/{{namespace}}/localsubjectaccessreviews"), axum::routing::any(local))
        .route("/apis/authentication.k8s.io/v1/selfsubjectreviews", axum::routing::any(self_subject))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_subject_review_names_the_user_as_kube_does() {
        let now: jiff::Timestamp = "2026-12-08T03:04:05Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut jane = UserInfo::new("jane", &["dev", "system:authenticated"]);
        jane.uid = "u-1".into();
        jane.extra.insert("scopes".into(), vec!["a".into()]);
        let cases = [
            (jane, json!({"username": "jane", "uid": "u-1", "groups": ["dev", "system:authenticated"], "extra": {"scopes": ["a"]}})),
            (UserInfo::anonymous(), json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]})),
            (UserInfo::default(), json!({})),
        ];
        let body = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(self_subject_kind(&body(json!({}))).is_ok());
        assert!(self_subject_kind(&body(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))).is_ok());
        assert!(self_subject_kind(&body(json!({"apiVersion": "v1", "kind": "Pod"}))).is_err());
        assert!(self_subject_kind(&body(json!({"kind": "SelfSubjectAccessReview"}))).is_err());
        for (user, want) in cases {
            let got = self_subject_review(&user, now);
            assert_eq!(got["status"]["userInfo"], want, "{user:?}");
            assert_eq!(got["metadata"]["creationTimestamp"], "2026-12-08T03:04:05Z");
            assert_eq!((got["kind"].as_str(), got["apiVersion"].as_str()), (Some("SelfSubjectReview"), Some("authentication.k8s.io/v1")));
        }
    }
}
