//! `/openapi/v3`: the index of group-versions and, per group-version, a document with one PATCH
//! operation per kind that declares the `fieldValidation` parameter. That is what kubectl looks
//! for before `create -f`/`apply`: finding it, kubectl leaves validation to this server
//! (`fieldValidation=Strict`, see [`crate::registry::strict`]). The component schemas are `k8s-openapi`'s
//! (its `schemars` feature, named as Kubernetes names them, `io.k8s.api.apps.v1.Deployment`),
//! each served kind marked with `x-kubernetes-group-version-kind`: `kubectl explain` reads them.

use crate::registry::{self, RESOURCES};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// Every served kind's schema and those it refers to, built once.
fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
        let named: Vec<(String, &registry::Resource)> = RESOURCES.iter().map(|r| (r.strategy.schema(&mut g), r)).collect();
        let mut defs = g.take_definitions(true);
        for (name, r) in named {
            if let Some(Value::Object(d)) = defs.get_mut(&name) {
                d.insert("x-kubernetes-group-version-kind".into(), json!([{"group": r.group, "version": r.version, "kind": r.kind}]));
            }
        }
        defs
    })
}

/// Changes when the served documents change (kubectl caches by it).
const HASH: &str = concat!("keel-", env!("CARGO_PKG_VERSION"), "-1");

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The index.
pub fn index() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in registry::groups() {
        let p = gv_path(g, v);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={HASH}")}));
    }
    json!({"paths": paths})
}

/// The document of one group-version (`api/v1`, `apis/apps/v1`), if served.
pub fn group_version(path: &str) -> Option<Value> {
    let (g, v) = registry::groups().into_iter().find(|(g, v)| gv_path(g, v) == path.trim_matches('/'))?;
    let mut paths = serde_json::Map::new();
    for r in RESOURCES.iter().filter(|r| r.group == g && r.version == v) {
        let item = if r.namespaced {
            format!("/{}/namespaces/{{namespace}}/{}/{{name}}", gv_path(g, v), r.plural)
        } else {
            format!("/{}/{}/{{name}}", gv_path(g, v), r.plural)
        };
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
        paths.insert(
            item,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": r.kind},
                "x-kubernetes-action": "patch",
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                "requestBody": {"content": {
                    "application/json-patch+json": {},
                    "application/merge-patch+json": {},
                    "application/strategic-merge-patch+json": {},
                }},
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::http::discovery::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas()},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_operation_with_field_validation() {
        let idx = index();
        let mut kinds = 0;
        for (p, entry) in idx["paths"].as_object().into_iter().flatten() {
            assert!(entry["serverRelativeURL"].as_str().is_some_and(|u| u.starts_with(&format!("/openapi/v3/{p}?hash="))));
            let Some(doc) = group_version(p) else { panic!("{p} served") };
            for (_, ops) in doc["paths"].as_object().into_iter().flatten() {
                let params = ops["patch"]["parameters"].as_array().cloned().unwrap_or_default();
                assert!(params.iter().any(|x| x["name"] == "fieldValidation"));
                kinds += 1;
            }
        }
        assert_eq!(kinds, RESOURCES.len());
        assert!(group_version("apis/batch/v1").is_none());
    }

    #[test]
    fn schemas_carry_kubernetes_names_and_kinds() {
        let s = schemas();
        let d = &s["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(d["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert!(s.contains_key("io.k8s.api.core.v1.Container"), "referred-to types are there too");
        let text = serde_json::to_string(d).unwrap_or_default();
        assert!(text.contains("#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"), "{text}");
    }
}
