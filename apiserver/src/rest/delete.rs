//! DELETE: of an object, of a collection's members, by eviction, and the namespace lifecycle.
//! What happens to one object is [`deletion::plan`]'s: at once, gracefully, or held by
//! finalizers. What happens to its dependents depends on who collects garbage:
//!
//! - the apiserver itself (`gc_in_apiserver`, today's default): [`gc`] cascades by the request's
//!   propagationPolicy (Orphan strips the owner references before the owner goes; Foreground
//!   deletes the dependents first; Background right after), and deleting a namespace deletes
//!   what it holds;
//! - the controller-manager's collector: the DELETE only leaves kube's finalizers (`orphan`,
//!   `foregroundDeletion`), and a namespace goes `Terminating` until its controller has emptied
//!   it and removed the `kubernetes` finalizer through `namespaces/<name>/finalize`.
//!
//! Always, as kube's NamespaceLifecycle: `default`, `kube-system` and `kube-public` cannot be
//! deleted (403), and nothing new is created in a terminating namespace (403 with the
//! `NamespaceTerminating` cause).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::{RESOURCES, meta};
use crate::rest::deletion::{self, Plan, Propagation};
use crate::rest::guarded::{Action, Updated, guarded, guarded_update};
use crate::rest::{Api, gc, patch};
use crate::storage::keys;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// Namespaces that may not be deleted (kube's NamespaceLifecycle).
pub const UNDELETABLE: &[&str] = &["default", "kube-system", "kube-public"];

/// What a DELETE asks for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// Preconditions: (resourceVersion, uid).
    pub preconditions: (Option<i64>, Option<String>),
    /// The explicit propagation.
    pub propagation: Propagation,
}

impl Request {
    /// The DELETE's options: the DeleteOptions body, else the query.
    pub fn of(call: &Call) -> Result<Request, ApiError> {
        let opts = patch::delete_options(call)?;
        Request::from_options(opts.as_ref(), call)
    }

    /// From DeleteOptions (a DELETE's body, an Eviction's `deleteOptions`) and the query.
    pub fn from_options(opts: Option<&Value>, call: &Call) -> Result<Request, ApiError> {
        let q = |k: &str| call.query.get(k).map(String::as_str);
        let rv = opts.and_then(|o| o.pointer("/preconditions/resourceVersion")).and_then(Value::as_str).and_then(|r| r.parse::<i64>().ok());
        let uid = opts.and_then(|o| o.pointer("/preconditions/uid")).and_then(Value::as_str).map(str::to_string);
        Ok(Request {
            grace: deletion::grace_of(opts, q("gracePeriodSeconds"))?,
            preconditions: (rv, uid),
            propagation: deletion::propagation_of(opts, q("propagationPolicy"))?,
        })
    }
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

/// The one step of every delete path: the guarded write or delete [`deletion::plan`] asks for,
/// on the object the call names.
pub async fn delete_one(api: &Api, call: &Call, req: &Request) -> Result<Updated, ApiError> {
    let res = call.target.res;
    let now = api.clock.now();
    let gc = (!api.gc_in_apiserver).then_some(&req.propagation);
    guarded(api, call, |current, obj| {
        check_preconditions(call, obj, current.mod_revision, &req.preconditions)?;
        Ok(match deletion::plan(res, obj, req.grace, now, gc) {
            Plan::Keep => Action::Write(obj.clone()),
            Plan::Mark(marked) => Action::Write(marked),
            Plan::Delete => Action::Delete(obj.clone()),
        })
    })
    .await
}

/// Deletes what namespace `ns` holds, every resource of it (the apiserver's own collection).
async fn empty_namespace(api: &Api, ns: &str) -> Result<(), ApiError> {
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        api.store.delete_prefix(&keys::prefix(r, Some(ns))).await?;
    }
    Ok(())
}

/// A namespace's first DELETE, with the controller-manager collecting: `deletionTimestamp`,
/// phase `Terminating` and the propagation's finalizers; later ones delete it once its
/// `spec.finalizers` are gone (kube's namespace REST Delete).
async fn delete_namespace(api: &Api, call: &Call, req: &Request) -> Result<Updated, ApiError> {
    let now = api.now_rfc3339();
    guarded(api, call, |current, obj| {
        check_preconditions(call, obj, current.mod_revision, &req.preconditions)?;
        let spec_finalizers = obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
        if deleting && !spec_finalizers {
            return Ok(match deletion::plan(call.target.res, obj, req.grace, api.clock.now(), Some(&req.propagation)) {
                Plan::Keep => Action::Write(obj.clone()),
                Plan::Mark(marked) => Action::Write(marked),
                Plan::Delete => Action::Delete(obj.clone()),
            });
        }
        let mut ns = obj.clone();
        if let Some(f) = req.propagation.finalizers(&ns)
            && let Some(m) = ns.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.insert("finalizers".into(), json!(f));
        }
        if let Some(m) = ns.get_mut("metadata").and_then(Value::as_object_mut) {
            m.entry("deletionTimestamp").or_insert_with(|| json!(now));
            m.entry("deletionGracePeriodSeconds").or_insert_with(|| json!(0));
        }
        if let Some(o) = ns.as_object_mut() {
            let st = o.entry("status").or_insert_with(|| json!({}));
            st["phase"] = json!("Terminating");
        }
        Ok(Action::Write(ns))
    })
    .await
}

/// DELETE of an object (see the module doc).
pub async fn delete(api: &Arc<Api>, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = call.name()?.to_string();
    let opts = patch::delete_options(call)?;
    let req = Request::from_options(opts.as_ref(), call)?;
    let dry_run =
        call.dry_run || opts.as_ref().and_then(|o| o.get("dryRun")).and_then(Value::as_array).is_some_and(|d| d.iter().any(|v| v == "All"));
    let call = &Call { dry_run, ..call.clone() };
    let namespace = res.group.is_empty() && res.plural == "namespaces";
    if namespace && UNDELETABLE.contains(&name.as_str()) {
        return Err(ApiError::Forbidden { resource: "namespaces".into(), name, why: "this namespace may not be deleted".into() });
    }
    if !api.gc_in_apiserver {
        let done = if namespace { delete_namespace(api, call, &req).await? } else { delete_one(api, call, &req).await? };
        return Ok(api.answer(call, StatusCode::OK, done.object()));
    }
    let policy = gc::policy(opts.as_ref(), call.query.get("propagationPolicy").map(String::as_str))?;
    let (_, first) = api.read(call).await?;
    let first = api.view(call, &first)?;
    let uid = first.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let ns = call.target.namespace.clone();
    let immediate = deletion::plan(res, &first, req.grace, api.clock.now(), None) == Plan::Delete;
    if immediate && !dry_run {
        // Dependents first for Foreground; for Orphan, their references go before the owner
        // does, so a collector watching the owner never sees them owned by a deleted object.
        if matches!(policy, gc::Policy::Foreground | gc::Policy::Orphan) {
            gc::settle(api.clone(), uid.clone(), ns.clone(), policy).await?;
        }
        if namespace {
            empty_namespace(api, &name).await?;
        }
    }
    let done = delete_one(api, call, &req).await?;
    if let (Updated::Deleted(_), false, gc::Policy::Background) = (&done, dry_run, policy) {
        let api2 = api.clone();
        api.spawner.spawn(async move {
            if let Err(e) = gc::settle(api2, uid, ns, policy).await {
                tracing::warn!("deleting dependents: {e}");
            }
        });
    }
    Ok(api.answer(call, StatusCode::OK, done.object()))
}

/// PUT `namespaces/<name>/finalize`: only `spec.finalizers` changes; a terminating namespace
/// whose last finalizer goes is deleted ([`crate::rest::guarded::deletes`]).
pub async fn finalize(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let sent = patch::body(call)?;
    let precondition = meta::resource_version_of(&sent)?;
    let finalizers = sent.pointer("/spec/finalizers").cloned().unwrap_or_else(|| json!([]));
    let done = guarded_update(api, call, |current, old| {
        if precondition != 0 && precondition != current.mod_revision {
            return Err(crate::rest::conflict(call));
        }
        let mut ns = old.clone();
        if let Some(o) = ns.as_object_mut() {
            let spec = o.entry("spec").or_insert_with(|| json!({}));
            spec["finalizers"] = finalizers.clone();
        }
        Ok(ns)
    })
    .await?;
    Ok(api.answer(call, StatusCode::OK, done.object()))
}

/// 403 when `namespace` (as stored) is terminating: nothing new is created in it.
pub fn refuse_if_terminating(api: &Api, call: &Call, name: &str, namespace: &Value) -> Result<(), ApiError> {
    if !api.admission_plugins.contains("NamespaceLifecycle") {
        return Ok(());
    }
    let terminating = namespace.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        || namespace.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    if !terminating {
        return Ok(());
    }
    let ns = namespace.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    Err(ApiError::NamespaceTerminating { resource: call.target.res.qualified(), name: name.into(), namespace: ns })
}
