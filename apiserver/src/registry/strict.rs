//! Strict field validation (`fieldValidation=Strict`, what kubectl asks for on create and
//! apply): a field the kind's schema does not have is an error instead of being dropped.
//!
//! The schema is the `k8s-openapi` type: an object decoded into it and encoded again keeps
//! every field the type knows, so a field of the request that is missing from the round trip
//! is unknown. (Null values and empty objects are skipped: the round trip drops them too.)

use serde_json::Value;

/// The paths (`spec.template.spec.containers[0].imagee`) of fields in `sent` that `typed`, its
/// round trip through the schema, does not have.
pub fn unknown_fields(sent: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(sent, typed, "", &mut out);
    out
}

fn walk(sent: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, typed) {
        (Value::Object(s), Value::Object(t)) => {
            for (k, v) in s {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match t.get(k) {
                    Some(tv) => walk(v, tv, &p, out),
                    None if v.is_null() => {}
                    None if v.as_object().is_some_and(|o| o.is_empty()) => {}
                    // A map field (labels, data) is a JSON object in both: its keys are data.
                    None => out.push(p),
                }
            }
        }
        (Value::Array(s), Value::Array(t)) => {
            for (i, (sv, tv)) in s.iter().zip(t).enumerate() {
                walk(sv, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    #[test]
    fn a_misspelt_field_is_found_with_its_path() {
        let Some(d) = find("apps", "v1", "deployments") else { panic!("served") };
        let sent = json!({
            "metadata": {"name": "d", "labels": {"any-key": "ok"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}, "selector": null},
            "bogus": 1
        });
        let typed = d.strategy.round_trip(&sent).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(unknown_fields(&sent, &typed), vec!["bogus".to_string(), "spec.template.spec.containers[0].imagee".to_string()]);
    }

    #[test]
    fn a_well_formed_object_has_none() {
        let Some(cm) = find("", "v1", "configmaps") else { panic!("served") };
        let sent = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {}}, "data": {"k": "v"}});
        let typed = cm.strategy.round_trip(&sent).unwrap_or_else(|e| panic!("{e}"));
        assert!(unknown_fields(&sent, &typed).is_empty());
    }
}
