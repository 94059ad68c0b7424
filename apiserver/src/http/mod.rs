//! The HTTP layer: routes, request parsing ([`request`]), answers (JSON, [`table`]),
//! [`discovery`], [`openapi`], [`protobuf`] request bodies, [`tls`] and the connection loop
//! ([`serve`]). It knows the registry (what is served) but not what a request does: resource
//! requests go to a [`Backend`] (the REST layer implements it), so `http` never imports `rest`;
//! so do the subresources kubelets answer (`log`, `exec`, `proxy`, with the request's head for
//! upgrades) and metrics.k8s.io ([`MetricsTarget`]). [`requests`] counts every answer for
//! `/metrics`; [`access`] authenticates and authorizes, [`inflight`] holds requests to the
//! max-in-flight limits, [`audit`] logs them.

pub mod access;
pub mod audit;
pub mod discovery;
pub mod inflight;
pub mod openapi;
pub mod protobuf;
pub mod request;
pub mod requests;
pub mod review;
pub(crate) mod review_pb;
pub mod serve;
pub mod table;
pub mod tls;

use crate::error::ApiError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use request::Call;
use serde_json::Value;
use std::sync::Arc;

/// What serves resource requests and health.
pub trait Backend: Send + Sync + 'static {
    /// Answers one resource request.
    fn resource(self: Arc<Self>, method: Method, call: Call) -> BoxFuture<'static, Result<Response, ApiError>>;
    /// Answers a subresource a kubelet serves (`pods/log`, `pods/exec`, `nodes/proxy`): `parts`
    /// is the request's head (headers, raw query, the connection's upgrade).
    fn connect(self: Arc<Self>, method: Method, call: Call, parts: http::request::Parts) -> BoxFuture<'static, Result<Response, ApiError>>;
    /// Answers a metrics.k8s.io request.
    fn metrics(self: Arc<Self>, target: MetricsTarget, query: request::Query) -> BoxFuture<'static, Result<Response, ApiError>>;
    /// Whether the store answers (`/healthz`, `/readyz`); why not.
    fn health(self: Arc<Self>) -> BoxFuture<'static, Result<(), String>>;
    /// The address clients reach this server at (legacy `/api` reports it).
    fn advertise(&self) -> &str;
}

type Shared = Arc<dyn Backend>;

/// What a metrics.k8s.io/v1beta1 path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsTarget {
    /// PodMetrics (else NodeMetrics).
    pub pods: bool,
    /// The namespace in the path (pods only).
    pub namespace: Option<String>,
    /// The object name, if the path names one.
    pub name: Option<String>,
}

/// Parses what follows `/apis/metrics.k8s.io/v1beta1/`.
pub fn metrics_target(rest: &str) -> Option<MetricsTarget> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let t = |pods, ns: Option<&&str>, name: Option<&&str>| MetricsTarget {
        pods,
        namespace: ns.map(|s| s.to_string()),
        name: name.map(|s| s.to_string()),
    };
    match parts.as_slice() {
        ["nodes"] => Some(t(false, None, None)),
        ["nodes", name] => Some(t(false, None, Some(name))),
        ["pods"] => Some(t(true, None, None)),
        ["namespaces", ns, "pods"] => Some(t(true, Some(ns), None)),
        ["namespaces", ns, "pods", name] => Some(t(true, Some(ns), Some(name))),
        _ => None,
    }
}

/// A JSON answer.
pub fn json(code: StatusCode, v: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn resource(State(b): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut call = match Call::read(&parts.method, &parts.uri, &parts.headers, body).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    call.requester = parts.extensions.get::<access::Requester>().map(|r| r.0.clone());
    if call.target.sub.is_some_and(crate::registry::Subresource::connects) {
        return b.connect(parts.method.clone(), call, parts).await.unwrap_or_else(IntoResponse::into_response);
    }
    b.resource(parts.method, call).await.unwrap_or_else(IntoResponse::into_response)
}

async fn metrics(State(b): State<Shared>, axum::extract::Path(rest): axum::extract::Path<String>, uri: axum::http::Uri) -> Response {
    let Some(target) = metrics_target(&rest) else { return ApiError::NoSuchPath.into_response() };
    b.metrics(target, request::parse_query(uri.query())).await.unwrap_or_else(IntoResponse::into_response)
}

fn accept(headers: &HeaderMap) -> &str {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn aggregated(core: bool) -> Response {
    let body = discovery::aggregated(core).to_string();
    (StatusCode::OK, [(header::CONTENT_TYPE, discovery::AGGREGATED_CONTENT_TYPE)], body).into_response()
}

async fn api_root(State(b): State<Shared>, headers: HeaderMap) -> Response {
    if discovery::wants_aggregated(accept(&headers)) {
        return aggregated(true);
    }
    json(StatusCode::OK, &discovery::api_versions(b.advertise()))
}

async fn apis_root(headers: HeaderMap) -> Response {
    if discovery::wants_aggregated(accept(&headers)) {
        return aggregated(false);
    }
    json(StatusCode::OK, &discovery::group_list())
}

fn found(doc: Option<Value>) -> Response {
    doc.map_or_else(|| ApiError::NoSuchPath.into_response(), |d| json(StatusCode::OK, &d))
}

async fn core_v1() -> Response {
    found(discovery::resource_list("", "v1"))
}

async fn group(axum::extract::Path(g): axum::extract::Path<String>) -> Response {
    found(discovery::group(&g))
}

async fn group_version(axum::extract::Path((g, v)): axum::extract::Path<(String, String)>) -> Response {
    found(discovery::resource_list(&g, &v))
}

async fn openapi_doc(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    found(openapi::group_version(&path))
}

fn text(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn health(State(b): State<Shared>) -> Response {
    match b.health().await {
        Ok(()) => text(StatusCode::OK, "ok".into()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("[-]etcd failed: {e}")),
    }
}

/// The whole HTTP surface over `backend`, behind `front` (authentication and authorization)
/// when given, held to the max-in-flight limits of `inflight`, every answer given an `Audit-Id` and audited by `audit`, and counted in
/// `requests` (served on `/metrics`).
pub fn router(
    backend: Shared,
    front: Option<Arc<access::Front>>,
    inflight: Arc<inflight::Inflight>,
    audit: Arc<audit::Audit>,
    requests: Arc<requests::Requests>,
) -> Router {
    let resources = axum::routing::any(resource);
    let exposition = requests.clone();
    let router = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], exposition.render()).into_response()
            }),
        )
        .route("/version", get(|| async { json(StatusCode::OK, &discovery::version()) }))
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(|| async { text(StatusCode::OK, "ok".into()) }))
        .route("/api", get(api_root))
        .route("/api/", get(api_root))
        .route("/apis", get(apis_root))
        .route("/apis/", get(apis_root))
        .route("/api/v1", get(core_v1))
        .route("/api/v1/", get(core_v1))
        .route("/apis/{group}", get(group))
        .route("/apis/{group}/{version}", get(group_version))
        .route("/openapi/v3", get(|| async { json(StatusCode::OK, &openapi::index()) }))
        .route("/openapi/v3/{*path}", get(openapi_doc))
        .route("/api/v1/{*rest}", resources.clone())
        .route("/apis/metrics.k8s.io/v1beta1/{*rest}", get(metrics))
        .route("/apis/{group}/{version}/{*rest}", resources)
        .fallback(|| async { ApiError::NoSuchPath.into_response() })
        .with_state(backend)
        .merge(review::routes(front.clone(), audit.clock.clone()));
    // Inside the front: the limits see the acting user (the reserved lane, system:masters).
    let router = router.layer(axum::middleware::from_fn_with_state(inflight, inflight::limit));
    let router = match front {
        Some(f) => router.layer(axum::middleware::from_fn_with_state(f, access::check)),
        None => router,
    };
    // Outside the front: refusals (401, 403) are audited and counted too, as kube does.
    let router = router.layer(axum::middleware::from_fn_with_state(audit, audit::record));
    router.layer(axum::middleware::from_fn_with_state(requests, requests::record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_paths_name_node_and_pod_metrics() {
        let t = |pods, ns: Option<&str>, name: Option<&str>| {
            Some(MetricsTarget { pods, namespace: ns.map(str::to_string), name: name.map(str::to_string) })
        };
        assert_eq!(metrics_target("nodes"), t(false, None, None));
        assert_eq!(metrics_target("nodes/n1"), t(false, None, Some("n1")));
        assert_eq!(metrics_target("pods"), t(true, None, None));
        assert_eq!(metrics_target("namespaces/d/pods/p"), t(true, Some("d"), Some("p")));
        assert_eq!(metrics_target("namespaces/d/pods"), t(true, Some("d"), None));
        assert_eq!(metrics_target("namespaces/d/nodes"), None);
        assert_eq!(metrics_target("widgets"), None);
    }
}
