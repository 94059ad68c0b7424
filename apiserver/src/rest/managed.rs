//! Field ownership (`metadata.managedFields`) and server-side apply, without I/O.
//!
//! A field set is the set of paths an actor wrote, each a list of steps as Kubernetes' FieldsV1
//! spells them: `f:<field>`, `k:{"name":"nginx"}` (a list element by its merge key),
//! `v:"a"` (a set element), and `.` (a list element itself). Lists without a merge key are
//! atomic: one leaf. Stored as FieldsV1 trees in one entry per (manager, operation).
//!
//! - Every write records what it changed under its manager (operation `Update`), taking those
//!   fields from whoever owned them.
//! - An apply (operation `Apply`) owns exactly the fields of its configuration: it conflicts
//!   with another manager that owns a field it sets to a different value (unless forced, which
//!   takes the field), merges its configuration into the object (lists by merge key, as
//!   [`crate::rest::smp`]), and removes fields it applied before and no longer applies, unless someone
//!   else owns them.

use crate::rest::smp::{self, ListKind};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// A path of FieldsV1 steps.
pub type Path = Vec<String>;

/// A set of paths.
pub type FieldSet = BTreeSet<Path>;

/// Top-level and metadata fields nobody owns (the server sets them or they name the object).
fn ignored(path: &[String]) -> bool {
    match path {
        [f] => matches!(f.as_str(), "f:apiVersion" | "f:kind"),
        [m, f, ..] if m == "f:metadata" => matches!(
            f.as_str(),
            "f:name"
                | "f:namespace"
                | "f:uid"
                | "f:resourceVersion"
                | "f:generation"
                | "f:creationTimestamp"
                | "f:deletionTimestamp"
                | "f:deletionGracePeriodSeconds"
                | "f:managedFields"
                | "f:selfLink"
        ),
        _ => false,
    }
}

fn names(path: &[String]) -> Vec<String> {
    path.iter().filter_map(|s| s.strip_prefix("f:").map(str::to_string)).collect()
}

fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                if !ignored(path) {
                    walk(child, path, out);
                }
                path.pop();
            }
        }
        Value::Array(items) => match smp::list_kind(&names(path)) {
            ListKind::Merge(key) => {
                for item in items {
                    let Some(id) = item.get(key) else { continue };
                    path.push(format!("k:{}", json!({ key: id })));
                    path.push(".".into());
                    out.insert(path.clone());
                    path.pop();
                    walk(item, path, out);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The fields `obj` sets (`status` left out when it has its own subresource).
pub fn fields_of(obj: &Value, skip_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    walk(obj, &mut Vec::new(), &mut out);
    if skip_status {
        out.retain(|p| p.first().is_none_or(|f| f != "f:status"));
    }
    out
}

/// The value at `path` in `obj`.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = obj;
    for step in path {
        if step == "." {
            continue;
        }
        if let Some(f) = step.strip_prefix("f:") {
            v = v.get(f)?;
        } else if let Some(k) = step.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(k).ok()?;
            v = v.as_array()?.iter().find(|e| want.iter().all(|(wk, wv)| e.get(wk) == Some(wv)))?;
        } else if let Some(x) = step.strip_prefix("v:") {
            let want: Value = serde_json::from_str(x).ok()?;
            v = v.as_array()?.iter().find(|e| **e == want)?;
        } else {
            return None;
        }
    }
    Some(v)
}

/// Removes what `path` names from `obj`: a field, a set element, or (a path ending in `.`)
/// a list element.
pub fn remove(obj: &mut Value, path: &[String]) {
    let path = match path.split_last() {
        Some((last, rest)) if last == "." => rest,
        _ => path,
    };
    if let Some((last, parent)) = path.split_last() {
        remove_step(obj, parent, last);
    }
}

fn remove_step(obj: &mut Value, parent: &[String], last: &str) {
    let Some(container) = value_at_mut(obj, parent) else { return };
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = container.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else { return };
        if let Some(a) = container.as_array_mut() {
            a.retain(|e| !want.iter().all(|(wk, wv)| e.get(wk) == Some(wv)));
        }
    } else if let Some(x) = last.strip_prefix("v:") {
        let Ok(want) = serde_json::from_str::<Value>(x) else { return };
        if let Some(a) = container.as_array_mut() {
            a.retain(|e| *e != want);
        }
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut v = obj;
    for step in path {
        if step == "." {
            continue;
        }
        if let Some(f) = step.strip_prefix("f:") {
            v = v.get_mut(f)?;
        } else if let Some(k) = step.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(k).ok()?;
            v = v.as_array_mut()?.iter_mut().find(|e| want.iter().all(|(wk, wv)| e.get(wk) == Some(wv)))?;
        } else {
            return None;
        }
    }
    Some(v)
}

/// The FieldsV1 tree of a set.
pub fn to_tree(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for step in path {
            let next = node.entry(step.clone()).or_insert_with(|| json!({}));
            let Some(m) = next.as_object_mut() else { break };
            node = m;
        }
    }
    Value::Object(root)
}

/// The set of a FieldsV1 tree (its leaves and `.` entries).
pub fn from_tree(tree: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in m {
            path.push(k.clone());
            go(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    go(tree, &mut Vec::new(), &mut out);
    out
}

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="nginx"].image`.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = step.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Who.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version it wrote through.
    pub api_version: String,
    /// When (RFC 3339).
    pub time: String,
    /// `status` for writes through `/status`.
    pub subresource: Option<String>,
    /// What it owns.
    pub fields: FieldSet,
}

/// The entries of `obj`.
pub fn entries(obj: &Value) -> Vec<Entry> {
    let list = obj.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    list.iter()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
            time: e["time"].as_str().unwrap_or("").to_string(),
            subresource: e["subresource"].as_str().map(str::to_string),
            fields: from_tree(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `list` into `obj`'s metadata (entries owning nothing are dropped).
pub fn set_entries(obj: &mut Value, list: &[Entry]) {
    let out: Vec<Value> = list
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_tree(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if out.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(out));
        }
    }
}

/// Who wrote, how, when.
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// API version of the request.
    pub api_version: &'a str,
    /// Now, RFC 3339.
    pub now: &'a str,
    /// `Some("status")` for `/status`.
    pub subresource: Option<&'a str>,
}

fn upsert(list: &mut Vec<Entry>, w: &Writer, operation: &str) -> usize {
    let at = list.iter().position(|e| e.manager == w.manager && e.operation == operation && e.subresource.as_deref() == w.subresource);
    match at {
        Some(i) => {
            list[i].time = w.now.to_string();
            list[i].api_version = w.api_version.to_string();
            i
        }
        None => {
            list.push(Entry {
                manager: w.manager.to_string(),
                operation: operation.to_string(),
                api_version: w.api_version.to_string(),
                time: w.now.to_string(),
                subresource: w.subresource.map(str::to_string),
                fields: FieldSet::new(),
            });
            list.len() - 1
        }
    }
}

/// Records a non-apply write of `new` over `old` (None: a create). If the write set
/// managedFields itself, they stand as sent.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer, skip_status: bool) {
    let before = old.and_then(|o| o.pointer("/metadata/managedFields"));
    if before != new.pointer("/metadata/managedFields") && new.pointer("/metadata/managedFields").is_some() {
        return;
    }
    let mut list = old.map(entries).unwrap_or_default();
    let status_only = w.subresource == Some("status");
    let changed: FieldSet = fields_of(new, skip_status && !status_only)
        .into_iter()
        .filter(|p| !status_only || p.first().is_some_and(|f| f == "f:status"))
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
        .collect();
    if changed.is_empty() {
        set_entries(new, &list);
        return;
    }
    for e in list.iter_mut() {
        e.fields.retain(|p| !changed.contains(p));
    }
    let i = upsert(&mut list, w, "Update");
    list[i].fields.extend(changed);
    set_entries(new, &list);
}

/// A field another manager owns with a different value.
pub use crate::error::FieldConflict as Conflict;

/// Server-side apply of `config` by `w` onto `live` (None: the object does not exist yet).
/// The object to store, or the conflicts.
pub fn apply(live: Option<&Value>, config: &Value, w: &Writer, force: bool, skip_status: bool) -> Result<Value, Vec<Conflict>> {
    let applied = fields_of(config, skip_status);
    let Some(live) = live else {
        let mut obj = config.clone();
        let mut list = Vec::new();
        let i = upsert(&mut list, w, "Apply");
        list[i].fields = applied;
        set_entries(&mut obj, &list);
        return Ok(obj);
    };
    let mut list = entries(live);
    let mine = |e: &Entry| e.manager == w.manager && e.operation == "Apply";
    let mut conflicts = Vec::new();
    for e in list.iter().filter(|e| !mine(e)) {
        for p in e.fields.intersection(&applied) {
            if value_at(live, p) != value_at(config, p) {
                conflicts.push(Conflict { manager: e.manager.clone(), api_version: e.api_version.clone(), field: display(p) });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for e in list.iter_mut().filter(|e| !mine(e)) {
            e.fields.retain(|p| !applied.contains(p) || value_at(live, p) == value_at(config, p));
        }
    }
    let before = list.iter().find(|e| mine(e)).map(|e| e.fields.clone()).unwrap_or_default();
    let mut merged = smp::apply(live, config).unwrap_or_else(|_| live.clone());
    let others: FieldSet = list.iter().filter(|e| !mine(e)).flat_map(|e| e.fields.iter().cloned()).collect();
    // Deepest first, so an element goes before its parent is looked at.
    let mut dropped: Vec<&Path> = before.iter().filter(|p| !applied.contains(*p) && !others.contains(*p)).collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove(&mut merged, p);
    }
    let i = upsert(&mut list, w, "Apply");
    list[i].fields = applied;
    set_entries(&mut merged, &list);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w<'a>(manager: &'a str) -> Writer<'a> {
        Writer { manager, api_version: "apps/v1", now: "2026-01-01T00:00:00Z", subresource: None }
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "nginx", "image": image}]}}}
        })
    }

    #[test]
    fn field_sets_follow_fields_v1() {
        let set = fields_of(&deploy(2, "nginx"), true);
        let tree = to_tree(&set);
        assert_eq!(tree["f:spec"]["f:replicas"], json!({}));
        let c = &tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
        assert_eq!((c["."].clone(), c["f:image"].clone(), c["f:name"].clone()), (json!({}), json!({}), json!({})));
        assert!(tree["f:metadata"].get("f:name").is_none(), "names are nobody's");
        assert_eq!(from_tree(&tree), set, "round trip");
        assert_eq!(
            display(&["f:spec".into(), "f:containers".into(), "k:{\"name\":\"nginx\"}".into(), "f:image".into()]),
            ".spec.containers[name=\"nginx\"].image"
        );
    }

    #[test]
    fn apply_creates_then_conflicts_with_another_owner_unless_forced() {
        let created = apply(None, &deploy(2, "nginx:1"), &w("kubectl"), false, true).unwrap_or_else(|c| panic!("{c:?}"));
        assert_eq!(created["metadata"]["managedFields"][0]["operation"], "Apply");
        // Someone else scales (an Update): they now own .spec.replicas.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&created), &mut scaled, &w("kubectl-scale"), true);
        let owners = entries(&scaled);
        assert!(
            owners.iter().any(|e| e.manager == "kubectl-scale" && e.fields.contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]))
        );
        // Applying replicas 2 again conflicts; the same value would not.
        let err = apply(Some(&scaled), &deploy(2, "nginx:2"), &w("kubectl"), false, true).err().unwrap_or_default();
        assert_eq!(err, vec![Conflict { manager: "kubectl-scale".into(), api_version: "apps/v1".into(), field: ".spec.replicas".into() }]);
        assert!(apply(Some(&scaled), &deploy(5, "nginx:2"), &w("kubectl"), false, true).is_ok());
        // Forced: the field moves to the applier.
        let forced = apply(Some(&scaled), &deploy(2, "nginx:2"), &w("kubectl"), true, true).unwrap_or_else(|c| panic!("{c:?}"));
        assert_eq!(forced["spec"]["replicas"], 2);
        assert_eq!(forced["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
        assert!(entries(&forced).iter().all(|e| e.manager != "kubectl-scale"), "owning nothing, the entry goes");
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
        let mut first = deploy(2, "nginx");
        first["metadata"]["labels"]["tier"] = json!("front");
        let live = apply(None, &first, &w("kubectl"), false, true).unwrap_or_else(|c| panic!("{c:?}"));
        let mut labelled = live.clone();
        labelled["metadata"]["labels"]["owner"] = json!("me");
        record_update(Some(&live), &mut labelled, &w("kubectl-label"), true);
        // The next apply drops `tier`: removed. `owner` belongs to someone else: kept.
        let next = apply(Some(&labelled), &deploy(2, "nginx"), &w("kubectl"), false, true).unwrap_or_else(|c| panic!("{c:?}"));
        assert_eq!(next["metadata"]["labels"], json!({"app": "web", "owner": "me"}));
        // A container no longer applied goes too.
        let two = deploy(2, "nginx");
        let mut with_sidecar = two.clone();
        with_sidecar["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "nginx", "image": "nginx"}, {"name": "side", "image": "busybox"}]);
        let live = apply(None, &with_sidecar, &w("kubectl"), false, true).unwrap_or_else(|c| panic!("{c:?}"));
        let next = apply(Some(&live), &two, &w("kubectl"), false, true).unwrap_or_else(|c| panic!("{c:?}"));
        assert_eq!(next["spec"]["template"]["spec"]["containers"], json!([{"name": "nginx", "image": "nginx"}]));
    }
}
