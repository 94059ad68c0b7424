//! The subresources a kubelet answers, proxied to it (kube's `pods/log`, `pods/exec` and
//! `nodes/proxy` connecters): the apiserver reads the pod (which container, which node) and
//! the Node (where its kubelet listens, [`crate::kubelet::location`]), then passes the request
//! on through [`crate::kubelet::KubeletClient`].
//!
//! - `log`: kubectl logs' parameters are passed to `/containerLogs/{ns}/{pod}/{container}` and
//!   the answer streams back unbuffered (`-f` sees each line as the kubelet sends it); a pod
//!   without a node has no logs yet (an empty answer, as kube's nil location).
//! - `exec`: a WebSocket upgrade (`v5.channel.k8s.io`, `v4`) is passed to
//!   `/exec/{ns}/{pod}/{container}` with the client's key and subprotocols; once the kubelet
//!   answers 101 the two connections are joined byte for byte, so channel framing and the final
//!   Status on channel 3 are the kubelet's own. A request without an upgrade is refused as kube
//!   refuses it.
//! - `nodes/{name}/proxy/{path}`: any method, path, query and body to the kubelet; its answer
//!   as it is.
//!
//! A kubelet's error answer becomes a Status with its code and text ([`ApiError::from_kubelet`]).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::kubelet::location::{self, Location};
use crate::registry::{self, Subresource};
use crate::rest::Api;
use crate::storage::keys;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Largest error text read from a kubelet (kube's `maxReadLength`).
const ERROR_BYTES_MAX: usize = 50_000;

/// The kubectl logs parameters a kubelet understands.
const LOG_PARAMS: &[&str] = &["follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines", "limitBytes"];

/// Percent-encoding of one query component (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Answers a connect subresource (`log`, `exec`, `proxy`) of `call`; `parts` is the request's
/// head (headers, the raw query, the connection's upgrade).
pub async fn serve(api: &Api, method: Method, call: Call, parts: http::request::Parts) -> Result<Response, ApiError> {
    match (call.target.sub, &method) {
        (Some(Subresource::Log), &Method::GET) => log(api, &call).await,
        (Some(Subresource::Exec), &Method::GET | &Method::POST) => exec(api, &call, parts).await,
        (Some(Subresource::Proxy), _) => proxy(api, method, call, parts).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The pod the call names, as an object.
async fn pod(api: &Api, call: &Call) -> Result<Value, ApiError> {
    let (_, s) = api.read(call).await?;
    api.view(call, &s)
}

/// Where the kubelet of node `name` listens.
async fn node_location(api: &Api, name: &str) -> Result<Location, ApiError> {
    let res = registry::find("", "v1", "nodes").ok_or(ApiError::NoSuchPath)?;
    let s = api
        .store
        .get(&keys::key(res, None, name))
        .await?
        .ok_or_else(|| ApiError::NotFound { resource: "nodes".into(), name: name.into() })?;
    location::node_location(&crate::storage::decode(&s)?, api.kubelets.preferred())
}

/// A kubelet's non-2xx answer as the error kube reports.
async fn kubelet_error(resp: http::Response<hyper::body::Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    match crate::kubelet::read_limited(resp.into_body(), ERROR_BYTES_MAX).await {
        Ok(body) => ApiError::from_kubelet(code, &String::from_utf8_lossy(&body)),
        Err(e) => e,
    }
}

fn request(method: Method, uri: &str, body: Body) -> Result<http::Request<Body>, ApiError> {
    http::Request::builder().method(method).uri(uri).body(body).map_err(|e| ApiError::BadRequest(format!("{uri}: {e}")))
}

/// `GET pods/{name}/log`.
async fn log(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let pod = pod(api, call).await?;
    let container = location::container(&pod, call.query.get("container").map(String::as_str))?;
    let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Ok(text_answer(StatusCode::OK, Body::empty()));
    };
    let loc = node_location(api, node).await?;
    let ns = call.target.namespace.as_deref().unwrap_or_default();
    let name = call.name()?;
    let query: Vec<String> = LOG_PARAMS.iter().filter_map(|k| call.query.get(*k).map(|v| format!("{k}={}", encode(v)))).collect();
    let mut uri = format!("/containerLogs/{}/{}/{}", encode(ns), encode(name), encode(&container));
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    let resp = api.kubelets.send(&loc, request(Method::GET, &uri, Body::empty())?).await?;
    if !resp.status().is_success() {
        return Err(kubelet_error(resp).await);
    }
    Ok(text_answer(StatusCode::OK, Body::new(resp.into_body())))
}

fn text_answer(code: StatusCode, body: Body) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// The request headers a WebSocket handshake carries through (the kubelet computes the accept
/// key from the client's key and picks the subprotocol).
const UPGRADE_HEADERS: &[&str] = &["sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "user-agent"];

/// The answer headers passed back to the client on 101.
const UPGRADED_HEADERS: &[&str] = &["sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions"];

fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET|POST pods/{name}/exec` (a WebSocket upgrade).
async fn exec(api: &Api, call: &Call, mut parts: http::request::Parts) -> Result<Response, ApiError> {
    let pod = pod(api, call).await?;
    let name = call.name()?.to_string();
    let container = location::container(&pod, call.query.get("container").map(String::as_str))?;
    let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!("pod {name} does not have a host assigned")));
    };
    if !parts.headers.contains_key(header::UPGRADE) {
        return Err(ApiError::BadRequest("Upgrade request required".into()));
    }
    if !is_websocket(&parts.headers) {
        // kubectl falls back to SPDY only when the WebSocket upgrade failed; kubelets here speak
        // only the WebSocket protocols.
        return Err(ApiError::BadRequest("only WebSocket exec (v5.channel.k8s.io, v4.channel.k8s.io) is served; SPDY is not".into()));
    }
    let client_upgrade =
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>().ok_or_else(|| ApiError::BadRequest("Upgrade request required".into()))?;
    let loc = node_location(api, node).await?;
    let ns = call.target.namespace.as_deref().unwrap_or_default();
    // The query as sent (command repeats), less the container that is now in the path.
    let query: Vec<&str> =
        parts.uri.query().unwrap_or_default().split('&').filter(|p| !p.is_empty() && !p.starts_with("container=")).collect();
    let uri = format!("/exec/{}/{}/{}?{}", encode(ns), encode(&name), encode(&container), query.join("&"));
    let mut req = request(Method::GET, &uri, Body::empty())?;
    let h = req.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for k in UPGRADE_HEADERS {
        for v in parts.headers.get_all(*k) {
            h.append(*k, v.clone());
        }
    }
    let resp = api.kubelets.send(&loc, req).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    answer = answer.header(header::CONNECTION, "Upgrade").header(header::UPGRADE, "websocket");
    for k in UPGRADED_HEADERS {
        for v in resp.headers().get_all(*k) {
            answer = answer.header(*k, v.clone());
        }
    }
    let kubelet_upgrade = hyper::upgrade::on(resp);
    api.spawner.spawn(async move {
        let (client, kubelet) = match (client_upgrade.await, kubelet_upgrade.await) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => {
                tracing::debug!("exec upgrade failed: client {:?}, kubelet {:?}", c.err(), k.err());
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut kubelet = hyper_util::rt::TokioIo::new(kubelet);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            tracing::debug!("exec stream: {e}");
        }
    });
    answer.body(Body::empty()).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The request headers passed to a kubelet by `nodes/proxy`.
const PROXIED_HEADERS: &[&str] = &["accept", "content-type", "user-agent"];

/// The answer headers passed back by `nodes/proxy`.
const PROXIED_ANSWER_HEADERS: &[&str] = &["content-type", "cache-control", "content-encoding"];

/// `nodes/{name}/proxy/{path}`, any method.
async fn proxy(api: &Api, method: Method, call: Call, parts: http::request::Parts) -> Result<Response, ApiError> {
    let loc = node_location(api, call.name()?).await?;
    let mut uri = format!("/{}", call.target.tail.as_deref().unwrap_or_default().trim_start_matches('/'));
    if let Some(q) = parts.uri.query().filter(|q| !q.is_empty()) {
        uri = format!("{uri}?{q}");
    }
    let mut req = request(method, &uri, Body::from(call.body.clone()))?;
    for k in PROXIED_HEADERS {
        if let Some(v) = parts.headers.get(*k) {
            req.headers_mut().insert(*k, v.clone());
        }
    }
    let resp = api.kubelets.send(&loc, req).await?;
    let mut answer = Response::builder().status(resp.status());
    for k in PROXIED_ANSWER_HEADERS {
        if let Some(v) = resp.headers().get(*k) {
            answer = answer.header(*k, v.clone());
        }
    }
    answer.body(Body::new(resp.into_body())).map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_percent_encoded() {
        assert_eq!(encode("2030-01-01T00:00:00+01:00"), "2030-01-01T00%3A00%3A00%2B01%3A00");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("web-1_x.y~"), "web-1_x.y~");
    }
}
