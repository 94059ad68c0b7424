//! Strategic merge patch (`application/strategic-merge-patch+json`), what `kubectl apply`,
//! `set image`, `rollout restart`, `cordon` and `taint` send. No crate implements it; this is
//! Kubernetes' algorithm for the built-in types:
//!
//! - maps merge recursively; `null` deletes a field;
//! - lists with a merge key merge element by element (containers by `name`, container ports by
//!   `containerPort`, volume mounts by `mountPath`, …), [`list_kind`] holds the table;
//! - primitive lists with the merge strategy (`finalizers`) take the union;
//! - every other list is atomic: the patch's list replaces the old one (`taints`, `tolerations`,
//!   `args`, …);
//! - directives: `$patch: replace | delete | merge` on maps and list elements,
//!   `$setElementOrder/<list>`, `$retainKeys`, `$deleteFromPrimitiveList/<list>`.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Elements are objects identified by this key.
    Merge(&'static str),
    /// A set of primitives: union.
    Set,
    /// Replaced whole.
    Atomic,
}

/// The merge strategy of the list at `path` (field names from the root, list indices left out).
pub fn list_kind(path: &[String]) -> ListKind {
    let field = path.last().map(String::as_str).unwrap_or("");
    let parent = if path.len() >= 2 { path[path.len() - 2].as_str() } else { "" };
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => {
            ListKind::Merge("name")
        }
        "ports" if matches!(parent, "containers" | "initContainers" | "ephemeralContainers") => ListKind::Merge("containerPort"),
        "ports" if parent == "spec" => ListKind::Merge("port"),
        "volumeMounts" => ListKind::Merge("mountPath"),
        "volumeDevices" => ListKind::Merge("devicePath"),
        "hostAliases" => ListKind::Merge("ip"),
        "conditions" | "addresses" => ListKind::Merge("type"),
        "ownerReferences" => ListKind::Merge("uid"),
        "topologySpreadConstraints" => ListKind::Merge("topologyKey"),
        "finalizers" if parent == "metadata" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// Why a patch cannot apply.
pub type Error = String;

/// `patch` applied to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, Error> {
    let (Some(o), Some(p)) = (original.as_object(), patch.as_object()) else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    let mut out = o.clone();
    merge_map(&mut out, p, &mut Vec::new())?;
    Ok(Value::Object(out))
}

fn directive(m: &Map<String, Value>) -> Option<&str> {
    m.get("$patch").and_then(Value::as_str)
}

/// A patch value with its directives removed (what is stored when there is nothing to merge into).
fn clean(v: &Value, path: &mut Vec<String>) -> Result<Value, Error> {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            merge_map(&mut out, m, path)?;
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            let kept = items.iter().filter(|i| !i.as_object().is_some_and(|m| directive(m).is_some() && m.len() == 1));
            Ok(Value::Array(kept.map(|i| clean(i, path)).collect::<Result<_, _>>()?))
        }
        other => Ok(other.clone()),
    }
}

fn merge_map(orig: &mut Map<String, Value>, patch: &Map<String, Value>, path: &mut Vec<String>) -> Result<(), Error> {
    match directive(patch) {
        Some("replace") => {
            let mut rest = patch.clone();
            rest.remove("$patch");
            *orig = Map::new();
            return merge_map(orig, &rest, path);
        }
        Some("delete") => {
            *orig = Map::new();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type {other:?}")),
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pm) if directive(pm) == Some("delete") => {
                orig.remove(k);
            }
            Value::Object(pm) => match orig.get_mut(k) {
                Some(Value::Object(om)) => merge_map(om, pm, path)?,
                _ => {
                    orig.insert(k.clone(), clean(v, path)?);
                }
            },
            Value::Array(items) => {
                let old = orig.remove(k).and_then(|o| if let Value::Array(a) = o { Some(a) } else { None });
                orig.insert(k.clone(), Value::Array(merge_list(old.unwrap_or_default(), items, path)?));
            }
            other => {
                orig.insert(k.clone(), other.clone());
            }
        }
        path.pop();
    }
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(a)) = orig.get_mut(list) {
                a.retain(|x| !gone.contains(x));
            }
        }
    }
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix("$setElementOrder/") {
            path.push(list.to_string());
            let kind = list_kind(path);
            path.pop();
            if let (Some(Value::Array(a)), Some(order)) = (orig.get_mut(list), v.as_array()) {
                reorder(a, order, kind);
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|m| m.get(key))
}

fn merge_list(mut old: Vec<Value>, patch: &[Value], path: &mut Vec<String>) -> Result<Vec<Value>, Error> {
    match list_kind(path) {
        ListKind::Atomic => patch.iter().map(|v| clean(v, path)).collect(),
        ListKind::Set => {
            for v in patch {
                if !old.contains(v) {
                    old.push(v.clone());
                }
            }
            Ok(old)
        }
        ListKind::Merge(key) => {
            if patch.iter().any(|e| e.as_object().and_then(directive) == Some("replace")) {
                return patch.iter().filter(|e| e.as_object().and_then(directive) != Some("replace")).map(|v| clean(v, path)).collect();
            }
            for e in patch {
                let Some(em) = e.as_object() else {
                    return Err(format!("{}: list elements must be objects with {key:?}", path.join(".")));
                };
                let Some(id) = em.get(key) else {
                    return Err(format!("{}: an element has no merge key {key:?}", path.join(".")));
                };
                let at = old.iter().position(|o| key_of(o, key) == Some(id));
                match (directive(em), at) {
                    (Some("delete"), Some(i)) => {
                        old.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        if let Some(om) = old[i].as_object_mut() {
                            merge_map(om, em, path)?;
                        }
                    }
                    (_, None) => old.push(clean(e, path)?),
                }
            }
            Ok(old)
        }
    }
}

/// Puts the elements named in `order` first, in that order; the rest keep their order after.
fn reorder(list: &mut Vec<Value>, order: &[Value], kind: ListKind) {
    let id = |v: &Value| -> Value {
        match kind {
            ListKind::Merge(key) => key_of(v, key).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(id).collect();
    let mut placed = Vec::with_capacity(list.len());
    for w in &wanted {
        if let Some(i) = list.iter().position(|v| id(v) == *w) {
            placed.push(list.remove(i));
        }
    }
    placed.append(list);
    *list = placed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(original: Value, patch: Value) -> Value {
        apply(&original, &patch).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn kubectl_apply_changes_one_container_image_and_keeps_the_rest() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "x"}]},
            {"name": "sidecar", "image": "busybox"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "B"}], "env": [{"name": "A", "value": "2"}], "image": "nginx:1.28", "name": "nginx"}]
        }}}});
        let out = ok(live, patch);
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["image"], "nginx:1.28");
        assert_eq!(cs[0]["env"], json!([{"name": "A", "value": "2"}, {"name": "B", "value": "x"}]));
        assert_eq!(cs[1], json!({"name": "sidecar", "image": "busybox"}));
    }

    #[test]
    fn directives_delete_replace_and_order() {
        let table = [
            // $patch: delete on a list element.
            (
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
                json!({"spec": {"containers": [{"name": "b"}]}}),
            ),
            // $patch: replace on a list.
            (
                json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}),
                json!({"spec": {"containers": [{"name": "c"}]}}),
            ),
            // $patch: replace on a map.
            (
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"c": "3", "$patch": "replace"}}}),
                json!({"metadata": {"labels": {"c": "3"}}}),
            ),
            // null deletes; atomic lists are replaced (taints).
            (
                json!({"spec": {"unschedulable": true, "taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]}}),
                json!({"spec": {"unschedulable": null, "taints": [{"key": "b", "effect": "NoExecute"}]}}),
                json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
            ),
            // Set lists: union, and $deleteFromPrimitiveList.
            (
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
            ),
            // $retainKeys keeps only the listed keys (strategy type switch).
            (
                json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
            // $setElementOrder reorders a merged list.
            (
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
                json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}),
            ),
            // Container ports merge by containerPort, service ports by port.
            (
                json!({"spec": {"ports": [{"port": 80, "name": "http"}], "containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "x"}]}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "containers": [{"name": "a", "ports": [{"containerPort": 443}]}]}}),
                json!({"spec": {"ports": [{"port": 80, "name": "http", "targetPort": 8080}], "containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "x"}, {"containerPort": 443}]}]}}),
            ),
        ];
        for (i, (live, patch, want)) in table.into_iter().enumerate() {
            assert_eq!(ok(live, patch), want, "case {i}");
        }
    }

    #[test]
    fn malformed_patches_are_errors() {
        assert!(apply(&json!({}), &json!([1])).is_err());
        assert!(apply(&json!({"spec": {}}), &json!({"spec": {"containers": [{"image": "x"}]}})).is_err(), "no merge key");
        assert!(apply(&json!({}), &json!({"$patch": "explode"})).is_err());
    }
}
