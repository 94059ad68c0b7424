//! Validation rules shared by several kinds, as Kubernetes answers them: 422 Invalid with one
//! cause per field (`spec.template.spec.containers[0].image: Required value`). The per-kind
//! rules live in the kinds' strategies and call these.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

/// (field path, message).
pub type Cause = (String, String);

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// An RFC 1123 label (`my-name`).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// An RFC 1123 subdomain (`example.com`).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Why `name` is not a valid object name (a DNS label when `label`, else a subdomain).
pub fn name_problem(name: &str, label: bool) -> Option<String> {
    let ok = if label { is_dns_label(name) } else { is_dns_subdomain(name) };
    (!ok).then(|| format!("Invalid value: {name:?}: {}", if label { LABEL_MSG } else { SUBDOMAIN_MSG }))
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_qualified_name(s: &str) -> bool {
    match s.rsplit_once('/') {
        Some((prefix, name)) => !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(is_dns_label) && is_label_name(name),
        None => is_label_name(s),
    }
}

/// Label keys and values.
pub fn labels(m: Option<&BTreeMap<String, String>>, path: &str, out: &mut Vec<Cause>) {
    for (k, v) in m.into_iter().flatten() {
        if !is_qualified_name(k) {
            out.push((path.into(), format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
        }
        if !v.is_empty() && !is_label_name(v) {
            out.push((
                format!("{path}.{k}"),
                format!("Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
    }
}

/// What every object's metadata must satisfy here (names are checked on create).
pub fn object_meta(m: &ObjectMeta) -> Vec<Cause> {
    let mut out = Vec::new();
    labels(m.labels.as_ref(), "metadata.labels", &mut out);
    out
}

/// A pod spec (of a pod, or a workload's template at `path`).
pub fn pod_spec(spec: Option<&PodSpec>, path: &str, out: &mut Vec<Cause>) {
    let Some(containers) = spec.map(|s| &s.containers).filter(|c| !c.is_empty()) else {
        out.push((format!("{path}.containers"), "Required value".into()));
        return;
    };
    if let Some(s) = spec {
        pod_level(s, path, out);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        let n = c.name.as_str();
        if n.is_empty() {
            out.push((format!("{p}.name"), "Required value".into()));
        } else if !is_dns_label(n) {
            out.push((format!("{p}.name"), format!("Invalid value: {n:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")));
        } else if !seen.insert(n.to_string()) {
            out.push((format!("{p}.name"), format!("Duplicate value: {n:?}")));
        }
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            out.push((format!("{p}.image"), "Required value".into()));
        }
        resources(c.resources.as_ref(), &format!("{p}.resources"), out);
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let n = port.container_port;
            if !(1..=65535).contains(&n) {
                out.push((format!("{p}.ports[{j}].containerPort"), format!("Invalid value: {n}: must be between 1 and 65535, inclusive")));
            }
        }
    }
}

/// The pod-level rules of a pod spec beside its containers: overhead, node affinity.
fn pod_level(spec: &PodSpec, path: &str, out: &mut Vec<Cause>) {
    non_negative(spec.overhead.as_ref(), &format!("{path}.overhead"), out);
    node_affinity(spec.affinity.as_ref(), &format!("{path}.affinity"), out);
}

/// Whether `selector`'s matchLabels hold for `labels`.
pub fn selector_matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector.match_labels.iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// A workload's replicas, selector and template (Deployment, ReplicaSet, DaemonSet).
pub fn workload(
    replicas: Option<i32>,
    selector: Option<&LabelSelector>,
    template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
    out: &mut Vec<Cause>,
) {
    if let Some(r) = replicas.filter(|r| *r < 0) {
        out.push(("spec.replicas".into(), format!("Invalid value: {r}: must be greater than or equal to 0")));
    }
    let template_labels = template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let empty = |s: &&LabelSelector| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    };
    match selector.filter(|s| !empty(s)) {
        None => out.push(("spec.selector".into(), "Required value".into())),
        Some(sel) if !selector_matches(sel, template_labels) => {
            out.push(("spec.template.metadata.labels".into(), "Invalid value: `selector` does not match template `labels`".into()))
        }
        Some(_) => {}
    }
    labels(template_labels, "spec.template.metadata.labels", out);
    pod_spec(template.and_then(|t| t.spec.as_ref()), "spec.template.spec", out);
}

/// Keys of a ConfigMap's or Secret's data maps.
pub fn data_keys<'a>(field: &str, keys: impl Iterator<Item = &'a String>, out: &mut Vec<Cause>) {
    for k in keys {
        let ok = !k.is_empty() && k.len() <= 253 && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if !ok {
            out.push((
                format!("{field}[{k}]"),
                format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
            ));
        }
    }
}

/// A port number (1-65535) at `path`.
pub fn port(n: i32, path: String, out: &mut Vec<Cause>) {
    if !(1..=65535).contains(&n) {
        out.push((path, format!("Invalid value: {n}: must be between 1 and 65535, inclusive")));
    }
}

/// `field: Invalid value: ...: field is immutable`, Kubernetes' message for a changed immutable field.
pub fn immutable(field: &str, value: impl std::fmt::Display) -> Cause {
    (field.into(), format!("Invalid value: {value}: field is immutable"))
}

type Quantities = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

/// No quantity below zero (kube's ValidateResourceQuantityValue), at `path[name]`.
pub fn non_negative(m: Option<&Quantities>, path: &str, out: &mut Vec<Cause>) {
    for (name, q) in m.into_iter().flatten() {
        if crate::registry::quantity::value(&q.0).is_some_and(|v| v < 0.0) {
            out.push((format!("{path}[{name}]"), format!("Invalid value: {:?}: must be greater than or equal to 0", q.0)));
        }
    }
}

/// A container's requests and limits: none negative, no request above its limit (kube's
/// ValidateResourceRequirements).
pub fn resources(r: Option<&k8s_openapi::api::core::v1::ResourceRequirements>, path: &str, out: &mut Vec<Cause>) {
    let Some(r) = r else { return };
    non_negative(r.limits.as_ref(), &format!("{path}.limits"), out);
    non_negative(r.requests.as_ref(), &format!("{path}.requests"), out);
    let value = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| crate::registry::quantity::value(&q.0);
    for (name, q) in r.requests.iter().flatten() {
        let limit = r.limits.as_ref().and_then(|l| l.get(name));
        if let (Some(l), Some(v), Some(lv)) = (limit, value(q), limit.and_then(value))
            && v > lv
        {
            out.push((
                format!("{path}.requests"),
                format!("Invalid value: {:?}: must be less than or equal to {name} limit of {}", q.0, l.0),
            ));
        }
    }
}

fn selector_requirement(r: &k8s_openapi::api::core::v1::NodeSelectorRequirement, path: &str, fields: bool, out: &mut Vec<Cause>) {
    let values = r.values.as_deref().unwrap_or_default();
    if fields {
        if r.key != "metadata.name" {
            out.push((format!("{path}.key"), format!("Invalid value: {:?}: not a valid field selector key", r.key)));
        }
        if !matches!(r.operator.as_str(), "In" | "NotIn") {
            out.push((format!("{path}.operator"), format!("Invalid value: {:?}: not a valid selector operator", r.operator)));
        } else if values.len() != 1 {
            out.push((
                format!("{path}.values"),
                "Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector".into(),
            ));
        }
        return;
    }
    match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            out.push((format!("{path}.values"), "Required value: must be specified when `operator` is 'In' or 'NotIn'".into()))
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            out.push((format!("{path}.values"), "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into()))
        }
        "Gt" | "Lt" if values.len() != 1 => {
            out.push((format!("{path}.values"), "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'".into()))
        }
        "Gt" | "Lt" if values[0].parse::<i64>().is_err() => out.push((
            format!("{path}.values[0]"),
            format!("Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer", values[0]),
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => out.push((
            format!("{path}.operator"),
            format!("Unsupported value: {other:?}: supported values: \"DoesNotExist\", \"Exists\", \"Gt\", \"In\", \"Lt\", \"NotIn\""),
        )),
    }
    if !is_qualified_name(&r.key) {
        out.push((format!("{path}.key"), format!("Invalid value: {:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", r.key)));
    }
}

fn selector_term(t: &k8s_openapi::api::core::v1::NodeSelectorTerm, path: &str, out: &mut Vec<Cause>) {
    for (i, r) in t.match_expressions.iter().flatten().enumerate() {
        selector_requirement(r, &format!("{path}.matchExpressions[{i}]"), false, out);
    }
    for (i, r) in t.match_fields.iter().flatten().enumerate() {
        selector_requirement(r, &format!("{path}.matchFields[{i}]"), true, out);
    }
}

/// A pod's node affinity (kube's ValidateNodeSelector / ValidatePreferredSchedulingTerms).
pub fn node_affinity(a: Option<&k8s_openapi::api::core::v1::Affinity>, path: &str, out: &mut Vec<Cause>) {
    let Some(na) = a.and_then(|a| a.node_affinity.as_ref()) else { return };
    let path = format!("{path}.nodeAffinity");
    if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
        let p = format!("{path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        if req.node_selector_terms.is_empty() {
            out.push((p.clone(), "Required value: must have at least one node selector term".into()));
        }
        for (i, t) in req.node_selector_terms.iter().enumerate() {
            selector_term(t, &format!("{p}[{i}]"), out);
        }
    }
    for (i, pref) in na.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
        let p = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        if !(1..=100).contains(&pref.weight) {
            out.push((format!("{p}.weight"), format!("Invalid value: {}: must be in the range 1-100", pref.weight)));
        }
        selector_term(&pref.preference, &format!("{p}.preference"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec_causes(spec: serde_json::Value) -> Vec<String> {
        let s: PodSpec = serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        pod_spec(Some(&s), "spec", &mut out);
        out.into_iter().map(|(f, m)| format!("{f}: {m}")).collect()
    }

    #[test]
    fn resources_are_not_negative_and_requests_stay_under_limits() {
        let c = |r: serde_json::Value| spec_causes(json!({"containers": [{"name": "a", "image": "x", "resources": r}]}));
        assert!(c(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}})).is_empty());
        assert_eq!(
            c(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})),
            vec!["spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"]
        );
        assert_eq!(
            c(json!({"requests": {"memory": "-1"}})),
            vec!["spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0"]
        );
    }

    #[test]
    fn node_affinity_operators_take_the_values_they_need() {
        let a = |exprs: serde_json::Value| {
            spec_causes(json!({"containers": [{"name": "a", "image": "x"}], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}))
                .into_iter()
                .map(|c| c.split(": ").next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        let p = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]";
        assert!(a(json!([{"key": "zone", "operator": "In", "values": ["a"]}])).is_empty());
        assert_eq!(a(json!([{"key": "zone", "operator": "In"}])), vec![format!("{p}.values")]);
        assert_eq!(a(json!([{"key": "zone", "operator": "Exists", "values": ["a"]}])), vec![format!("{p}.values")]);
        assert_eq!(a(json!([{"key": "cores", "operator": "Gt", "values": ["many"]}])), vec![format!("{p}.values[0]")]);
        assert_eq!(a(json!([{"key": "cores", "operator": "Gt", "values": ["1", "2"]}])), vec![format!("{p}.values")]);
        assert_eq!(a(json!([{"key": "zone", "operator": "Near", "values": ["a"]}])), vec![format!("{p}.operator")]);
        let empty = spec_causes(
            json!({"containers": [{"name": "a", "image": "x"}], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}),
        );
        assert_eq!(empty.len(), 1);
        let weight = spec_causes(
            json!({"containers": [{"name": "a", "image": "x"}], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]}}}),
        );
        assert_eq!(weight.len(), 1);
    }
}
