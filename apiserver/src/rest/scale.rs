//! The `/scale` subresource of deployments and replicasets: `spec.replicas` read and written
//! as an `autoscaling/v1` Scale (what `kubectl scale` and autoscalers use). A PUT may carry the
//! Scale's resourceVersion as a precondition; a PATCH (merge or JSON patch) applies to the
//! Scale and retries against a newer object if it loses a race.

use crate::error::ApiError;
use crate::http::json;
use crate::http::request::{Call, Media};
use crate::registry::meta;
use crate::rest::guarded::guarded_update;
use crate::rest::{Api, conflict, managed, patch};
use crate::storage::decode;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// The Scale view of `obj`.
pub fn scale_of(obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let labels = obj.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
    let selector = labels.into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",");
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    })
}

/// GET `.../scale`.
pub async fn get(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let (_, s) = api.read(call).await?;
    Ok(json(StatusCode::OK, &scale_of(&decode(&s)?)))
}

/// PUT or PATCH `.../scale`. A PUT's Scale may carry a resourceVersion precondition.
pub async fn set(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = call.name()?.to_string();
    let now = api.now_rfc3339();
    let api_version = res.api_version();
    let w = managed::Writer { manager: &call.manager, api_version: &api_version, now: &now, subresource: Some("scale") };
    let done = guarded_update(api, call, |current, old| {
        let mut obj = old.clone();
        let scale = scale_of(&obj);
        let wanted = match call.media {
            // A PUT body is the whole Scale (kubectl sends it without a Content-Type).
            Media::Protobuf | Media::Yaml => return Err(ApiError::UnsupportedMediaType),
            Media::Json => serde_json::from_slice(&call.body).map_err(|e| ApiError::BadRequest(format!("invalid Scale: {e}")))?,
            m => patch::apply(m, &scale, &call.body)?,
        };
        let precondition = meta::resource_version_of(&wanted)?;
        if precondition != 0 && precondition != current.mod_revision {
            return Err(conflict(call));
        }
        let replicas = wanted.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::Invalid {
                kind: "Scale".into(),
                name: name.clone(),
                causes: vec![("spec.replicas".into(), format!("Invalid value: {replicas}: must be greater than or equal to 0"))],
            });
        }
        if obj.pointer("/spec/replicas").and_then(Value::as_i64) != Some(replicas) {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("replicas".into(), json!(replicas));
            }
            let g = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("generation".into(), json!(g));
            }
        }
        managed::record_update(Some(old), &mut obj, &w, true);
        Ok(obj)
    })
    .await?;
    Ok(json(StatusCode::OK, &scale_of(done.object())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_shows_replicas_and_the_selector() {
        let d = json!({
            "metadata": {"name": "d", "namespace": "n", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}}},
            "status": {"replicas": 2}
        });
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=d"}));
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }
}
