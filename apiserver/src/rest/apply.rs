//! Server-side apply (a PATCH with `application/apply-patch+yaml`; kubectl and kube-rs send the
//! configuration as JSON): the merge and field ownership are [`managed`]'s, the write goes
//! through [`guarded_update`]. On the main resource an apply creates the object if it does not
//! exist and leaves status alone (when the kind has a status subresource); on `/status` it
//! applies the configuration's status only, owned as the manager's `status` entry, and a
//! missing object is 404.

use crate::error::{ApiError, FieldConflict};
use crate::http::request::Call;
use crate::registry::Subresource;
use crate::registry::meta;
use crate::rest::guarded::{self, guarded_update};
use crate::rest::object::{create_object, finish};
use crate::rest::{Api, conflict, managed};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

/// What an apply to `/status` applies: the configuration's status (with its type and name).
fn status_part(config: &Value) -> Value {
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "status"] {
        if let Some(v) = config.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(name) = config.pointer("/metadata/name") {
        out.insert("metadata".into(), json!({"name": name}));
    }
    Value::Object(out)
}

/// PATCH with `application/apply-patch+yaml`.
pub async fn apply(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = call.name()?.to_string();
    if call.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return Err(ApiError::BadRequest("PATCH, fieldManager is required for apply requests".into()));
    }
    let config: Value = serde_json::from_slice(&call.body).map_err(|_| {
        ApiError::Unsupported(
            "apply configurations are read as JSON (which kubectl and kube-rs send); YAML ones are not supported yet".into(),
        )
    })?;
    if meta::name_of(&config).is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest("the name of the object does not match the name on the URL".into()));
    }
    let status = call.target.sub == Some(Subresource::Status);
    let config = if status { status_part(&config) } else { config };
    let force = call.query.get("force").is_some_and(|f| f == "true");
    let now = api.now_rfc3339();
    let api_version = res.api_version();
    let sub = status.then_some("status");
    let w = managed::Writer { manager: &call.manager, api_version: &api_version, now: &now, subresource: sub };
    let skip_status = res.has(Subresource::Status) && !status;
    let conflicts = |c: Vec<FieldConflict>| ApiError::ApplyConflict { resource: res.qualified(), name: name.clone(), conflicts: c };
    let adm = crate::rest::admission::prepare(api, call, false).await?;
    for _ in 0..guarded::RETRIES {
        let applied = guarded_update(api, call, |_, old| {
            let merged = managed::apply(Some(old), &config, &w, force, skip_status).map_err(conflicts)?;
            let mut new = meta::prepare_update(res, old, merged.clone(), status)?;
            if status {
                // prepare_update keeps all but status from the stored object; the apply's
                // ownership is news too.
                if let (Some(m), Some(fields)) =
                    (new.get_mut("metadata").and_then(Value::as_object_mut), merged.pointer("/metadata/managedFields"))
                {
                    m.insert("managedFields".into(), fields.clone());
                }
            }
            let mut new = finish(call, new, Some(old))?;
            adm.admit(call, &mut new)?;
            crate::rest::node_restriction::admit(api, call, Some(old), Some(&new))?;
            crate::rest::escalation::admit(api, call, Some(old), &new)?;
            Ok(new)
        })
        .await;
        match applied {
            Ok(done) => return Ok(api.answer(call, StatusCode::OK, done.object())),
            Err(ApiError::NotFound { .. }) if !status => {}
            Err(e) => return Err(e),
        }
        let mut config = config.clone();
        if let Some(m) = config.as_object_mut().and_then(|o| o.entry("metadata").or_insert_with(|| json!({})).as_object_mut()) {
            m.insert("name".into(), json!(name));
        }
        let obj = managed::apply(None, &config, &w, force, skip_status).map_err(conflicts)?;
        match create_object(api, call, obj).await {
            Ok(created) => return Ok(api.answer(call, StatusCode::CREATED, &created)),
            Err(ApiError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(conflict(call))
}
