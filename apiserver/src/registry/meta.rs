//! Object metadata rules, without I/O: what a create sets (uid, creationTimestamp, generation,
//! a name from generateName), what an update keeps (uid, creationTimestamp; status on the main
//! resource, everything but status on `/status`), when generation moves (spec changes only),
//! and name validation. The store never holds `resourceVersion`: it is the key's mod_revision,
//! set on the way out.

use crate::error::ApiError;
use crate::registry::{Resource, Subresource};
use serde_json::{Map, Value, json};

/// What a create needs from outside: the time and fresh identifiers (seams, so tests and the
/// simulation decide them).
pub struct Fresh {
    /// RFC 3339 time in seconds (`2026-11-26T05:00:00Z`).
    pub now: String,
    /// A new uid.
    pub uid: String,
    /// Five characters for generateName.
    pub suffix: String,
}

fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let o = obj.as_object_mut().ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if m.is_null() {
        *m = json!({});
    }
    m.as_object_mut().ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))
}

/// `metadata.name`, if any.
pub fn name_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/name").and_then(Value::as_str)
}

/// Sets `metadata.resourceVersion` (as the string Kubernetes uses).
pub fn set_resource_version(obj: &mut Value, revision: i64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// The `metadata.resourceVersion` a client sent: the precondition of its update (0: none).
pub fn resource_version_of(obj: &Value) -> Result<i64, ApiError> {
    match obj.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => {
            s.parse::<i64>().ok().filter(|r| *r > 0).ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion {s:?}")))
        }
        Some(other) => Err(ApiError::BadRequest(format!("metadata.resourceVersion must be a string, not {other}"))),
    }
}

/// Checks `kind` and `apiVersion` against the URL's resource (filling them in when absent).
fn check_type(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let o = obj.as_object_mut().ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    for (field, want) in [("kind", res.kind.to_string()), ("apiVersion", res.api_version())] {
        match o.get(field) {
            None | Some(Value::Null) => {
                o.insert(field.into(), Value::String(want));
            }
            Some(Value::String(s)) if *s == want => {}
            Some(got) => {
                return Err(ApiError::BadRequest(format!(
                    "the API version in the data ({}) does not match the expected API version ({}) or the kind ({}) does not match {}",
                    o.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                    res.api_version(),
                    got,
                    res.kind
                )));
            }
        }
    }
    Ok(())
}

/// The object a create stores: type checked, named, namespaced, stamped.
pub fn prepare_create(res: &Resource, namespace: Option<&str>, mut obj: Value, fresh: Fresh) -> Result<Value, ApiError> {
    check_type(res, &mut obj)?;
    let m = meta_mut(&mut obj)?;
    let name = match m.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => match m.get("generateName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            Some(g) => format!("{g}{}", fresh.suffix),
            None => {
                return Err(ApiError::Invalid {
                    kind: res.kind.into(),
                    name: String::new(),
                    causes: vec![("metadata.name".into(), "Required value: name or generateName is required".into())],
                });
            }
        },
    };
    if let Some(problem) = crate::registry::validation::name_problem(&name, res.label_names) {
        return Err(ApiError::Invalid { kind: res.kind.into(), name, causes: vec![("metadata.name".into(), problem)] });
    }
    m.insert("name".into(), Value::String(name));
    match (res.namespaced, namespace) {
        (true, Some(ns)) => match m.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            _ => {
                m.insert("namespace".into(), Value::String(ns.into()));
            }
        },
        _ => {
            m.remove("namespace");
        }
    }
    m.insert("uid".into(), Value::String(fresh.uid));
    m.insert("creationTimestamp".into(), Value::String(fresh.now));
    m.remove("resourceVersion");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    if res.has_spec {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    Ok(obj)
}

/// The metadata a write never changes: the server's fields.
const SYSTEM_FIELDS: &[&str] =
    &["name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"];

/// On `/status`: every top-level field but metadata and status as stored, and the metadata
/// fields the kind's status strategy resets (kube's status strategies reset spec; deployments
/// also labels, pods also ownerReferences).
fn keep_all_but_status(res: &Resource, old: &Value, new: &mut Value) {
    let Some(o) = new.as_object_mut() else { return };
    let own = |k: &str| matches!(k, "metadata" | "status" | "apiVersion" | "kind");
    o.retain(|k, _| own(k));
    for (k, v) in old.as_object().into_iter().flatten().filter(|(k, _)| !own(k)) {
        o.insert(k.clone(), v.clone());
    }
    let old_meta = old.get("metadata");
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in res.strategy.status_resets() {
            match old_meta.and_then(|om| om.get(*field)) {
                Some(v) => m.insert(field.to_string(), v.clone()),
                None => m.remove(*field),
            };
        }
    }
}

/// The object an update stores, from what is stored (`old`) and what the client sent (`new`).
/// On the main resource `status` stays as stored when the resource has a status subresource;
/// on `/status` (`status_only`) everything else stays as stored but the metadata the client
/// may change (labels, annotations, finalizers: as kube's status strategies).
pub fn prepare_update(res: &Resource, old: &Value, mut new: Value, status_only: bool) -> Result<Value, ApiError> {
    check_type(res, &mut new)?;
    let keep_status = res.has(Subresource::Status) && !status_only;
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let m = meta_mut(&mut new)?;
    if let Some(given) = m.get("name").and_then(Value::as_str)
        && Some(given) != old_meta.get("name").and_then(Value::as_str)
    {
        return Err(ApiError::BadRequest("the name of the object does not match the name on the URL".into()));
    }
    for field in SYSTEM_FIELDS {
        match old_meta.get(*field) {
            Some(v) => m.insert(field.to_string(), v.clone()),
            None => m.remove(*field),
        };
    }
    m.remove("resourceVersion");
    if status_only {
        keep_all_but_status(res, old, &mut new);
        return Ok(new);
    }
    if let Some(o) = new.as_object_mut()
        && keep_status
    {
        match old.get("status") {
            Some(s) => o.insert("status".into(), s.clone()),
            None => o.remove("status"),
        };
    }
    if res.has_spec && old.get("spec") != new.get("spec") {
        let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("generation".into(), json!(g));
        }
    }
    Ok(new)
}

/// The stored form: everything but `resourceVersion`.
pub fn for_store(obj: &Value) -> Vec<u8> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn fresh() -> Fresh {
        Fresh { now: "2026-11-26T00:00:00Z".into(), uid: "u-1".into(), suffix: "x7k2p".into() }
    }

    fn res(group: &str, plural: &str) -> &'static Resource {
        match find(group, "v1", plural) {
            Some(r) => r,
            None => panic!("{plural} served"),
        }
    }

    #[test]
    fn a_create_is_stamped_and_typed() {
        let obj = json!({"metadata": {"generateName": "web-", "resourceVersion": "9"}, "spec": {}});
        let out = match prepare_create(res("apps", "deployments"), Some("default"), obj, fresh()) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(out["kind"], "Deployment");
        assert_eq!(out["apiVersion"], "apps/v1");
        assert_eq!(out["metadata"]["name"], "web-x7k2p");
        assert_eq!(out["metadata"]["namespace"], "default");
        assert_eq!(out["metadata"]["uid"], "u-1");
        assert_eq!(out["metadata"]["generation"], 1);
        assert!(out["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn bad_names_and_mismatched_types_are_refused() {
        let ns = res("", "namespaces");
        let e = prepare_create(ns, None, json!({"metadata": {"name": "Bad_Name"}}), fresh());
        assert!(matches!(e, Err(ApiError::Invalid { .. })), "{e:?}");
        let e = prepare_create(ns, None, json!({"kind": "Pod", "metadata": {"name": "ok"}}), fresh());
        assert!(matches!(e, Err(ApiError::BadRequest(_))), "{e:?}");
        let cm = res("", "configmaps");
        let e = prepare_create(cm, Some("a"), json!({"metadata": {"name": "c", "namespace": "b"}}), fresh());
        assert!(matches!(e, Err(ApiError::BadRequest(_))), "{e:?}");
        assert!(prepare_create(cm, Some("a"), json!({"metadata": {"name": "c.d-1"}}), fresh()).is_ok());
    }

    #[test]
    fn generation_moves_on_spec_changes_only_and_status_is_kept() {
        let d = res("apps", "deployments");
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let same = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"replicas": 7}});
        let out = prepare_update(d, &old, same, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["generation"], 3);
        assert_eq!(out["metadata"]["uid"], "u");
        assert_eq!(out["status"]["replicas"], 1, "status changes only through /status");
        let scaled = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}});
        let out = prepare_update(d, &old, scaled, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["generation"], 4);
        let status = json!({"metadata": {"name": "d"}, "spec": {"replicas": 9}, "status": {"replicas": 2}});
        let out = prepare_update(d, &old, status, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((out["spec"]["replicas"].clone(), out["status"]["replicas"].clone()), (json!(1), json!(2)));
    }

    #[test]
    fn resource_versions_parse_strictly() {
        assert_eq!(resource_version_of(&json!({"metadata": {}})).ok(), Some(0));
        assert_eq!(resource_version_of(&json!({"metadata": {"resourceVersion": "12"}})).ok(), Some(12));
        assert!(resource_version_of(&json!({"metadata": {"resourceVersion": "x"}})).is_err());
    }
}
