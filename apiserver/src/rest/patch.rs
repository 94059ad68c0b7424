//! Request bodies as objects, without I/O: a JSON, YAML or protobuf body as the object it
//! carries, and a patch (merge, JSON or strategic merge) applied to a document.

use crate::error::ApiError;
use crate::http::request::{Call, Media};
use crate::rest::smp;
use serde_json::Value;

/// The object a create or update body carries.
pub fn body(call: &Call) -> Result<Value, ApiError> {
    if call.body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    match call.media {
        Media::Json => {}
        Media::Protobuf => return crate::http::protobuf::decode(&call.body),
        Media::Yaml => return yaml(&call.body),
        _ => return Err(ApiError::UnsupportedMediaType),
    }
    serde_json::from_slice(&call.body).map_err(|e| ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}")))
}

/// One YAML document as JSON (serde-saphyr bounds what a document may expand to).
fn yaml(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_saphyr::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest("the body must be a YAML mapping (one object)".into()));
    }
    Ok(v)
}

/// The DeleteOptions body, if any.
pub fn delete_options(call: &Call) -> Result<Option<Value>, ApiError> {
    if call.body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&call.body).map(Some).map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))
}

/// `patch` applied to `doc`.
pub fn apply(media: Media, doc: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let bad = |e: String| ApiError::BadRequest(e);
    let mut out = doc.clone();
    match media {
        Media::MergePatch => {
            let p: Value = serde_json::from_slice(patch).map_err(|e| bad(format!("invalid patch: {e}")))?;
            json_patch::merge(&mut out, &p);
        }
        Media::StrategicMergePatch => {
            let p: Value = serde_json::from_slice(patch).map_err(|e| bad(format!("invalid patch: {e}")))?;
            out = smp::apply(doc, &p).map_err(|e| bad(format!("invalid strategic merge patch: {e}")))?;
        }
        Media::JsonPatch => {
            let p: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| bad(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| bad(format!("the JSON patch does not apply: {e}")))?;
        }
        Media::Apply => return Err(ApiError::Unsupported("server-side apply is not supported here".into())),
        Media::Json | Media::Protobuf | Media::Yaml => return Err(ApiError::UnsupportedMediaType),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_json_and_strategic_patches_apply() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"unschedulable": false}});
        let out = apply(Media::MergePatch, &doc, br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        let out = apply(Media::StrategicMergePatch, &doc, br#"{"spec":{"unschedulable":true}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["unschedulable"], true);
        let out = apply(Media::JsonPatch, &doc, br#"[{"op":"replace","path":"/spec/unschedulable","value":true}]"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["unschedulable"], true);
        let taints = apply(Media::StrategicMergePatch, &doc, br#"{"spec":{"taints":[{"key":"k"}]}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(taints["spec"]["taints"], json!([{"key": "k"}]));
        assert!(apply(Media::JsonPatch, &doc, br#"[{"op":"test","path":"/spec/unschedulable","value":true}]"#).is_err());
    }
}
