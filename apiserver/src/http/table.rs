//! Server-side printing: the `meta.k8s.io/v1` Table `kubectl get` asks for, with the columns
//! and cells the kind's strategy prints (priority 1 columns show with `-o wide`) and each row's
//! object as PartialObjectMetadata (kubectl takes the NAMESPACE column from it).

use crate::registry::Resource;
use serde_json::{Value, json};

/// The column definitions of `res`.
pub fn column_definitions(res: &Resource) -> Vec<Value> {
    res.strategy
        .columns()
        .iter()
        .map(|(name, priority)| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({"name": name, "type": "string", "format": format, "description": "", "priority": priority})
        })
        .collect()
}

/// One row: the cells and the object's metadata.
pub fn row(res: &Resource, obj: &Value, now: i64) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "cells": res.strategy.cells(obj, now),
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
    })
}

/// A Table of `objects`, at `resource_version`, with `continue_token` if the list has more.
pub fn table(res: &Resource, objects: &[Value], resource_version: &str, continue_token: Option<&str>, now: i64) -> Value {
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(res),
        "rows": objects.iter().map(|o| row(res, o, now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_a_definition_per_cell_and_the_rows_metadata() {
        let Some(pods) = crate::registry::find("", "v1", "pods") else { panic!("served") };
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "a"}]}});
        let t = table(pods, &[pod], "7", Some("tok"), 0);
        assert_eq!(t["metadata"], json!({"resourceVersion": "7", "continue": "tok"}));
        let defs = t["columnDefinitions"].as_array().map_or(0, Vec::len);
        assert_eq!(t["rows"][0]["cells"].as_array().map_or(0, Vec::len), defs);
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
    }
}
