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
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let n = port.container_port;
            if !(1..=65535).contains(&n) {
                out.push((format!("{p}.ports[{j}].containerPort"), format!("Invalid value: {n}: must be between 1 and 65535, inclusive")));
            }
        }
    }
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
