//! One object: get, create, update (also of `/status`), patch, server-side apply, delete.
//! Objects are stored as JSON at their key ([`crate::storage::keys`]) and `resourceVersion`
//! is the key's mod_revision. A create is guarded by "absent", every other change goes
//! through [`guarded`], so a concurrent writer yields 409 Conflict rather than a lost update.
//! Updates without a resourceVersion of their own (and patches) retry against the newer
//! object instead.

use crate::error::ApiError;
use crate::http::request::{Call, Media};
use crate::registry::meta::{self, Fresh};
use crate::registry::strategy::Write;
use crate::registry::{RESOURCES, Resource, Subresource};
use crate::rest::guarded::{self, Action, Updated, guarded, guarded_update};
use crate::rest::{Api, conflict, gc, managed, patch};
use crate::storage::{self, Written, keys};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// Records `new` (over `old`) as written by the call's field manager.
fn record(api: &Api, call: &Call, old: Option<&Value>, new: &mut Value) {
    let now = api.now_rfc3339();
    let api_version = call.target.res.api_version();
    let sub = call.target.sub.map(Subresource::name);
    let w = managed::Writer { manager: &call.manager, api_version: &api_version, now: &now, subresource: sub };
    managed::record_update(old, new, &w, call.target.res.has(Subresource::Status));
}

/// The kind's rules applied to `obj` (decode, reset on create, defaults, validation, and with
/// `fieldValidation=Strict` the unknown-field check): the object as stored.
fn finish(call: &Call, obj: Value, old: Option<&Value>) -> Result<Value, ApiError> {
    let res = call.target.res;
    let strict = call.query.get("fieldValidation").is_some_and(|v| v == "Strict");
    let write = Write { old, status: call.target.sub == Some(Subresource::Status) };
    res.strategy.finish(res.kind, obj, write, strict)
}

/// GET of one object.
pub async fn get(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let (_, s) = api.read(call).await?;
    Ok(api.answer(call, StatusCode::OK, &storage::decode(&s)?))
}

async fn ensure_namespace(api: &Api, res: &Resource, namespace: Option<&str>) -> Result<(), ApiError> {
    let Some(ns) = namespace.filter(|_| res.namespaced) else { return Ok(()) };
    match api.store.get(&format!("/registry/namespaces/{ns}")).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NamespaceNotFound(ns.into())),
    }
}

/// Writes a new object: fails with AlreadyExists if the name is taken.
pub async fn create_object(api: &Api, call: &Call, obj: Value) -> Result<Value, ApiError> {
    let res = call.target.res;
    let ns = call.target.namespace.as_deref();
    let fresh = Fresh { now: api.now_rfc3339(), uid: api.ids.uid(), suffix: api.ids.suffix() };
    let obj = meta::prepare_create(res, ns, obj, fresh)?;
    let mut obj = finish(call, obj, None)?;
    if obj.pointer("/metadata/managedFields").is_none() {
        record(api, call, None, &mut obj);
    }
    ensure_namespace(api, res, ns).await?;
    let name = meta::name_of(&obj).unwrap_or_default().to_string();
    let k = keys::key(res, ns, &name);
    let lease = if res.kind == "Event" { api.event_leases.lease(&api.store, api.now_secs()).await? } else { 0 };
    match api.store.put_if(&k, meta::for_store(&obj), 0, lease).await? {
        Written::At(rev) => {
            meta::set_resource_version(&mut obj, rev);
            Ok(obj)
        }
        Written::Guard(_) => Err(ApiError::AlreadyExists { resource: res.qualified(), name }),
    }
}

/// The namespaces every cluster has, created if missing.
pub const BUILT_IN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the [`BUILT_IN_NAMESPACES`] that do not exist yet.
pub async fn bootstrap(api: &Api) -> Result<(), ApiError> {
    let Some(res) = crate::registry::find("", "v1", "namespaces") else { return Ok(()) };
    let call = Call::internal(res, "keel-apiserver");
    for name in BUILT_IN_NAMESPACES {
        match create_object(api, &call, json!({"metadata": {"name": name}})).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// POST to a collection.
pub async fn create(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let obj = create_object(api, call, patch::body(call)?).await?;
    Ok(api.answer(call, StatusCode::CREATED, &obj))
}

/// The object an update stores over `old`: `sent` with the server's metadata rules, the
/// kind's rules, and the write recorded in managedFields.
fn updated(api: &Api, call: &Call, old: &Value, sent: Value) -> Result<Value, ApiError> {
    let status = call.target.sub == Some(Subresource::Status);
    let new = meta::prepare_update(call.target.res, old, sent, status)?;
    let mut new = finish(call, new, Some(old))?;
    record(api, call, Some(old), &mut new);
    Ok(new)
}

/// PUT of an object (or its `/status`). A resourceVersion in the body is a precondition.
pub async fn update(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let sent = patch::body(call)?;
    let precondition = meta::resource_version_of(&sent)?;
    let done = guarded_update(api, call, |current, old| {
        if precondition != 0 && precondition != current.mod_revision {
            return Err(conflict(call));
        }
        updated(api, call, old, sent.clone())
    })
    .await?;
    Ok(api.answer(call, StatusCode::OK, done.object()))
}

/// PATCH of an object (or its `/status`); server-side apply for `application/apply-patch+yaml`.
pub async fn patch(api: &Api, call: &Call) -> Result<Response, ApiError> {
    if call.media == Media::Apply {
        return server_side_apply(api, call).await;
    }
    let done = guarded_update(api, call, |current, old| {
        let patched = patch::apply(call.media, old, &call.body)?;
        // A resourceVersion the patch sets is a precondition, as in Kubernetes.
        let wanted = meta::resource_version_of(&patched)?;
        if wanted != 0 && wanted != current.mod_revision {
            return Err(conflict(call));
        }
        updated(api, call, old, patched)
    })
    .await?;
    Ok(api.answer(call, StatusCode::OK, done.object()))
}

/// Server-side apply: a PATCH with `application/apply-patch+yaml` (the configuration as JSON,
/// which kubectl and kube-rs send). Creates the object if it does not exist.
async fn server_side_apply(api: &Api, call: &Call) -> Result<Response, ApiError> {
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
    let force = call.query.get("force").is_some_and(|f| f == "true");
    let now = api.now_rfc3339();
    let api_version = res.api_version();
    let w = managed::Writer { manager: &call.manager, api_version: &api_version, now: &now, subresource: None };
    let skip_status = res.has(Subresource::Status);
    let conflicts =
        |c: Vec<crate::error::FieldConflict>| ApiError::ApplyConflict { resource: res.qualified(), name: name.clone(), conflicts: c };
    for _ in 0..guarded::RETRIES {
        let applied = guarded_update(api, call, |_, old| {
            let merged = managed::apply(Some(old), &config, &w, force, skip_status).map_err(conflicts)?;
            let new = meta::prepare_update(res, old, merged, false)?;
            finish(call, new, Some(old))
        })
        .await;
        match applied {
            Ok(done) => return Ok(api.answer(call, StatusCode::OK, done.object())),
            Err(ApiError::NotFound { .. }) => {}
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

/// Deletes what namespace `ns` holds, every resource of it.
async fn empty_namespace(api: &Api, ns: &str) -> Result<(), ApiError> {
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        api.store.delete_prefix(&keys::prefix(r, Some(ns))).await?;
    }
    Ok(())
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

/// The preconditions of a DELETE: (resourceVersion, uid).
fn preconditions(opts: Option<&Value>) -> (Option<i64>, Option<String>) {
    let rv = opts.and_then(|o| o.pointer("/preconditions/resourceVersion")).and_then(Value::as_str).and_then(|r| r.parse::<i64>().ok());
    let uid = opts.and_then(|o| o.pointer("/preconditions/uid")).and_then(Value::as_str).map(str::to_string);
    (rv, uid)
}

/// DELETE of an object: gone at once, or (with finalizers) marked with a deletionTimestamp
/// until they are removed; its dependents by the request's propagationPolicy ([`gc`]).
/// Deleting a namespace deletes what it holds first.
pub async fn delete(api: &Arc<Api>, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = call.name()?.to_string();
    let opts = patch::delete_options(call)?;
    let policy = gc::policy(opts.as_ref(), call.query.get("propagationPolicy").map(String::as_str))?;
    let (want_rv, want_uid) = preconditions(opts.as_ref());
    let (_, first) = api.read(call).await?;
    let first = storage::decode(&first)?;
    let uid = first.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let ns = call.target.namespace.clone();
    if !has_finalizers(&first) {
        if policy == gc::Policy::Foreground {
            gc::settle(api.clone(), uid.clone(), ns.clone(), policy).await?;
        }
        if res.kind == "Namespace" {
            empty_namespace(api, &name).await?;
        }
    }
    let done = guarded(api, call, |current, obj| {
        let uid_now = obj.pointer("/metadata/uid").and_then(Value::as_str);
        if want_rv.is_some_and(|r| r != current.mod_revision) || want_uid.as_deref().is_some_and(|u| Some(u) != uid_now) {
            return Err(conflict(call));
        }
        if !has_finalizers(obj) {
            return Ok(Action::Delete(obj.clone()));
        }
        let mut marked = obj.clone();
        if marked.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null) {
            meta::mark_deleting(&mut marked, &api.now_rfc3339());
        }
        Ok(Action::Write(marked))
    })
    .await?;
    if let Updated::Deleted(_) = &done {
        match policy {
            gc::Policy::Foreground => {}
            gc::Policy::Orphan => gc::settle(api.clone(), uid, ns, policy).await?,
            gc::Policy::Background => {
                let api2 = api.clone();
                api.spawner.spawn(async move {
                    if let Err(e) = gc::settle(api2, uid, ns, policy).await {
                        tracing::warn!("deleting dependents: {e}");
                    }
                });
            }
        }
    }
    Ok(api.answer(call, StatusCode::OK, done.object()))
}
