//! One object: get, create, update (also of `/status`), patch (server-side apply is
//! [`crate::rest::apply`]'s, DELETE [`crate::rest::delete`]'s).
//! Objects are stored as JSON at their key ([`crate::storage::keys`]) and `resourceVersion`
//! is the key's mod_revision. A create is guarded by "absent", every other change goes
//! through [`mod@crate::rest::guarded`], so a concurrent writer yields 409 Conflict rather than a lost update.
//! Updates without a resourceVersion of their own (and patches) retry against the newer
//! object instead.

use crate::error::ApiError;
use crate::http::request::{Call, Media};
use crate::registry::Subresource;
use crate::registry::meta::{self, Fresh};
use crate::registry::priorityclasses;
use crate::registry::strategy::Write;
use crate::rest::admission::{self, Admission};
use crate::rest::guarded::guarded_update;
use crate::rest::{Api, conflict, managed, patch, services};
use crate::storage::{Written, keys};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

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
pub(crate) fn finish(call: &Call, obj: Value, old: Option<&Value>) -> Result<Value, ApiError> {
    let res = call.target.res;
    let strict = call.query.get("fieldValidation").is_some_and(|v| v == "Strict");
    let version = res.api_version();
    let write = Write { old, status: call.target.sub == Some(Subresource::Status), version: &version };
    res.strategy.finish(res.kind, obj, write, strict)
}

/// GET of one object.
pub async fn get(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let (_, s) = api.read(call).await?;
    Ok(api.answer(call, StatusCode::OK, &api.view(call, &s)?))
}

async fn ensure_namespace(api: &Api, call: &Call, name: &str, namespace: Option<&str>) -> Result<(), ApiError> {
    let res = call.target.res;
    let Some(ns) = namespace.filter(|_| res.namespaced) else { return Ok(()) };
    match api.store.get(&format!("/registry/namespaces/{ns}")).await? {
        Some(s) => crate::rest::delete::refuse_if_terminating(api, call, name, &crate::storage::decode(&s)?),
        None => Err(ApiError::NamespaceNotFound(ns.into())),
    }
}

/// How often a create plans its side writes (allocations, quota charges) again.
const CREATE_ATTEMPTS: usize = 64;

/// Writes a new object: fails with AlreadyExists if the name is taken.
pub async fn create_object(api: &Api, call: &Call, obj: Value) -> Result<Value, ApiError> {
    let res = call.target.res;
    let ns = call.target.namespace.as_deref();
    let fresh = Fresh { now: api.now_rfc3339(), uid: api.ids.uid(), suffix: api.ids.suffix() };
    let mut obj = meta::prepare_create(res, ns, obj, fresh)?;
    // NamespaceLifecycle first, as kube orders its admission plugins.
    let name = meta::name_of(&obj).unwrap_or_default().to_string();
    ensure_namespace(api, call, &name, ns).await?;
    admission::prepare(api, call, true).await?.admit(call, &mut obj)?;
    let mut obj = finish(call, obj, None)?;
    admission::limit_ranger(api, call, &mut obj).await?;
    admission::service_account(api, call, &mut obj).await?;
    crate::rest::quota::fill_status(api, call, &mut obj).await?;
    crate::rest::node_restriction::admit(api, call, None, Some(&obj))?;
    crate::rest::escalation::admit(api, call, None, &obj)?;
    if obj.pointer("/metadata/managedFields").is_none() {
        record(api, call, None, &mut obj);
    }
    let name = meta::name_of(&obj).unwrap_or_default().to_string();
    let k = keys::key(res, ns, &name);
    let lease = if res.kind == "Event" { api.event_leases.lease(&api.store, api.now_secs()).await? } else { 0 };
    // A Service's allocations and the quotas charged are planned again when a claim lost a
    // race or a quota changed meanwhile (see rest::services, rest::quota): every lost race is
    // another writer's success, so a quota of N lets a create lose at most N times before it
    // is refused; the bound is generous.
    for _ in 0..CREATE_ATTEMPTS {
        let mut obj = obj.clone();
        let claims = services::plan(api, call, &mut obj, None).await?;
        let charges = crate::rest::quota::charge_create(api, call, &obj).await?;
        let stored = res.strategy.to_storage(obj.clone())?;
        if call.dry_run {
            if api.store.get(&k).await?.is_some() {
                return Err(ApiError::AlreadyExists { resource: res.qualified(), name });
            }
            return Ok(obj);
        }
        let written = if claims.is_empty() && charges.is_empty() {
            api.store.put_if(&k, meta::for_store(&stored), 0, lease).await?
        } else {
            let value = Some((meta::for_store(&stored), lease));
            api.store.write_with(&k, value, 0, &services::side_keys(&claims), &claims.free, &charges).await?
        };
        match written {
            Written::At(rev) => {
                meta::set_resource_version(&mut obj, rev);
                return Ok(obj);
            }
            Written::Guard(None) if !claims.is_empty() || !charges.is_empty() => continue,
            Written::Guard(_) => return Err(ApiError::AlreadyExists { resource: res.qualified(), name }),
        }
    }
    Err(conflict(call))
}

/// The namespaces every cluster has, created if missing.
pub const BUILT_IN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what every cluster has and is missing: the [`BUILT_IN_NAMESPACES`], the system
/// PriorityClasses and the `default/kubernetes` Service (its Endpoints are
/// [`services::run_endpoints`]'s).
pub async fn bootstrap(api: &Api) -> Result<(), ApiError> {
    let mut wanted = Vec::new();
    if let Some(res) = crate::registry::find("", "v1", "namespaces") {
        wanted.extend(BUILT_IN_NAMESPACES.iter().map(|n| (res, json!({"metadata": {"name": n}}))));
    }
    if let Some(res) = crate::registry::find("scheduling.k8s.io", "v1", "priorityclasses") {
        wanted.extend(priorityclasses::SYSTEM.iter().map(|(n, v, d)| (res, priorityclasses::system_class(n, *v, d))));
    }
    if let Some(res) = crate::registry::find("", "v1", "services") {
        let port = api.advertise.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(6443);
        wanted.push((res, services::kubernetes_service(port)));
    }
    for (res, obj) in wanted {
        let mut call = Call::internal(res, "keel-apiserver");
        call.target.namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
        match create_object(api, &call, obj).await {
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
/// kind's rules, admission, and the write recorded in managedFields.
fn updated(api: &Api, call: &Call, adm: &Admission, old: &Value, sent: Value) -> Result<Value, ApiError> {
    let status = call.target.sub == Some(Subresource::Status);
    let new = meta::prepare_update(call.target.res, old, sent, status)?;
    let mut new = finish(call, new, Some(old))?;
    adm.admit(call, &mut new)?;
    crate::rest::node_restriction::admit(api, call, Some(old), Some(&new))?;
    crate::rest::escalation::admit(api, call, Some(old), &new)?;
    record(api, call, Some(old), &mut new);
    Ok(new)
}

/// PUT of an object (or its `/status`). A resourceVersion in the body is a precondition.
pub async fn update(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let sent = patch::body(call)?;
    let precondition = meta::resource_version_of(&sent)?;
    let adm = admission::prepare(api, call, false).await?;
    let done = guarded_update(api, call, |current, old| {
        if precondition != 0 && precondition != current.mod_revision {
            return Err(conflict(call));
        }
        updated(api, call, &adm, old, sent.clone())
    })
    .await?;
    Ok(api.answer(call, StatusCode::OK, done.object()))
}

/// PATCH of an object (or its `/status`); server-side apply for `application/apply-patch+yaml`.
pub async fn patch(api: &Api, call: &Call) -> Result<Response, ApiError> {
    if call.media == Media::Apply {
        return crate::rest::apply::apply(api, call).await;
    }
    let adm = admission::prepare(api, call, false).await?;
    let done = guarded_update(api, call, |current, old| {
        let patched = patch::apply(call.media, old, &call.body)?;
        // A resourceVersion the patch sets is a precondition, as in Kubernetes.
        let wanted = meta::resource_version_of(&patched)?;
        if wanted != 0 && wanted != current.mod_revision {
            return Err(conflict(call));
        }
        updated(api, call, &adm, old, patched)
    })
    .await?;
    Ok(api.answer(call, StatusCode::OK, done.object()))
}
