//! DELETE: of an object, of a collection's members, by eviction, and the namespace lifecycle,
//! as kube-apiserver splits the work with the controller-manager. What happens to one object
//! is [`deletion::plan`]'s: at once, gracefully, or held by finalizers; its dependents are the
//! garbage collector's (keel-controller-manager): a DELETE only leaves the finalizers its
//! propagation asks for (`orphan`, `foregroundDeletion`). A namespace goes `Terminating` until
//! its controller has emptied it and removed the `kubernetes` finalizer through
//! `namespaces/<name>/finalize`.
//!
//! As kube's NamespaceLifecycle (unless `--disable-admission-plugins` names it): `default`,
//! `kube-system` and `kube-public` cannot be deleted (403), and nothing new is created in a
//! terminating namespace (403 with the `NamespaceTerminating` cause).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::meta;
use crate::rest::deletion::{self, Plan, Propagation};
use crate::rest::guarded::{Action, Updated, guarded, guarded_update};
use crate::rest::{Api, patch};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

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
    guarded(api, call, |current, obj| {
        check_preconditions(call, obj, current.mod_revision, &req.preconditions)?;
        crate::rest::node_restriction::admit(api, call, Some(obj), None)?;
        Ok(match deletion::plan(res, obj, req.grace, now, Some(&req.propagation)) {
            Plan::Keep => Action::Write(obj.clone()),
            Plan::Mark(marked) => Action::Write(marked),
            Plan::Delete => Action::Delete(obj.clone()),
        })
    })
    .await
}

/// A namespace's first DELETE: `deletionTimestamp`,
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
pub async fn delete(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = call.name()?.to_string();
    let opts = patch::delete_options(call)?;
    let req = Request::from_options(opts.as_ref(), call)?;
    let dry_run =
        call.dry_run || opts.as_ref().and_then(|o| o.get("dryRun")).and_then(Value::as_array).is_some_and(|d| d.iter().any(|v| v == "All"));
    let call = &Call { dry_run, ..call.clone() };
    let namespace = res.group.is_empty() && res.plural == "namespaces";
    if namespace && UNDELETABLE.contains(&name.as_str()) && api.admission_plugins.contains("NamespaceLifecycle") {
        return Err(ApiError::Forbidden { resource: "namespaces".into(), name, why: "this namespace may not be deleted".into() });
    }
    let done = if namespace { delete_namespace(api, call, &req).await? } else { delete_one(api, call, &req).await? };
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
