//! Pod subresources that act rather than store: `binding` (the scheduler's POST of a Binding:
//! sets `spec.nodeName` once; a pod already bound answers 409) and `eviction` (`kubectl drain`:
//! deletes the pod; no PodDisruptionBudgets are served, so nothing blocks an eviction).

use crate::api::{Api, Call, json};
use crate::crud::{self, decode};
use crate::error::ApiError;
use crate::meta;
use crate::store::Written;
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
    let name = call.target.name.clone().unwrap_or_default();
    let node = binding.pointer("/target/name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| ApiError::Invalid {
        kind: "Binding".into(),
        name: name.clone(),
        causes: vec![("target.name".into(), "Required value".into())],
    })?;
    let res = call.target.res;
    for _ in 0..8 {
        let (k, current) = crud::read(api, call).await?;
        let mut pod = decode(&current)?;
        if let Some(bound) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::AlreadyBound { name, node: bound.to_string() });
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::Conflict { resource: res.qualified(), name });
        }
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        }
        match api.store.put_if(&k, meta::for_store(&pod), current.mod_revision, 0).await? {
            Written::At(_) => return Ok(json(StatusCode::CREATED, &success(201))),
            Written::Guard(_) => continue,
        }
    }
    Err(ApiError::Conflict { resource: res.qualified(), name })
}

/// POST `pods/<name>/eviction`.
pub async fn evict(api: &Api, call: &Call) -> Result<Response, ApiError> {
    body(call, "Eviction")?;
    let res = call.target.res;
    let name = call.target.name.clone().unwrap_or_default();
    for _ in 0..8 {
        let (k, current) = crud::read(api, call).await?;
        match api.store.delete_if(&k, current.mod_revision).await? {
            Written::At(_) => return Ok(json(StatusCode::CREATED, &success(201))),
            Written::Guard(_) => continue,
        }
    }
    Err(ApiError::Conflict { resource: res.qualified(), name })
}
