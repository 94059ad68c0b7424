//! One object: get, create, update (also of `/status`), patch, server-side apply, delete.
//! Objects are stored as JSON at their key ([`crate::storage::keys`]) and `resourceVersion`
//! is the key's mod_revision. A create is guarded by "absent", every other change goes
//! through [`guarded`], so a concurrent writer yields 409 Conflict rather than a lost update.
//! Updates without a resourceVersion of their own (and patches) retry against the newer
//! object instead.

use crate::error::ApiError;
use crate::http::request::{Call, Media};
use crate::registry::meta::{self, Fresh};
use crate::registry::priorityclasses;
use crate::registry::strategy::Write;
use crate::registry::{RESOURCES, Resource, Subresource};
use crate::rest::admission::{self, Admission};
use crate::rest::deletion::{self, Plan};
use crate::rest::guarded::{Action, Updated, guarded, guarded_update};
use crate::rest::{Api, conflict, gc, managed, patch};
use crate::storage::{Written, keys};
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
    let mut obj = meta::prepare_create(res, ns, obj, fresh)?;
    admission::prepare(api, call, true).await?.admit(call, &mut obj)?;
    let mut obj = finish(call, obj, None)?;
    if obj.pointer("/metadata/managedFields").is_none() {
        record(api, call, None, &mut obj);
    }
    ensure_namespace(api, res, ns).await?;
    let name = meta::name_of(&obj).unwrap_or_default().to_string();
    let k = keys::key(res, ns, &name);
    let lease = if res.kind == "Event" { api.event_leases.lease(&api.store, api.now_secs()).await? } else { 0 };
    let stored = res.strategy.to_storage(obj.clone())?;
    if call.dry_run {
        if api.store.get(&k).await?.is_some() {
            return Err(ApiError::AlreadyExists { resource: res.qualified(), name });
        }
        return Ok(obj);
    }
    match api.store.put_if(&k, meta::for_store(&stored), 0, lease).await? {
        Written::At(rev) => {
            meta::set_resource_version(&mut obj, rev);
            Ok(obj)
        }
        Written::Guard(_) => Err(ApiError::AlreadyExists { resource: res.qualified(), name }),
    }
}

/// The namespaces every cluster has, created if missing.
pub const BUILT_IN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what every cluster has and is missing: the [`BUILT_IN_NAMESPACES`] and the system
/// PriorityClasses.
pub async fn bootstrap(api: &Api) -> Result<(), ApiError> {
    let mut wanted = Vec::new();
    if let Some(res) = crate::registry::find("", "v1", "namespaces") {
        wanted.extend(BUILT_IN_NAMESPACES.iter().map(|n| (res, json!({"metadata": {"name": n}}))));
    }
    if let Some(res) = crate::registry::find("scheduling.k8s.io", "v1", "priorityclasses") {
        wanted.extend(priorityclasses::SYSTEM.iter().map(|(n, v, d)| (res, priorityclasses::system_class(n, *v, d))));
    }
    for (res, obj) in wanted {
        match create_object(api, &Call::internal(res, "keel-apiserver"), obj).await {
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

/// Deletes what namespace `ns` holds, every resource of it.
async fn empty_namespace(api: &Api, ns: &str) -> Result<(), ApiError> {
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        api.store.delete_prefix(&keys::prefix(r, Some(ns))).await?;
    }
    Ok(())
}

/// The preconditions of a DELETE: (resourceVersion, uid).
fn preconditions(opts: Option<&Value>) -> (Option<i64>, Option<String>) {
    let rv = opts.and_then(|o| o.pointer("/preconditions/resourceVersion")).and_then(Value::as_str).and_then(|r| r.parse::<i64>().ok());
    let uid = opts.and_then(|o| o.pointer("/preconditions/uid")).and_then(Value::as_str).map(str::to_string);
    (rv, uid)
}

/// 409 for a precondition `obj` (stored at `rv`) does not meet, as kube words it.
pub fn check_preconditions(call: &Call, obj: &Value, rv: i64, want: &(Option<i64>, Option<String>)) -> Result<(), ApiError> {
    let refused =
        |why: String| ApiError::Refused { resource: call.target.res.qualified(), name: call.target.name.clone().unwrap_or_default(), why };
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    if let Some(u) = want.1.as_deref().filter(|u| *u != uid) {
        return Err(refused(format!("Precondition failed: UID in precondition: {u}, UID in object meta: {uid}")));
    }
    if let Some(r) = want.0.filter(|r| *r != rv) {
        return Err(refused(format!("Precondition failed: ResourceVersion in precondition: {r}, ResourceVersion in object meta: {rv}")));
    }
    Ok(())
}

/// The one step of every delete path (see [`deletion`]): the guarded write or delete the plan
/// asks for, on the object the call names.
pub async fn delete_one(api: &Api, call: &Call, grace: Option<i64>, want: &(Option<i64>, Option<String>)) -> Result<Updated, ApiError> {
    let res = call.target.res;
    let now = api.clock.now();
    guarded(api, call, |current, obj| {
        check_preconditions(call, obj, current.mod_revision, want)?;
        Ok(match deletion::plan(res, obj, grace, now) {
            Plan::Keep => Action::Write(obj.clone()),
            Plan::Mark(marked) => Action::Write(marked),
            Plan::Delete => Action::Delete(obj.clone()),
        })
    })
    .await
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

/// DELETE of an object, as [`deletion`] plans it (at once, gracefully, or held by finalizers),
/// with its dependents by the request's propagationPolicy ([`gc`]). Deleting a namespace
/// deletes what it holds first.
pub async fn delete(api: &Arc<Api>, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = call.name()?.to_string();
    let opts = patch::delete_options(call)?;
    let policy = gc::policy(opts.as_ref(), call.query.get("propagationPolicy").map(String::as_str))?;
    let grace = deletion::grace_of(opts.as_ref(), call.query.get("gracePeriodSeconds").map(String::as_str))?;
    let want = preconditions(opts.as_ref());
    let dry_run =
        call.dry_run || opts.as_ref().and_then(|o| o.get("dryRun")).and_then(Value::as_array).is_some_and(|d| d.iter().any(|v| v == "All"));
    let call = &Call { dry_run, ..call.clone() };
    let (_, first) = api.read(call).await?;
    let first = api.view(call, &first)?;
    let uid = first.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let ns = call.target.namespace.clone();
    let immediate = deletion::plan(res, &first, grace, api.clock.now()) == Plan::Delete && !has_finalizers(&first);
    if immediate && !dry_run {
        if policy == gc::Policy::Foreground {
            gc::settle(api.clone(), uid.clone(), ns.clone(), policy).await?;
        }
        if res.kind == "Namespace" {
            empty_namespace(api, &name).await?;
        }
    }
    let done = delete_one(api, call, grace, &want).await?;
    if let (Updated::Deleted(_), false) = (&done, dry_run) {
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
