//! Label and field selectors, parsed once per request and matched against objects.
//!
//! Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k`; comma is AND.
//! Fields: `f=v`, `f==v`, `f!=v` over the fields Kubernetes lets each kind select on.

use crate::error::ApiError;
use serde_json::Value;

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Label {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// A parsed selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Label>,
    fields: Vec<(String, bool, String)>,
}

/// Split on commas that are not inside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|t| !t.is_empty()).collect()
}

fn set_of(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn parse_label(t: &str) -> Result<Label, ApiError> {
    let bad = || ApiError::BadRequest(format!("unable to parse requirement: {t:?}"));
    if let Some(k) = t.strip_prefix('!') {
        return Ok(Label::Absent(k.trim().to_string()));
    }
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(Label::Ne(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Ok(Label::Eq(k.trim().into(), v.trim().into()));
    }
    let words: Vec<&str> = t.splitn(3, char::is_whitespace).filter(|w| !w.is_empty()).collect();
    match words.as_slice() {
        [k] => Ok(Label::Exists((*k).into())),
        [k, "in", rest] => Ok(Label::In((*k).into(), set_of(rest).ok_or_else(bad)?)),
        [k, "notin", rest] => Ok(Label::NotIn((*k).into(), set_of(rest).ok_or_else(bad)?)),
        _ => {
            // `k in(a,b)` without a space before the parenthesis.
            for (op, neg) in [(" notin", true), (" in", false)] {
                if let Some((k, rest)) = t.split_once(op) {
                    let set = set_of(rest).ok_or_else(bad)?;
                    return Ok(if neg { Label::NotIn(k.trim().into(), set) } else { Label::In(k.trim().into(), set) });
                }
            }
            Err(bad())
        }
    }
}

/// Fields every kind can select on, and the extra ones per kind (as Kubernetes registers them).
fn field_allowed(kind: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match kind {
        "Pod" => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        "Event" => field.starts_with("involvedObject.") || matches!(field, "reason" | "reportingComponent" | "source" | "type"),
        "Secret" => field == "type",
        "Node" => field == "spec.unschedulable",
        "Namespace" => field == "status.phase",
        "ReplicaSet" => field == "status.replicas",
        _ => false,
    }
}

fn field_value(obj: &Value, path: &str) -> String {
    let mut v = obj;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Selector {
    /// Parses `labelSelector` and `fieldSelector` for objects of `kind`.
    pub fn parse(kind: &str, labels: Option<&str>, fields: Option<&str>) -> Result<Selector, ApiError> {
        let mut sel = Selector::default();
        for t in labels.map(terms).unwrap_or_default() {
            sel.labels.push(parse_label(t)?);
        }
        for t in fields.map(terms).unwrap_or_default() {
            let (f, eq, v) = if let Some((f, v)) = t.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::BadRequest(format!("invalid field selector: {t:?}")));
            };
            let f = f.trim();
            if !field_allowed(kind, f) {
                return Err(ApiError::BadRequest(format!("field label not supported: {f}")));
            }
            sel.fields.push((f.to_string(), eq, v.trim().to_string()));
        }
        Ok(sel)
    }

    /// True when nothing is selected on (everything matches).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether `obj` matches.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            Label::Eq(k, v) => label(k) == Some(v.as_str()),
            Label::Ne(k, v) => label(k) != Some(v.as_str()),
            Label::In(k, set) => label(k).is_some_and(|l| set.iter().any(|s| s == l)),
            Label::NotIn(k, set) => label(k).is_none_or(|l| !set.iter().any(|s| s == l)),
            Label::Exists(k) => label(k).is_some(),
            Label::Absent(k) => label(k).is_none(),
        });
        labels_ok && self.fields.iter().all(|(f, eq, v)| (field_value(obj, f) == *v) == *eq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, node: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default", "labels": labels}, "spec": {"nodeName": node}})
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let p = pod(json!({"app": "web", "tier": "front"}), "n1");
        let table = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app in(db)", false),
            ("app notin (db)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing notin (x)", true),
            ("app=web,tier=back", false),
        ];
        for (s, want) in table {
            let sel = Selector::parse("Pod", Some(s), None).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sel.matches(&p), want, "{s}");
        }
    }

    #[test]
    fn field_selectors_are_limited_to_registered_fields() {
        let p = pod(json!({}), "n1");
        let sel = Selector::parse("Pod", None, Some("spec.nodeName=n1,metadata.namespace=default")).unwrap_or_else(|e| panic!("{e}"));
        assert!(sel.matches(&p));
        let sel = Selector::parse("Pod", None, Some("spec.nodeName!=n1")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!sel.matches(&p));
        assert!(Selector::parse("ConfigMap", None, Some("spec.nodeName=n1")).is_err());
        let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"name": "p", "uid": "u"}});
        let sel = Selector::parse("Event", None, Some("involvedObject.name=p,involvedObject.uid=u")).unwrap_or_else(|e| panic!("{e}"));
        assert!(sel.matches(&ev));
    }
}
