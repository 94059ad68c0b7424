//! Request metrics as kube-apiserver names them, served on `/metrics`:
//! `apiserver_request_total` (a counter by verb, group, version, resource, subresource, scope,
//! component and HTTP code) and `apiserver_request_duration_seconds` (a histogram by the same
//! labels less the code, kube's buckets; WATCH and CONNECT requests are left out of it as kube
//! leaves them out: they last as long as the client stays).
//!
//! The labels are kube's (`endpoints/metrics`): the verb is the handler's (`LIST`, `GET`,
//! `POST`, `PUT`, `PATCH`, `DELETE`, `DELETECOLLECTION`, `WATCH` for a list with `watch=true`,
//! `APPLY` for a server-side-apply PATCH, `CONNECT` for exec/attach/portforward/proxy), the scope
//! `resource` (named object or create), `namespace`, `cluster`, or empty for a non-resource path;
//! the component is `apiserver`. [`labels`] is the pure part; [`record`] is the middleware.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use keel_access::attributes::Attributes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::time::Instant;

/// The labels of `apiserver_request_duration_seconds`.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// kube's reported verb (`LIST`, `WATCH`, `POST`, …).
    pub verb: String,
    /// API group, empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource (plural), empty for non-resource paths.
    pub resource: String,
    /// Subresource (`status`, `binding`, …).
    pub subresource: String,
    /// `resource`, `namespace`, `cluster` or empty.
    pub scope: String,
    /// Always `apiserver`.
    pub component: String,
}

/// The labels of `apiserver_request_total`: the request's and its answer's code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: String,
}

/// kube's `apiserver_request_duration_seconds` buckets.
const BUCKETS: [f64; 23] =
    [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The families and the registry that renders them.
pub struct Requests {
    total: Family<CodeLabels, Counter>,
    duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    registry: Registry,
}

impl Requests {
    /// Empty families, registered.
    pub fn new() -> Arc<Requests> {
        Requests::with(|_| {})
    }

    /// Empty families, registered, and whatever `more` registers (the audit log's counters).
    pub fn with(more: impl FnOnce(&mut Registry)) -> Arc<Requests> {
        let total = Family::<CodeLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            total.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            duration.clone(),
        );
        more(&mut registry);
        Arc::new(Requests { total, duration, registry })
    }

    /// Counts one answered request (and its latency unless it is long-running).
    pub fn observe(&self, labels: RequestLabels, code: u16, seconds: f64) {
        if labels.verb != "WATCH" && labels.verb != "CONNECT" {
            self.duration.get_or_create(&labels).observe(seconds);
        }
        self.total.get_or_create(&CodeLabels { request: labels, code: code.to_string() }).inc();
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The labels kube reports for `method path?query` with this `Content-Type`.
pub fn labels(method: &str, path: &str, query: &str, content_type: &str) -> RequestLabels {
    let a = Attributes::from_request(method, path, query);
    let component = "apiserver".to_string();
    if !a.resource_request {
        return RequestLabels { verb: method.to_ascii_uppercase(), component, ..RequestLabels::default() };
    }
    // `from_request` already made a collection GET `list`, or `watch` with `watch=true`.
    let watch = a.verb == "watch";
    let connect = a.verb == "proxy" || matches!(a.subresource.as_str(), "exec" | "attach" | "portforward" | "proxy");
    let verb = match a.verb.as_str() {
        _ if connect => "CONNECT",
        _ if watch => "WATCH",
        "list" => "LIST",
        "get" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" if content_type.starts_with("application/apply-patch") => "APPLY",
        "patch" => "PATCH",
        "delete" => "DELETE",
        "deletecollection" => "DELETECOLLECTION",
        other => return RequestLabels { verb: other.to_ascii_uppercase(), component, ..RequestLabels::default() },
    };
    let scope = if !a.name.is_empty() || a.verb == "create" {
        "resource"
    } else if !a.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb: verb.into(),
        group: a.api_group,
        version: a.api_version,
        resource: a.resource,
        subresource: a.subresource,
        scope: scope.into(),
        component,
    }
}

/// Middleware: labels the request, runs it, counts the answer's code and the time to its head.
pub async fn record(State(requests): State<Arc<Requests>>, req: Request, next: Next) -> Response {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let labels = labels(req.method().as_str(), req.uri().path(), req.uri().query().unwrap_or_default(), content_type);
    let start = Instant::now();
    let response = next.run(req).await;
    requests.observe(labels, response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(method: &str, path: &str, query: &str, ct: &str) -> (String, String, String, String, String) {
        let r = labels(method, path, query, ct);
        (r.verb, r.group, r.resource, r.subresource, r.scope)
    }

    fn t(verb: &str, group: &str, resource: &str, sub: &str, scope: &str) -> (String, String, String, String, String) {
        (verb.into(), group.into(), resource.into(), sub.into(), scope.into())
    }

    #[test]
    fn each_request_gets_kubes_verb_and_scope() {
        let cases = [
            (("GET", "/api/v1/pods", "", ""), t("LIST", "", "pods", "", "cluster")),
            (("GET", "/api/v1/namespaces/d/pods", "limit=500", ""), t("LIST", "", "pods", "", "namespace")),
            (("GET", "/api/v1/namespaces/d/pods", "watch=true&resourceVersion=5", ""), t("WATCH", "", "pods", "", "namespace")),
            (("GET", "/api/v1/watch/namespaces/d/pods", "", ""), t("WATCH", "", "pods", "", "namespace")),
            (("GET", "/api/v1/namespaces/d/pods/p", "", ""), t("GET", "", "pods", "", "resource")),
            (("POST", "/apis/apps/v1/namespaces/d/deployments", "", "application/json"), t("POST", "apps", "deployments", "", "resource")),
            (("PUT", "/api/v1/namespaces/d/pods/p/status", "", "application/json"), t("PUT", "", "pods", "status", "resource")),
            (("POST", "/api/v1/namespaces/d/pods/p/binding", "", ""), t("POST", "", "pods", "binding", "resource")),
            (
                ("PATCH", "/apis/apps/v1/namespaces/d/deployments/w", "", "application/apply-patch+yaml"),
                t("APPLY", "apps", "deployments", "", "resource"),
            ),
            (
                ("PATCH", "/api/v1/nodes/n1/status", "", "application/strategic-merge-patch+json"),
                t("PATCH", "", "nodes", "status", "resource"),
            ),
            (("DELETE", "/api/v1/namespaces/d/pods/p", "", ""), t("DELETE", "", "pods", "", "resource")),
            (("DELETE", "/api/v1/namespaces/d/pods", "", ""), t("DELETECOLLECTION", "", "pods", "", "namespace")),
            (("GET", "/api/v1/namespaces/d/pods/p/exec", "command=ls", ""), t("CONNECT", "", "pods", "exec", "resource")),
            (("GET", "/api/v1/nodes/n1/proxy/healthz", "", ""), t("CONNECT", "", "nodes", "proxy", "resource")),
            (("GET", "/api/v1/namespaces/d/pods/p/log", "", ""), t("GET", "", "pods", "log", "resource")),
            (("GET", "/healthz", "", ""), t("GET", "", "", "", "")),
            (("GET", "/apis/apps/v1", "", ""), t("GET", "", "", "", "")),
        ];
        for ((method, path, query, ct), want) in cases {
            assert_eq!(l(method, path, query, ct), want, "{method} {path}?{query}");
        }
    }

    #[test]
    fn answers_are_counted_by_code_and_long_running_ones_left_out_of_the_latencies() {
        let r = Requests::new();
        let list = labels("GET", "/api/v1/pods", "", "");
        r.observe(list.clone(), 200, 0.01);
        r.observe(list, 200, 0.02);
        r.observe(labels("POST", "/api/v1/namespaces/d/pods", "", ""), 409, 0.003);
        r.observe(labels("GET", "/api/v1/pods", "watch=1", ""), 200, 30.0);
        let text = r.render();
        let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_string);
        let total = line("apiserver_request_total{verb=\"LIST\"").expect("LIST counted");
        assert!(total.contains("resource=\"pods\"") && total.contains("code=\"200\"") && total.ends_with(" 2"), "{total}");
        let conflict = line("apiserver_request_total{verb=\"POST\"").expect("POST counted");
        assert!(conflict.contains("code=\"409\"") && conflict.ends_with(" 1"), "{conflict}");
        assert!(line("apiserver_request_total{verb=\"WATCH\"").is_some(), "WATCH counted:\n{text}");
        assert!(line("apiserver_request_duration_seconds_count{verb=\"LIST\"").is_some_and(|c| c.ends_with(" 2")), "{text}");
        assert!(line("apiserver_request_duration_seconds_count{verb=\"WATCH\"").is_none(), "no WATCH latency:\n{text}");
    }
}
