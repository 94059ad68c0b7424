//! metrics.k8s.io/v1beta1 (`kubectl top`), computed on request as metrics-server would report
//! them: NodeMetrics from each node's kubelet summary, PodMetrics of the pods a kubelet runs
//! ([`crate::kubelet::metrics`]). Lists ask every kubelet at once; a kubelet that does not
//! answer leaves its node (and its pods) out, as metrics-server does, and a named object
//! without metrics is 404.

use crate::error::ApiError;
use crate::http::request::Query;
use crate::http::{MetricsTarget, json};
use crate::kubelet::{location, metrics};
use crate::registry::{self, selector::Selector};
use crate::rest::Api;
use crate::storage::keys;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn not_found(target: &MetricsTarget, name: &str) -> ApiError {
    let resource = if target.pods { "podmetrics.metrics.k8s.io" } else { "nodemetrics.metrics.k8s.io" };
    ApiError::NotFound { resource: resource.into(), name: name.into() }
}

async fn objects(api: &Api, plural: &str, namespace: Option<&str>, name: Option<&str>, query: &Query) -> Result<Vec<Value>, ApiError> {
    let res = registry::find("", "v1", plural).ok_or(ApiError::NoSuchPath)?;
    if let Some(name) = name {
        return Ok(api
            .store
            .get(&keys::key(res, namespace, name))
            .await?
            .map(|s| crate::storage::decode(&s))
            .transpose()?
            .into_iter()
            .collect());
    }
    let sel = Selector::parse(res, query.get("labelSelector").map(String::as_str), query.get("fieldSelector").map(String::as_str))?;
    let (stored, _) = api.store.list_all(&keys::prefix(res, namespace)).await?;
    let mut out = Vec::new();
    for s in &stored {
        let obj = crate::storage::decode(s)?;
        if sel.matches(&obj) {
            out.push(obj);
        }
    }
    Ok(out)
}

/// Summaries of the named nodes' kubelets, those that answer.
async fn summaries(api: &Api, nodes: &[Value]) -> BTreeMap<String, Value> {
    let asks = nodes.iter().map(|n| async move {
        let name = n.pointer("/metadata/name").and_then(Value::as_str)?.to_string();
        let loc = location::node_location(n, api.kubelets.preferred()).ok()?;
        match api.kubelets.summary(&loc).await {
            Ok(s) => Some((name, s)),
            Err(e) => {
                tracing::debug!("metrics: node {name}: {e}");
                None
            }
        }
    });
    futures::future::join_all(asks).await.into_iter().flatten().collect()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items})
}

/// Answers one metrics.k8s.io request.
pub async fn serve(api: &Api, target: MetricsTarget, query: Query) -> Result<Response, ApiError> {
    let now = api.now_rfc3339();
    let name = target.name.as_deref();
    if !target.pods {
        let nodes = objects(api, "nodes", None, name, &query).await?;
        let sums = summaries(api, &nodes).await;
        let items: Vec<Value> = nodes
            .iter()
            .filter_map(|n| metrics::node_metrics(n, sums.get(n.pointer("/metadata/name").and_then(Value::as_str)?)?, &now))
            .collect();
        return match name {
            Some(n) => items.into_iter().next().map(|m| json(StatusCode::OK, &m)).ok_or_else(|| not_found(&target, n)),
            None => Ok(json(StatusCode::OK, &list("NodeMetricsList", items))),
        };
    }
    let pods = objects(api, "pods", target.namespace.as_deref(), name, &query).await?;
    let node_of = |p: &Value| p.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
    let mut wanted: Vec<String> = pods.iter().filter_map(node_of).collect();
    wanted.sort();
    wanted.dedup();
    let mut nodes = Vec::new();
    for n in &wanted {
        nodes.extend(objects(api, "nodes", None, Some(n), &query).await?);
    }
    let sums = summaries(api, &nodes).await;
    let items: Vec<Value> = pods.iter().filter_map(|p| metrics::pod_metrics(p, sums.get(&node_of(p)?)?, &now)).collect();
    match name {
        Some(n) => items.into_iter().next().map(|m| json(StatusCode::OK, &m)).ok_or_else(|| not_found(&target, n)),
        None => Ok(json(StatusCode::OK, &list("PodMetricsList", items))),
    }
}
