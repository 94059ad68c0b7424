//! Admission: the checks and changes kube-apiserver's admission plugins make that need other
//! objects than the one written. Each is read from the store (linearizable, so a class created
//! just before a pod is seen), then applied to the object without I/O.
//!
//! - Priority (pods, on create): `spec.priorityClassName` names a PriorityClass whose value
//!   becomes `spec.priority` (and its preemptionPolicy the pod's); without a name, the class
//!   marked `globalDefault` if there is one, else priority 0. A class that does not exist is
//!   403 `no PriorityClass with name X was found`; a `spec.priority` that differs is 403.
//! - PriorityClasses (create and update): only one may be `globalDefault`.

use crate::error::ApiError;
use crate::http::request::Call;
use crate::rest::Api;
use crate::storage::decode;
use serde_json::{Value, json};

/// What admission read for one request.
pub enum Admission {
    /// Nothing to check for this kind.
    None,
    /// A pod create: the PriorityClasses (name, value, preemptionPolicy, globalDefault).
    Priority(Vec<Class>),
    /// A PriorityClass write: the names of the classes marked globalDefault.
    OneDefault(Vec<String>),
}

/// A PriorityClass as admission needs it.
#[derive(Clone, Debug)]
pub struct Class {
    /// Name.
    pub name: String,
    /// Value.
    pub value: i64,
    /// `preemptionPolicy`, if set.
    pub preemption: Option<String>,
    /// `globalDefault`.
    pub default: bool,
}

fn is(call: &Call, group: &str, kind: &str) -> bool {
    call.target.res.group == group && call.target.res.kind == kind
}

async fn classes(api: &Api) -> Result<Vec<Class>, ApiError> {
    let (kvs, _) = api.store.list_all("/registry/priorityclasses/").await?;
    let mut out = Vec::new();
    for s in kvs {
        let v = decode(&s)?;
        out.push(Class {
            name: v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string(),
            value: v.get("value").and_then(Value::as_i64).unwrap_or(0),
            preemption: v.get("preemptionPolicy").and_then(Value::as_str).map(str::to_string),
            default: v.get("globalDefault").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

/// Reads what admission of `call` (a create when `create`) needs.
pub async fn prepare(api: &Api, call: &Call, create: bool) -> Result<Admission, ApiError> {
    if create && is(call, "", "Pod") {
        return Ok(Admission::Priority(classes(api).await?));
    }
    if is(call, "scheduling.k8s.io", "PriorityClass") {
        return Ok(Admission::OneDefault(classes(api).await?.into_iter().filter(|c| c.default).map(|c| c.name).collect()));
    }
    Ok(Admission::None)
}

impl Admission {
    /// Checks (and for pods completes) `obj`, the object `call` writes.
    pub fn admit(&self, call: &Call, obj: &mut Value) -> Result<(), ApiError> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let forbidden = |why: String| ApiError::Forbidden { resource: call.target.res.qualified(), name: name.clone(), why };
        match self {
            Admission::None => Ok(()),
            Admission::OneDefault(defaults) => {
                let marked = obj.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
                match defaults.iter().find(|d| **d != name) {
                    Some(other) if marked => {
                        Err(forbidden(format!("PriorityClass {other} is already marked as default. Only one default can exist")))
                    }
                    _ => Ok(()),
                }
            }
            Admission::Priority(classes) => {
                let spec = obj.get("spec");
                let wanted = spec.and_then(|s| s.get("priorityClassName")).and_then(Value::as_str).filter(|n| !n.is_empty());
                let class = match wanted {
                    Some(n) => Some(
                        classes
                            .iter()
                            .find(|c| c.name == n)
                            .ok_or_else(|| forbidden(format!("no PriorityClass with name {n} was found")))?,
                    ),
                    None => classes.iter().find(|c| c.default),
                };
                let priority = class.map_or(0, |c| c.value);
                if let Some(given) = spec.and_then(|s| s.get("priority")).and_then(Value::as_i64).filter(|p| *p != priority) {
                    return Err(forbidden(format!(
                        "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
                    )));
                }
                let preemption = class.and_then(|c| c.preemption.clone());
                if let (Some(given), Some(computed)) = (spec.and_then(|s| s.get("preemptionPolicy")).and_then(Value::as_str), &preemption)
                    && given != computed
                {
                    return Err(forbidden(format!(
                        "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name"
                    )));
                }
                if let Some(s) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                    s.insert("priority".into(), json!(priority));
                    if let Some(c) = class {
                        s.insert("priorityClassName".into(), json!(c.name));
                    }
                    if let Some(p) = preemption {
                        s.insert("preemptionPolicy".into(), json!(p));
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(plural: &str, group: &str) -> Call {
        let res = crate::registry::find(group, "v1", plural).unwrap_or_else(|| panic!("{plural} served"));
        Call::internal(res, "test")
    }

    fn class(name: &str, value: i64, default: bool) -> Class {
        Class { name: name.into(), value, preemption: Some("PreemptLowerPriority".into()), default }
    }

    #[test]
    fn a_pods_priority_comes_from_its_class_or_the_default() {
        let classes = Admission::Priority(vec![class("high", 1000, false), class("normal", 10, true)]);
        let pods = call("pods", "");
        let mut named = json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "high"}});
        classes.admit(&pods, &mut named).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (named["spec"]["priority"].clone(), named["spec"]["preemptionPolicy"].clone()),
            (json!(1000), json!("PreemptLowerPriority"))
        );
        let mut bare = json!({"metadata": {"name": "p"}, "spec": {}});
        classes.admit(&pods, &mut bare).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((bare["spec"]["priority"].clone(), bare["spec"]["priorityClassName"].clone()), (json!(10), json!("normal")));
        let missing = classes.admit(&pods, &mut json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "gold"}}));
        assert_eq!(missing.err().map(|e| e.to_string()), Some("pods \"p\" is forbidden: no PriorityClass with name gold was found".into()));
        assert!(
            classes.admit(&pods, &mut json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "high", "priority": 5}})).is_err()
        );
        let none = Admission::Priority(vec![]);
        let mut plain = json!({"metadata": {"name": "p"}, "spec": {}});
        none.admit(&pods, &mut plain).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain["spec"]["priority"], 0);
    }

    #[test]
    fn only_one_priority_class_is_the_default() {
        let pcs = call("priorityclasses", "scheduling.k8s.io");
        let one = Admission::OneDefault(vec!["normal".into()]);
        assert!(one.admit(&pcs, &mut json!({"metadata": {"name": "other"}, "globalDefault": true})).is_err());
        assert!(one.admit(&pcs, &mut json!({"metadata": {"name": "normal"}, "globalDefault": true})).is_ok(), "itself");
        assert!(one.admit(&pcs, &mut json!({"metadata": {"name": "other"}})).is_ok());
    }
}
