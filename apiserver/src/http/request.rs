//! Request parsing: the path as a [`Target`] (resource, namespace, name, subresource), the
//! query, the body's media type and size, the answer's form (JSON or Table) and the field
//! manager, gathered in a [`Call`] for the REST layer.

use crate::error::ApiError;
use crate::registry::{self, Resource, Subresource};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, header};
use std::collections::BTreeMap;

/// Largest request body Kubernetes accepts (3 MiB).
pub const BODY_BYTES_MAX: usize = 3 * 1024 * 1024;

/// What a request path names.
#[derive(Clone, Debug)]
pub struct Target {
    /// The resource.
    pub res: &'static Resource,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name, if the path names one.
    pub name: Option<String>,
    /// The subresource, if any.
    pub sub: Option<Subresource>,
    /// What follows `proxy/` in a proxy path (`nodes/n1/proxy/stats/summary`: `stats/summary`).
    pub tail: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...`.
pub fn parse_path(path: &str) -> Result<Target, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::NoSuchPath),
    };
    let find = |plural: &str| registry::find(group, version, plural).ok_or(ApiError::NoSuchPath);
    let sub = |s: Option<&&str>, res: &Resource| -> Result<Option<Subresource>, ApiError> {
        match s {
            None => Ok(None),
            Some(&"status") if res.has(Subresource::Status) => Ok(Some(Subresource::Status)),
            Some(&"scale") if res.has(Subresource::Scale) => Ok(Some(Subresource::Scale)),
            Some(&"binding") if res.has(Subresource::Binding) => Ok(Some(Subresource::Binding)),
            Some(&"eviction") if res.has(Subresource::Eviction) => Ok(Some(Subresource::Eviction)),
            Some(&"finalize") if res.has(Subresource::Finalize) => Ok(Some(Subresource::Finalize)),
            Some(&"log") if res.has(Subresource::Log) => Ok(Some(Subresource::Log)),
            Some(&"exec") if res.has(Subresource::Exec) => Ok(Some(Subresource::Exec)),
            Some(&"proxy") if res.has(Subresource::Proxy) => Ok(Some(Subresource::Proxy)),
            Some(&"token") if res.has(Subresource::Token) => Ok(Some(Subresource::Token)),
            Some(_) => Err(ApiError::NoSuchPath),
        }
    };
    let target = |res: &'static Resource, ns: Option<&str>, name: Option<&&str>, s: Option<&&str>| -> Result<Target, ApiError> {
        Ok(Target { res, namespace: ns.map(str::to_string), name: name.map(|n| n.to_string()), sub: sub(s, res)?, tail: None })
    };
    // `<plural>/<name>/proxy/<path…>` of a cluster-scoped kind with a proxy (nodes).
    if let [plural, name, "proxy", tail @ ..] = rest
        && let Ok(res) = find(plural)
        && res.has(Subresource::Proxy)
        && !res.namespaced
    {
        let name = Some(name.to_string());
        return Ok(Target { res, namespace: None, name, sub: Some(Subresource::Proxy), tail: Some(tail.join("/")) });
    }
    match rest {
        // /namespaces/<ns>/<plural>[/<name>[/<sub>]] for namespaced kinds; /namespaces/<name>[/status|/finalize] otherwise.
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            let res = find(plural)?;
            if !res.namespaced {
                return Err(ApiError::NoSuchPath);
            }
            if tail.len() > 2 {
                return Err(ApiError::NoSuchPath);
            }
            let t = target(res, Some(ns), tail.first(), tail.get(1))?;
            if t.namespace.as_deref() == Some("") {
                return Err(ApiError::NoSuchPath);
            }
            Ok(t)
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let res = find(plural)?;
            if res.namespaced && !tail.is_empty() {
                return Err(ApiError::NoSuchPath);
            }
            target(res, None, tail.first(), tail.get(1))
        }
        _ => Err(ApiError::NoSuchPath),
    }
}

/// Query parameters (the last value of each).
pub type Query = BTreeMap<String, String>;

/// The query string as a map.
pub fn parse_query(q: Option<&str>) -> Query {
    let mut out = Query::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode_component(k), decode_component(v));
    }
    out
}

/// Percent-decoding of one query component (`+` is a space).
fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the client wants objects back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Plain JSON objects.
    Json,
    /// `meta.k8s.io/v1` Table (kubectl get).
    Table,
}

/// JSON, or a Table when the first Accept entry asks for one (kubectl get).
pub fn output(headers: &HeaderMap) -> Output {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.split(',').next().is_some_and(|first| first.contains("as=Table")) { Output::Table } else { Output::Json }
}

/// The request body's media type, as far as this server decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// JSON (also when no Content-Type is sent, as kubectl does for some requests).
    Json,
    /// RFC 7386 merge patch.
    MergePatch,
    /// RFC 6902 JSON patch.
    JsonPatch,
    /// Kubernetes strategic merge patch.
    StrategicMergePatch,
    /// Server-side apply.
    Apply,
    /// Kubernetes protobuf (`k8s\0` + runtime.Unknown).
    Protobuf,
    /// YAML (one document).
    Yaml,
}

fn media(headers: &HeaderMap) -> Result<Media, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "" | "application/json" | "*/*" => Ok(Media::Json),
        "application/merge-patch+json" => Ok(Media::MergePatch),
        "application/json-patch+json" => Ok(Media::JsonPatch),
        "application/strategic-merge-patch+json" => Ok(Media::StrategicMergePatch),
        "application/apply-patch+yaml" => Ok(Media::Apply),
        "application/vnd.kubernetes.protobuf" => Ok(Media::Protobuf),
        "application/yaml" => Ok(Media::Yaml),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Everything a resource handler needs from the request.
#[derive(Clone, Debug)]
pub struct Call {
    /// What the path names.
    pub target: Target,
    /// Query parameters.
    pub query: Query,
    /// JSON or Table.
    pub output: Output,
    /// The body's media type.
    pub media: Media,
    /// The body.
    pub body: Bytes,
    /// Who writes: `?fieldManager=`, else the client's User-Agent up to its first `/`.
    pub manager: String,
    /// `?dryRun=All`: do everything but write.
    pub dry_run: bool,
    /// The request's authorization attributes and who acts (after impersonation), when
    /// authentication is on; None for the server's own calls and for a server without it.
    pub requester: Option<std::sync::Arc<keel_access::attributes::Attributes>>,
}

impl Call {
    /// The call a request makes (reading its body, at most [`BODY_BYTES_MAX`]).
    pub async fn read(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap, body: Body) -> Result<Call, ApiError> {
        let target = parse_path(uri.path())?;
        let query = parse_query(uri.query());
        let output = output(headers);
        let media =
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) { media(headers)? } else { Media::Json };
        let body = axum::body::to_bytes(body, BODY_BYTES_MAX + 1).await.map_err(|_| ApiError::TooLarge { limit: BODY_BYTES_MAX })?;
        if body.len() > BODY_BYTES_MAX {
            return Err(ApiError::TooLarge { limit: BODY_BYTES_MAX });
        }
        let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
        let manager = match query.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => agent.split('/').next().unwrap_or("unknown").to_string(),
        };
        let dry_run = match query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => return Err(ApiError::BadRequest(format!("dryRun: Unsupported value: {other:?}: supported values: \"All\""))),
        };
        Ok(Call { target, query, output, media, body, manager, dry_run, requester: None })
    }

    /// A call made by the server itself (bootstrap): a create of `res` as `manager`.
    pub fn internal(res: &'static Resource, manager: &str) -> Call {
        Call {
            target: Target { res, namespace: None, name: None, sub: None, tail: None },
            query: Query::new(),
            output: Output::Json,
            media: Media::Json,
            body: Bytes::new(),
            manager: manager.into(),
            dry_run: false,
            requester: None,
        }
    }

    /// The node a kubelet acts for (`system:node:<name>` in `system:nodes`), when one does.
    pub fn node(&self) -> Option<&str> {
        self.requester.as_ref().and_then(|a| a.user.node_name())
    }

    /// Whether `?name=` is `true` (or `1`).
    pub fn flag(&self, name: &str) -> bool {
        self.query.get(name).is_some_and(|w| w == "true" || w == "1")
    }

    /// The object name, for calls on one object.
    pub fn name(&self) -> Result<&str, ApiError> {
        self.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = (String, Option<String>, Option<String>, Option<&'static str>);

    fn t(path: &str) -> Option<Parsed> {
        parse_path(path).ok().map(|t| (t.res.plural.to_string(), t.namespace, t.name, t.sub.map(Subresource::name)))
    }

    #[test]
    fn paths_name_resources_like_kubernetes() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(t("/api/v1/namespaces"), Some(("namespaces".into(), None, None, None)));
        assert_eq!(t("/api/v1/namespaces/x"), Some(("namespaces".into(), None, s("x"), None)));
        assert_eq!(t("/api/v1/namespaces/x/status"), Some(("namespaces".into(), None, s("x"), Some("status"))));
        assert_eq!(t("/api/v1/namespaces/d/pods"), Some(("pods".into(), s("d"), None, None)));
        assert_eq!(t("/api/v1/namespaces/d/pods/p/status"), Some(("pods".into(), s("d"), s("p"), Some("status"))));
        assert_eq!(t("/api/v1/pods"), Some(("pods".into(), None, None, None)));
        assert_eq!(t("/apis/apps/v1/namespaces/d/deployments/w"), Some(("deployments".into(), s("d"), s("w"), None)));
        assert_eq!(t("/api/v1/nodes/n"), Some(("nodes".into(), None, s("n"), None)));
        assert!(t("/api/v1/pods/p").is_none(), "a namespaced object needs its namespace");
        assert!(t("/api/v1/namespaces/d/configmaps/c/status").is_none(), "configmaps have no status");
        assert!(t("/apis/apps/v1/namespaces/d/pods").is_none());
        assert!(t("/api/v1/widgets").is_none());
        assert_eq!(t("/api/v1/namespaces/d/pods/p/log"), Some(("pods".into(), s("d"), s("p"), Some("log"))));
        assert_eq!(t("/api/v1/namespaces/d/pods/p/exec"), Some(("pods".into(), s("d"), s("p"), Some("exec"))));
        assert!(t("/api/v1/namespaces/d/configmaps/c/log").is_none());
        let proxy = parse_path("/api/v1/nodes/n1/proxy/stats/summary").map(|t| (t.name, t.sub.map(Subresource::name), t.tail));
        assert_eq!(proxy.ok(), Some((s("n1"), Some("proxy"), s("stats/summary"))));
        assert_eq!(parse_path("/api/v1/nodes/n1/proxy").ok().and_then(|t| t.tail), s(""));
        assert!(t("/api/v1/namespaces/d/pods/p/proxy/x").is_none(), "pods/proxy is not served");
    }

    #[test]
    fn query_components_are_percent_decoded() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&limit=500&watch"));
        assert_eq!(q.get("labelSelector").map(String::as_str), Some("app=web,tier in (a)"));
        assert_eq!(q.get("limit").map(String::as_str), Some("500"));
        assert_eq!(q.get("watch").map(String::as_str), Some(""));
        assert_eq!(decode_component("100%"), "100%");
    }
}
