//! Create, get, list, update, patch and delete of one resource, over [`crate::store`]:
//! objects live as JSON at `/registry/<plural>/<namespace>/<name>` (cluster-scoped:
//! `/registry/<plural>/<name>`), `resourceVersion` is the key's mod_revision, and every write
//! is guarded by the revision it was computed from, so a concurrent writer yields 409 Conflict
//! rather than a lost update. Updates without a resourceVersion of their own (and patches)
//! retry against the newer object instead.

use crate::api::{Api, Call, Media, Output, json};
use crate::error::ApiError;
use crate::meta::{self, Fresh};
use crate::registry::{RESOURCES, Resource, Subresource};
use crate::store::{Stored, Written};
use crate::{defaults, gc, managed, smp, strict, table};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// Attempts of an unconditional update or a patch that keeps losing races.
const RETRIES: usize = 8;

/// The store key of an object.
pub fn key(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if res.namespaced => format!("/registry/{}/{ns}/{name}", res.plural),
        _ => format!("/registry/{}/{name}", res.plural),
    }
}

/// The store prefix of a collection (every namespace when `namespace` is None).
pub fn prefix(res: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if res.namespaced => format!("/registry/{}/{ns}/", res.plural),
        _ => format!("/registry/{}/", res.plural),
    }
}

/// Now, as Kubernetes writes timestamps (RFC 3339, seconds).
pub(crate) fn now_rfc3339(api: &Api) -> String {
    api.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Records `new` (over `old`) as written by the call's field manager.
fn record(api: &Api, call: &Call, old: Option<&Value>, new: &mut Value) {
    let now = now_rfc3339(api);
    let api_version = call.target.res.api_version();
    let sub = call.target.sub.map(Subresource::name);
    let w = managed::Writer { manager: &call.manager, api_version: &api_version, now: &now, subresource: sub };
    managed::record_update(old, new, &w, call.target.res.has(Subresource::Status));
}

/// The object stored in `s`, with its resourceVersion.
pub fn decode(s: &Stored) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&s.value).map_err(|e| ApiError::Corrupt { key: s.key.clone(), reason: e.to_string() })?;
    meta::set_resource_version(&mut v, s.mod_revision);
    Ok(v)
}

fn now_secs(api: &Api) -> i64 {
    api.clock.now().as_second()
}

/// One object answered as JSON, or as a one-row Table when kubectl asks for one.
pub fn answer(api: &Api, call: &Call, code: StatusCode, obj: &Value) -> Response {
    match call.output {
        Output::Table => {
            let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
            json(code, &table::table(call.target.res.kind, std::slice::from_ref(obj), rv, None, now_secs(api)))
        }
        Output::Json => json(code, obj),
    }
}

fn name_of(call: &Call) -> Result<&str, ApiError> {
    call.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)
}

fn not_found(res: &Resource, name: &str) -> ApiError {
    ApiError::NotFound { resource: res.qualified(), name: name.into() }
}

/// The object the call's path names: its key and what is stored (404 if nothing).
pub(crate) async fn read(api: &Api, call: &Call) -> Result<(String, Stored), ApiError> {
    let name = name_of(call)?;
    let k = key(call.target.res, call.target.namespace.as_deref(), name);
    match api.store.get(&k).await? {
        Some(s) => Ok((k, s)),
        None => Err(not_found(call.target.res, name)),
    }
}

/// GET of one object.
pub async fn get(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let (_, s) = read(api, call).await?;
    Ok(answer(api, call, StatusCode::OK, &decode(&s)?))
}

fn parse_body(call: &Call) -> Result<Value, ApiError> {
    if call.body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    match call.media {
        Media::Json => {}
        Media::Protobuf => return crate::protobuf::decode(&call.body),
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

/// Defaults, the schema check and (with `fieldValidation=Strict`) the unknown-field check: the
/// object as stored (in its schema's form: unknown fields dropped).
fn finish(call: &Call, mut obj: Value) -> Result<Value, ApiError> {
    let res = call.target.res;
    defaults::apply(res.kind, &mut obj);
    let typed = (res.decode)(&obj).map_err(|e| ApiError::BadRequest(format!("{} in body: {e}", res.kind)))?;
    let causes = crate::validation::validate(res.kind, &typed);
    if !causes.is_empty() {
        let name = meta::name_of(&typed).unwrap_or_default().to_string();
        return Err(ApiError::Invalid { kind: res.kind.into(), name, causes });
    }
    if call.query.get("fieldValidation").is_some_and(|v| v == "Strict") {
        let unknown = strict::unknown_fields(&obj, &typed);
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
            return Err(ApiError::BadRequest(format!("strict decoding error: {}", list.join(", "))));
        }
    }
    Ok(typed)
}

async fn ensure_namespace(api: &Api, res: &Resource, namespace: Option<&str>) -> Result<(), ApiError> {
    let Some(ns) = namespace.filter(|_| res.namespaced) else { return Ok(()) };
    match api.store.get(&format!("/registry/namespaces/{ns}")).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NamespaceNotFound(ns.into())),
    }
}

/// The lease events are written with (they expire like kube-apiserver's `--event-ttl`).
async fn event_lease(api: &Api) -> Result<i64, ApiError> {
    let now = now_secs(api);
    let mut cached = api.event_lease.lock().await;
    // One lease per minute of events, living the TTL past the last of them.
    if let Some((id, granted)) = *cached
        && now - granted < 60
    {
        return Ok(id);
    }
    let ttl = api.event_ttl.as_secs() as i64 + 60;
    let id = api.store.grant(ttl).await?;
    *cached = Some((id, now));
    Ok(id)
}

/// Writes a new object: fails with AlreadyExists if the name is taken.
pub async fn create_object(api: &Api, call: &Call, obj: Value) -> Result<Value, ApiError> {
    let res = call.target.res;
    let ns = call.target.namespace.as_deref();
    let fresh = Fresh { now: now_rfc3339(api), uid: api.ids.uid(), suffix: api.ids.suffix() };
    let obj = meta::prepare_create(res, ns, obj, fresh)?;
    let mut obj = finish(call, obj)?;
    if obj.pointer("/metadata/managedFields").is_none() {
        record(api, call, None, &mut obj);
    }
    ensure_namespace(api, res, ns).await?;
    let name = meta::name_of(&obj).unwrap_or_default().to_string();
    let k = key(res, ns, &name);
    let lease = if res.kind == "Event" { event_lease(api).await? } else { 0 };
    match api.store.put_if(&k, meta::for_store(&obj), 0, lease).await? {
        Written::At(rev) => {
            meta::set_resource_version(&mut obj, rev);
            Ok(obj)
        }
        Written::Guard(_) => Err(ApiError::AlreadyExists { resource: res.qualified(), name }),
    }
}

/// The namespaces every cluster has (`default`, `kube-system`, `kube-public`,
/// `kube-node-lease`), created if missing.
pub async fn bootstrap(api: &Api) -> Result<(), ApiError> {
    let Some(res) = crate::registry::find("", "v1", "namespaces") else { return Ok(()) };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let call = Call {
            target: crate::api::Target { res, namespace: None, name: None, sub: None },
            query: Default::default(),
            output: Output::Json,
            media: Media::Json,
            body: Default::default(),
            manager: "keel-apiserver".into(),
        };
        match create_object(api, &call, json!({"metadata": {"name": name}})).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// POST to a collection.
pub async fn create(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let obj = create_object(api, call, parse_body(call)?).await?;
    Ok(answer(api, call, StatusCode::CREATED, &obj))
}

/// Stores `new` over `current` (computed from it): a write guarded by its revision, or a delete
/// when the object was being deleted and its last finalizer is gone.
async fn replace(api: &Api, key: &str, current: &Stored, mut new: Value) -> Result<Option<Value>, ApiError> {
    if meta::for_store(&new) == current.value.as_ref() {
        meta::set_resource_version(&mut new, current.mod_revision);
        return Ok(Some(new));
    }
    let deleting = new.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
    let finalizers = new.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let written = if deleting && !finalizers {
        api.store.delete_if(key, current.mod_revision).await?
    } else {
        api.store.put_if(key, meta::for_store(&new), current.mod_revision, 0).await?
    };
    match written {
        Written::At(rev) => {
            meta::set_resource_version(&mut new, rev);
            Ok(Some(new))
        }
        Written::Guard(_) => Ok(None),
    }
}

/// PUT of an object (or its `/status`).
pub async fn update(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let sent = parse_body(call)?;
    let precondition = meta::resource_version_of(&sent)?;
    let res = call.target.res;
    let name = name_of(call)?.to_string();
    for _ in 0..RETRIES {
        let (k, current) = read(api, call).await?;
        if precondition != 0 && precondition != current.mod_revision {
            return Err(ApiError::Conflict { resource: res.qualified(), name });
        }
        let old = decode(&current)?;
        let new = meta::prepare_update(res, &old, sent.clone(), call.target.sub == Some(Subresource::Status))?;
        let mut new = finish(call, new)?;
        record(api, call, Some(&old), &mut new);
        if let Some(obj) = replace(api, &k, &current, new).await? {
            return Ok(answer(api, call, StatusCode::OK, &obj));
        }
        if precondition != 0 {
            return Err(ApiError::Conflict { resource: res.qualified(), name });
        }
    }
    Err(ApiError::Conflict { resource: res.qualified(), name })
}

/// `patch` applied to `doc`.
pub fn apply_patch(media: Media, doc: &Value, patch: &[u8]) -> Result<Value, ApiError> {
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
        Media::Apply => return Err(ApiError::Unsupported("server-side apply is not supported yet".into())),
        Media::Json | Media::Protobuf | Media::Yaml => return Err(ApiError::UnsupportedMediaType),
    }
    Ok(out)
}

/// Server-side apply: a PATCH with `application/apply-patch+yaml` (the configuration as YAML
/// or JSON). Creates the object if it does not exist.
async fn server_side_apply(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = name_of(call)?.to_string();
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
    let now = now_rfc3339(api);
    let api_version = res.api_version();
    let w = managed::Writer { manager: &call.manager, api_version: &api_version, now: &now, subresource: None };
    let skip_status = res.has(Subresource::Status);
    let conflict = |conflicts: Vec<managed::Conflict>| ApiError::ApplyConflict { resource: res.qualified(), name: name.clone(), conflicts };
    for _ in 0..RETRIES {
        let k = key(res, call.target.namespace.as_deref(), &name);
        let Some(current) = api.store.get(&k).await? else {
            let mut config = config.clone();
            if let Some(m) = config.as_object_mut().and_then(|o| o.entry("metadata").or_insert_with(|| json!({})).as_object_mut()) {
                m.insert("name".into(), json!(name));
            }
            let obj = managed::apply(None, &config, &w, force, skip_status).map_err(conflict)?;
            match create_object(api, call, obj).await {
                Ok(created) => return Ok(answer(api, call, StatusCode::CREATED, &created)),
                Err(ApiError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        };
        let old = decode(&current)?;
        let merged = managed::apply(Some(&old), &config, &w, force, skip_status).map_err(conflict)?;
        let new = meta::prepare_update(res, &old, merged, false)?;
        let new = finish(call, new)?;
        if let Some(obj) = replace(api, &k, &current, new).await? {
            return Ok(answer(api, call, StatusCode::OK, &obj));
        }
    }
    Err(ApiError::Conflict { resource: res.qualified(), name })
}

/// PATCH of an object (or its `/status`).
pub async fn patch(api: &Api, call: &Call) -> Result<Response, ApiError> {
    if call.media == Media::Apply {
        return server_side_apply(api, call).await;
    }
    let res = call.target.res;
    let name = name_of(call)?.to_string();
    for _ in 0..RETRIES {
        let (k, current) = read(api, call).await?;
        let old = decode(&current)?;
        let patched = apply_patch(call.media, &old, &call.body)?;
        // A resourceVersion the patch sets is a precondition, as in Kubernetes.
        let wanted = meta::resource_version_of(&patched)?;
        if wanted != 0 && wanted != current.mod_revision {
            return Err(ApiError::Conflict { resource: res.qualified(), name });
        }
        let new = meta::prepare_update(res, &old, patched, call.target.sub == Some(Subresource::Status))?;
        let mut new = finish(call, new)?;
        record(api, call, Some(&old), &mut new);
        if let Some(obj) = replace(api, &k, &current, new).await? {
            return Ok(answer(api, call, StatusCode::OK, &obj));
        }
    }
    Err(ApiError::Conflict { resource: res.qualified(), name })
}

/// The DeleteOptions body, if any.
fn delete_options(call: &Call) -> Result<Option<Value>, ApiError> {
    if call.body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&call.body).map(Some).map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))
}

/// Deletes what namespace `ns` holds, every resource of it.
async fn empty_namespace(api: &Api, ns: &str) -> Result<(), ApiError> {
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        api.store.delete_prefix(&prefix(r, Some(ns))).await?;
    }
    Ok(())
}

/// DELETE of an object: gone at once, or (with finalizers) marked with a deletionTimestamp
/// until they are removed; its dependents by the request's propagationPolicy ([`gc`]).
/// Deleting a namespace deletes what it holds first.
pub async fn delete(api: &Arc<Api>, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let name = name_of(call)?.to_string();
    let opts = delete_options(call)?;
    let policy = gc::policy(opts.as_ref(), call.query.get("propagationPolicy").map(String::as_str))?;
    let want_rv =
        opts.as_ref().and_then(|o| o.pointer("/preconditions/resourceVersion")).and_then(Value::as_str).and_then(|r| r.parse::<i64>().ok());
    let want_uid = opts.as_ref().and_then(|o| o.pointer("/preconditions/uid")).and_then(Value::as_str).map(str::to_string);
    for _ in 0..RETRIES {
        let (k, current) = read(api, call).await?;
        let mut obj = decode(&current)?;
        let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
        if want_rv.is_some_and(|r| r != current.mod_revision) || want_uid.as_ref().is_some_and(|u| Some(u) != uid.as_ref()) {
            return Err(ApiError::Conflict { resource: res.qualified(), name });
        }
        let finalizers = obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if finalizers {
            if obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Ok(answer(api, call, StatusCode::OK, &obj));
            }
            meta::mark_deleting(&mut obj, &now_rfc3339(api));
            match api.store.put_if(&k, meta::for_store(&obj), current.mod_revision, 0).await? {
                Written::At(rev) => {
                    meta::set_resource_version(&mut obj, rev);
                    return Ok(answer(api, call, StatusCode::OK, &obj));
                }
                Written::Guard(_) => continue,
            }
        }
        if res.kind == "Namespace" {
            empty_namespace(api, &name).await?;
        }
        let ns = call.target.namespace.clone();
        let owner = uid.clone().unwrap_or_default();
        if policy == gc::Policy::Foreground {
            gc::settle(api.clone(), owner.clone(), ns.clone(), policy).await?;
        }
        match api.store.delete_if(&k, current.mod_revision).await? {
            Written::At(_) => {
                match policy {
                    gc::Policy::Foreground => {}
                    gc::Policy::Orphan => gc::settle(api.clone(), owner, ns, policy).await?,
                    gc::Policy::Background => {
                        let api = api.clone();
                        tokio::spawn(async move {
                            if let Err(e) = gc::settle(api, owner, ns, policy).await {
                                tracing::warn!("deleting dependents: {e}");
                            }
                        });
                    }
                }
                return Ok(answer(api, call, StatusCode::OK, &obj));
            }
            Written::Guard(_) => continue,
        }
    }
    Err(ApiError::Conflict { resource: res.qualified(), name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes_layout() {
        let Some(pods) = crate::registry::find("", "v1", "pods") else { panic!("served") };
        let Some(nodes) = crate::registry::find("", "v1", "nodes") else { panic!("served") };
        assert_eq!(key(pods, Some("default"), "p"), "/registry/pods/default/p");
        assert_eq!(key(nodes, None, "n"), "/registry/nodes/n");
        assert_eq!(prefix(pods, None), "/registry/pods/");
    }

    #[test]
    fn merge_json_and_strategic_patches_apply() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"unschedulable": false}});
        let out = apply_patch(Media::MergePatch, &doc, br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        let out = apply_patch(Media::StrategicMergePatch, &doc, br#"{"spec":{"unschedulable":true}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["unschedulable"], true);
        let out = apply_patch(Media::JsonPatch, &doc, br#"[{"op":"replace","path":"/spec/unschedulable","value":true}]"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["unschedulable"], true);
        let taints =
            apply_patch(Media::StrategicMergePatch, &doc, br#"{"spec":{"taints":[{"key":"k"}]}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(taints["spec"]["taints"], json!([{"key": "k"}]));
        assert!(apply_patch(Media::JsonPatch, &doc, br#"[{"op":"test","path":"/spec/unschedulable","value":true}]"#).is_err());
    }
}
