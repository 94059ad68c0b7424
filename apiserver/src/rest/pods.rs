//! Pod subresources that act rather than store: `binding` (the scheduler's POST of a Binding:
//! sets `spec.nodeName` once and `PodScheduled=True`; a pod already bound answers 409) and
//! `eviction` (`kubectl drain`: deletes the pod the way a DELETE does).

use crate::error::ApiError;
use crate::http::json;
use crate::http::request::Call;
use crate::registry::meta;
use crate::rest::Api;
use crate::rest::guarded::guarded_update;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

fn body(call: &Call, kind: &str) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(&call.body).map_err(|e| ApiError::BadRequest(format!("invalid {kind}: {e}")))?;
    if v.get("kind").and_then(Value::as_str).is_some_and(|k| k != kind) {
        return Err(ApiError::BadRequest(format!("expected a {kind}")));
    }
    Ok(v)
}

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

/// POST `pods/<name>/binding`, as kube's BindingREST: the Binding's uid and resourceVersion
/// are preconditions; a pod being deleted, already bound or scheduling-gated is refused; the
/// pod gets `spec.nodeName`, the Binding's annotations and `PodScheduled=True`.
pub async fn bind(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let binding = body(call, "Binding")?;
    let name = call.name()?.to_string();
    let invalid =
        |field: &str, why: String| ApiError::Invalid { kind: "Binding".into(), name: name.clone(), causes: vec![(field.into(), why)] };
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("target.name", "Required value".into()))?;
    if let Some(kind) = binding.pointer("/target/kind").and_then(Value::as_str).filter(|k| !k.is_empty() && *k != "Node") {
        return Err(invalid("target.kind", format!("Unsupported value: {kind:?}: supported values: \"Node\", \"<empty>\"")));
    }
    if binding.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest("name in URL does not match name in Binding object".into()));
    }
    let want_uid = binding.pointer("/metadata/uid").and_then(Value::as_str).filter(|u| !u.is_empty()).map(str::to_string);
    let want_rv = meta::resource_version_of(&binding)?;
    let annotations = binding.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    let refused = |why: String| ApiError::Refused { resource: "pods/binding".into(), name: name.clone(), why };
    let now = api.now_rfc3339();
    guarded_update(api, call, |current, old| {
        let want = ((want_rv != 0).then_some(want_rv), want_uid.clone());
        crate::rest::delete::check_preconditions(call, old, current.mod_revision, &want)?;
        let mut pod = old.clone();
        if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(refused(format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        if let Some(bound) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::AlreadyBound { name: name.clone(), node: bound.to_string() });
        }
        if pod.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
            return Err(refused(format!("pod {name} has non-empty .spec.schedulingGates")));
        }
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        }
        if !annotations.is_empty()
            && let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let a = m.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = a.as_object_mut() {
                a.extend(annotations.clone());
            }
        }
        scheduled(&mut pod, &now);
        Ok(pod)
    })
    .await?;
    Ok(json(StatusCode::CREATED, &success(201)))
}

/// Sets the `PodScheduled=True` condition (kube's UpdatePodCondition: the transition time moves
/// only when the status changes).
fn scheduled(pod: &mut Value, now: &str) {
    let Some(o) = pod.as_object_mut() else { return };
    let status = o.entry("status").or_insert_with(|| json!({}));
    let Some(st) = status.as_object_mut() else { return };
    let conditions = st.entry("conditions").or_insert_with(|| json!([]));
    let Some(list) = conditions.as_array_mut() else { return };
    let fresh = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    match list.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => *c = fresh,
        None => list.push(fresh),
    }
}

/// POST `pods/<name>/eviction`: the pod is deleted as a DELETE with the Eviction's
/// deleteOptions would delete it (gracefully when bound; no PodDisruptionBudgets are served,
/// so nothing blocks an eviction).
pub async fn evict(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let eviction = body(call, "Eviction")?;
    let opts = eviction.get("deleteOptions");
    let req = crate::rest::delete::Request::from_options(opts, call)?;
    crate::rest::delete::delete_one(api, call, &req).await?;
    Ok(json(StatusCode::CREATED, &success(201)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_marks_the_pod_scheduled_once() {
        let mut pod = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
        scheduled(&mut pod, "2030-01-01T00:00:00Z");
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2030-01-01T00:00:00Z"}])
        );
        scheduled(&mut pod, "2030-01-01T00:01:00Z");
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "2030-01-01T00:00:00Z", "unchanged status keeps its time");
        let mut bare = json!({"spec": {}});
        scheduled(&mut bare, "t");
        assert_eq!(bare["status"]["conditions"][0]["type"], "PodScheduled");
    }
}
