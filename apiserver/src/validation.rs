//! Validation after defaulting, as Kubernetes answers it: 422 Invalid with one cause per field
//! (`spec.template.spec.containers[0].image: Required value`). The rules kept here are the ones
//! users trip over: labels, pod specs (containers, names, images, ports), workload selectors
//! that must match their template, replica counts, service ports, configmap and secret keys.

use serde_json::{Map, Value};

/// (field path, message).
pub type Cause = (String, String);

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_qualified_name(s: &str) -> bool {
    match s.rsplit_once('/') {
        Some((prefix, name)) => !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(is_dns_label) && is_label_name(name),
        None => is_label_name(s),
    }
}

fn labels(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    for (k, val) in v.and_then(Value::as_object).into_iter().flatten() {
        if !is_qualified_name(k) {
            out.push((path.into(), format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
        }
        let s = val.as_str().unwrap_or("");
        if !s.is_empty() && !is_label_name(s) {
            out.push((
                format!("{path}.{k}"),
                format!("Invalid value: {s:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
    }
}

fn pod_spec(spec: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        out.push((format!("{path}.containers"), "Required value".into()));
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => out.push((format!("{p}.name"), "Required value".into())),
            Some(n) if !is_dns_label(n) => out.push((format!("{p}.name"), format!("Invalid value: {n:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"))),
            Some(n) if !seen.insert(n.to_string()) => out.push((format!("{p}.name"), format!("Duplicate value: {n:?}"))),
            Some(_) => {}
        }
        if c.get("image").and_then(Value::as_str).is_none_or(|i| i.trim().is_empty()) {
            out.push((format!("{p}.image"), "Required value".into()));
        }
        for (j, port) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let n = port.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&n) {
                out.push((format!("{p}.ports[{j}].containerPort"), format!("Invalid value: {n}: must be between 1 and 65535, inclusive")));
            }
        }
    }
}

fn selector_matches(selector: &Map<String, Value>, labels: Option<&Map<String, Value>>) -> bool {
    let wanted = selector.get("matchLabels").and_then(Value::as_object);
    wanted.into_iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn workload(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    if let Some(r) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64)
        && r < 0
    {
        out.push(("spec.replicas".into(), format!("Invalid value: {r}: must be greater than or equal to 0")));
    }
    let selector = spec.and_then(|s| s.get("selector")).and_then(Value::as_object).filter(|s| !s.is_empty());
    let template = spec.and_then(|s| s.get("template"));
    let template_labels = template.and_then(|t| t.pointer("/metadata/labels")).and_then(Value::as_object);
    match selector {
        None => out.push(("spec.selector".into(), "Required value".into())),
        Some(sel) if !selector_matches(sel, template_labels) => {
            out.push(("spec.template.metadata.labels".into(), "Invalid value: `selector` does not match template `labels`".into()))
        }
        Some(_) => {}
    }
    labels(template.and_then(|t| t.pointer("/metadata/labels")), "spec.template.metadata.labels", out);
    pod_spec(template.and_then(|t| t.get("spec")), "spec.template.spec", out);
}

fn data_keys(obj: &Value, fields: &[&str], out: &mut Vec<Cause>) {
    for f in fields {
        for k in obj.get(*f).and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k) {
            let ok = !k.is_empty() && k.len() <= 253 && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
            if !ok {
                out.push((
                    format!("{f}[{k}]"),
                    format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
                ));
            }
        }
    }
}

/// The causes `obj` (a `kind`, defaulted) is invalid for; empty when it is valid.
pub fn validate(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    labels(obj.pointer("/metadata/labels"), "metadata.labels", &mut out);
    match kind {
        "Pod" => pod_spec(obj.get("spec"), "spec", &mut out),
        "Deployment" | "ReplicaSet" | "DaemonSet" => workload(obj, &mut out),
        "Service" => {
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
            for (i, p) in ports.into_iter().flatten().enumerate() {
                let n = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    out.push((format!("spec.ports[{i}].port"), format!("Invalid value: {n}: must be between 1 and 65535, inclusive")));
                }
            }
        }
        "ConfigMap" => data_keys(obj, &["data", "binaryData"], &mut out),
        "Secret" => data_keys(obj, &["data"], &mut out),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(kind: &str, obj: Value) -> Vec<String> {
        validate(kind, &obj).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn invalid_objects_name_their_fields() {
        let table: Vec<(&str, Value, Vec<&str>)> = vec![
            ("Pod", json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}), vec![]),
            ("Pod", json!({"spec": {}}), vec!["spec.containers"]),
            (
                "Pod",
                json!({"spec": {"containers": [{"name": "A_b"}, {"image": "x"}]}}),
                vec!["spec.containers[0].name", "spec.containers[0].image", "spec.containers[1].name"],
            ),
            (
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]}}),
                vec!["spec.containers[0].ports[0].containerPort"],
            ),
            (
                "Deployment",
                json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
                vec!["spec.replicas", "spec.template.metadata.labels"],
            ),
            ("Deployment", json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}), vec!["spec.selector"]),
            ("Service", json!({"spec": {"ports": [{"port": 0}]}}), vec!["spec.ports[0].port"]),
            (
                "ConfigMap",
                json!({"metadata": {"labels": {"bad key": "v"}}, "data": {"ok.key": "v", "bad/key": "v"}}),
                vec!["metadata.labels", "data[bad/key]"],
            ),
            ("ConfigMap", json!({"metadata": {"labels": {"example.com/app": "web-1", "x": ""}}}), vec![]),
        ];
        for (kind, obj, want) in table {
            assert_eq!(fields(kind, obj.clone()), want, "{kind} {obj}");
        }
    }
}
