//! Pod subresources that act rather than store: `binding` (the scheduler's POST of a Binding:
//! sets `spec.nodeName` once; a pod already bound answers 409) and `eviction` (`kubectl drain`:
//! deletes the pod; no PodDisruptionBudgets are served, so nothing blocks an eviction).

use crate::error::ApiError;
use crate::http::json;
use crate::http::request::Call;
use crate::rest::guarded::{Action, guarded, guarded_update};
use crate::rest::{Api, conflict};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

fn body(call: &Call, kind: &str) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(&call.body).map_err(|e| ApiError::BadRequest(format!("invalid {kind}: {e}")))?;
    if v.get("kind").and_then(Value::as_str).is_some_and(|k| k != kind) {
        return Err(ApiError::BadRequest(format!("expected a {kind}")));
    }
    Ok(v)
}

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

/// POST `pods/<name>/binding`.
pub async fn bind(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let binding = body(call, "Binding")?;
    let name = call.name()?.to_string();
    let node = binding.pointer("/target/name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| ApiError::Invalid {
        kind: "Binding".into(),
        name: name.clone(),
        causes: vec![("target.name".into(), "Required value".into())],
    })?;
    guarded_update(api, call, |_, old| {
        let mut pod = old.clone();
        if let Some(bound) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::AlreadyBound { name: name.clone(), node: bound.to_string() });
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(conflict(call));
        }
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        }
        Ok(pod)
    })
    .await?;
    Ok(json(StatusCode::CREATED, &success(201)))
}

/// POST `pods/<name>/eviction`.
pub async fn evict(api: &Api, call: &Call) -> Result<Response, ApiError> {
    body(call, "Eviction")?;
    guarded(api, call, |_, old| Ok(Action::Delete(old.clone()))).await?;
    Ok(json(StatusCode::CREATED, &success(201)))
}
