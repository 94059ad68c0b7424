//! Label and field selectors, parsed once per request and matched against objects.
//!
//! Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k`; comma is AND.
//! Fields: `f=v`, `f==v`, `f!=v` over `metadata.name`, `metadata.namespace` and the fields the
//! kind's strategy lets one select on ([`crate::registry::strategy::Strategy::selectable`]),
//! read from its typed object (so a missing bool reads `false`, as in Kubernetes).

use crate::error::ApiError;
use crate::registry::Resource;
use crate::registry::strategy::Behaviour;
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
#[derive(Clone, Default)]
pub struct Selector {
    labels: Vec<Label>,
    fields: Vec<(String, bool, String)>,
    /// Reads the kind's own fields (set when a requirement names one).
    strategy: Option<&'static dyn Behaviour>,
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

fn meta_field(obj: &Value, field: &str) -> Option<String> {
    let key = match field {
        "metadata.name" => "name",
        "metadata.namespace" => "namespace",
        _ => return None,
    };
    Some(obj.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or("").to_string())
}

impl Selector {
    /// Parses `labelSelector` and `fieldSelector` for objects of `res`.
    pub fn parse(res: &Resource, labels: Option<&str>, fields: Option<&str>) -> Result<Selector, ApiError> {
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
            if !matches!(f, "metadata.name" | "metadata.namespace") {
                if !res.strategy.selectable().contains(&f) {
                    return Err(ApiError::BadRequest(format!("field label not supported: {f}")));
                }
                sel.strategy = Some(res.strategy);
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
        if !labels_ok {
            return false;
        }
        let own = self.strategy.map(|s| s.fields(obj)).unwrap_or_default();
        self.fields.iter().all(|(f, eq, v)| {
            let got = meta_field(obj, f).or_else(|| own.get(f.as_str()).cloned()).unwrap_or_default();
            (got == *v) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(plural: &str) -> &'static Resource {
        let group = if plural == "deployments" { "apps" } else { "" };
        crate::registry::find(group, "v1", plural).unwrap_or_else(|| panic!("{plural} served"))
    }

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
            let sel = Selector::parse(res("pods"), Some(s), None).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sel.matches(&p), want, "{s}");
        }
    }

    #[test]
    fn field_selectors_are_limited_to_registered_fields() {
        let p = pod(json!({}), "n1");
        let sel = Selector::parse(res("pods"), None, Some("spec.nodeName=n1,metadata.namespace=default")).unwrap_or_else(|e| panic!("{e}"));
        assert!(sel.matches(&p));
        let sel = Selector::parse(res("pods"), None, Some("spec.nodeName!=n1")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!sel.matches(&p));
        assert!(Selector::parse(res("configmaps"), None, Some("spec.nodeName=n1")).is_err());
        let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"name": "p", "uid": "u"}});
        let nodes = res("nodes");
        let schedulable = Selector::parse(nodes, None, Some("spec.unschedulable=false")).unwrap_or_else(|e| panic!("{e}"));
        assert!(schedulable.matches(&json!({"metadata": {"name": "n"}})), "no spec.unschedulable reads false");
        assert!(!schedulable.matches(&json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}})));
        let sel =
            Selector::parse(res("events"), None, Some("involvedObject.name=p,involvedObject.uid=u")).unwrap_or_else(|e| panic!("{e}"));
        assert!(sel.matches(&ev));
    }
}
