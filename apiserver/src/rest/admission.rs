//! Admission: the checks and changes kube-apiserver's admission plugins make that need other
//! objects than the one written. Each is read from the store (linearizable, so a class created
//! just before a pod is seen), then applied to the object without I/O.
//!
//! - Priority (pods, on create): `spec.priorityClassName` names a PriorityClass whose value
//!   becomes `spec.priority` (and its preemptionPolicy the pod's); without a name, the class
//!   marked `globalDefault` if there is one, else priority 0. A class that does not exist is
//!   403 `no PriorityClass with name X was found`; a `spec.priority` that differs is 403.
//! - DefaultTolerationSeconds (pods, on create): a pod that does not tolerate
//!   `node.kubernetes.io/not-ready:NoExecute` (or `unreachable`) gets a toleration of it for
//!   `--default-not-ready-toleration-seconds` (`--default-unreachable-toleration-seconds`), 300 s.
//! - TaintNodesByCondition (nodes, on create): a new node carries
//!   `node.kubernetes.io/not-ready:NoSchedule` until the node lifecycle controller sees it Ready.
//! - PriorityClasses (create and update): only one may be `globalDefault`.
//! - ServiceAccount (pods, on create; [`service_account`]): on by default only when the server
//!   signs service-account tokens (kube-apiserver cannot run without a key; Keel's dev mode
//!   without one keeps pods as they are): the default account, refused when the account is
//!   missing, the projected token volume and its mounts.
//! - LimitRanger (pods, on create; [`limit_ranger`]): after the pod's own defaults (requests
//!   from limits), every LimitRange of the namespace fills missing container limits and
//!   requests (noted in the `kubernetes.io/limit-ranger` annotation), then min, max and
//!   maxLimitRequestRatio are checked: a violation is 403 with kube's message
//!   (keel-access's [`keel_access::admission::limit_ranger`]).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::rest::Api;
use crate::storage::decode;
use serde_json::{Value, json};

/// The plugins this server has, by kube's names.
pub const PLUGINS: &[&str] = &[
    "DefaultTolerationSeconds",
    "LimitRanger",
    "NamespaceLifecycle",
    "NodeRestriction",
    "Priority",
    "ResourceQuota",
    "ServiceAccount",
    "TaintNodesByCondition",
];

/// The plugins on unless `--disable-admission-plugins` names them. TaintNodesByCondition is on
/// in kube-apiserver by default, but here it needs `--enable-admission-plugins`: a new node then
/// stays unschedulable until keel-controller-manager's node lifecycle controller sees it Ready,
/// which a cluster without that controller (most component tests) would never see. keel up,
/// which runs the controller-manager, turns it on.
pub const DEFAULT_PLUGINS: &[&str] = &["DefaultTolerationSeconds", "LimitRanger", "NamespaceLifecycle", "Priority", "ResourceQuota"];

/// The plugins that run: the defaults, plus `enable`, less `disable` (a name this server does
/// not have is refused). `signs_tokens`: the server has a service-account signing key, which
/// turns ServiceAccount on by default (as in kube, where one is required) and without which
/// enabling it is refused (its pods would mount tokens nobody can issue).
pub fn plugins(enable: &[String], disable: &[String], signs_tokens: bool) -> Result<std::collections::BTreeSet<String>, String> {
    for p in enable.iter().chain(disable) {
        if !PLUGINS.contains(&p.as_str()) {
            return Err(format!("admission plugin {p:?} is not served here (served: {})", PLUGINS.join(", ")));
        }
    }
    if !signs_tokens && enable.iter().any(|p| p == "ServiceAccount") {
        return Err(
            "admission plugin \"ServiceAccount\" needs --service-account-signing-key-file (the tokens it mounts are issued with it)".into(),
        );
    }
    let mut on: std::collections::BTreeSet<String> = DEFAULT_PLUGINS.iter().map(|s| s.to_string()).collect();
    if signs_tokens {
        on.insert("ServiceAccount".into());
    }
    on.extend(enable.iter().cloned());
    for d in disable {
        on.remove(d);
    }
    Ok(on)
}

/// What admission read for one request.
pub enum Admission {
    /// Nothing to check for this kind.
    None,
    /// A pod create: the PriorityClasses (Priority), and the default toleration seconds of
    /// not-ready and unreachable nodes (DefaultTolerationSeconds), for the plugins that run.
    Pod {
        /// The PriorityClasses.
        classes: Option<Vec<Class>>,
        /// Seconds of the default `not-ready` and `unreachable` tolerations.
        tolerations: Option<(i64, i64)>,
    },
    /// A node create: the not-ready taint.
    Node,
    /// A PriorityClass write: the names of the classes marked globalDefault.
    OneDefault(Vec<String>),
}

/// The taint a node that is not Ready carries.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint a node whose kubelet is silent carries.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

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

/// LimitRanger on `pod` (the defaulted pod a create stores), with the namespace's LimitRanges
/// read from the store when the watch cache has any.
pub async fn limit_ranger(api: &Api, call: &Call, pod: &mut Value) -> Result<(), ApiError> {
    if !is(call, "", "Pod") || !api.admission_plugins.contains("LimitRanger") {
        return Ok(());
    }
    let Some(ns) = call.target.namespace.as_deref() else { return Ok(()) };
    let prefix = format!("/registry/limitranges/{ns}/");
    // The watch cache says whether there are any (most namespaces have none); the store then
    // gives the current ones.
    if let Some(res) = crate::registry::find("", "v1", "limitranges")
        && !api.caches.of(res).await?.any_under(&prefix)
    {
        return Ok(());
    }
    let (kvs, _) = api.store.list_all(&prefix).await?;
    if kvs.is_empty() {
        return Ok(());
    }
    let mut ranges = Vec::new();
    for s in kvs {
        ranges.push(serde_json::from_value(decode(&s)?).map_err(|e| ApiError::Store(format!("stored limitrange: {e}")))?);
    }
    let mut typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod.clone()).map_err(|e| ApiError::BadRequest(format!("LimitRanger: {e}")))?;
    keel_access::admission::limit_ranger::admit_pod_create(&ranges, &mut typed).map_err(ApiError::Access)?;
    *pod = serde_json::to_value(&typed).map_err(|e| ApiError::BadRequest(format!("LimitRanger: {e}")))?;
    Ok(())
}

/// ServiceAccount on `pod` (a create): the pod runs as `default` when it names no account, the
/// account must exist (read from the store: kube looks in its cache, then live), and the
/// `kube-api-access-<xxxxx>` projected token volume is mounted in every container unless
/// automounting is off (keel-access's [`keel_access::admission::service_account`]).
pub async fn service_account(api: &Api, call: &Call, pod: &mut Value) -> Result<(), ApiError> {
    if !is(call, "", "Pod") || !api.admission_plugins.contains("ServiceAccount") {
        return Ok(());
    }
    let Some(ns) = call.target.namespace.clone() else { return Ok(()) };
    let mut typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod.clone()).map_err(|e| ApiError::BadRequest(format!("ServiceAccount: {e}")))?;
    let name = typed
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| keel_access::admission::service_account::DEFAULT_SERVICE_ACCOUNT.to_string());
    let account: Option<k8s_openapi::api::core::v1::ServiceAccount> =
        match api.store.get(&format!("/registry/serviceaccounts/{ns}/{name}")).await? {
            Some(s) => Some(serde_json::from_value(decode(&s)?).map_err(|e| ApiError::Store(format!("stored serviceaccount: {e}")))?),
            None => None,
        };
    let suffix = api.ids.suffix();
    keel_access::admission::service_account::admit_pod_create(&mut typed, &ns, |n| account.clone().filter(|_| n == name), &suffix)
        .map_err(ApiError::Access)?;
    *pod = serde_json::to_value(&typed).map_err(|e| ApiError::BadRequest(format!("ServiceAccount: {e}")))?;
    Ok(())
}

/// Reads what admission of `call` (a create when `create`) needs.
pub async fn prepare(api: &Api, call: &Call, create: bool) -> Result<Admission, ApiError> {
    let on = |p: &str| api.admission_plugins.contains(p);
    if create && is(call, "", "Pod") && (on("Priority") || on("DefaultTolerationSeconds")) {
        let (not_ready, unreachable) = api.default_toleration_seconds;
        let classes = if on("Priority") { Some(classes(api).await?) } else { None };
        let tolerations = on("DefaultTolerationSeconds").then_some((not_ready, unreachable));
        return Ok(Admission::Pod { classes, tolerations });
    }
    if create && is(call, "", "Node") && on("TaintNodesByCondition") {
        return Ok(Admission::Node);
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
            Admission::Node => {
                taint_not_ready(obj);
                Ok(())
            }
            Admission::Pod { classes, tolerations } => {
                if let Some((not_ready, unreachable)) = tolerations {
                    default_tolerations(obj, *not_ready, *unreachable);
                }
                let Some(classes) = classes else { return Ok(()) };
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

/// TaintNodesByCondition: the not-ready NoSchedule taint, unless the node has it.
fn taint_not_ready(node: &mut Value) {
    let Some(o) = node.as_object_mut() else { return };
    let spec = o.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else { return };
    let taints = spec.entry("taints").or_insert_with(|| json!([]));
    let Some(list) = taints.as_array_mut() else { return };
    if !list.iter().any(|t| t["key"] == NOT_READY && t["effect"] == "NoSchedule") {
        list.push(json!({"key": NOT_READY, "effect": "NoSchedule"}));
    }
}

/// DefaultTolerationSeconds: tolerations of not-ready and unreachable nodes for a while,
/// unless the pod tolerates them already (a toleration with that key, or with no key, whose
/// effect is NoExecute or none).
fn default_tolerations(pod: &mut Value, not_ready: i64, unreachable: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    let tolerates = |list: &[Value], key: &str| {
        list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    for (key, secs) in [(NOT_READY, not_ready), (UNREACHABLE, unreachable)] {
        if !tolerates(list, key) {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}));
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
        let classes = Admission::Pod { classes: Some(vec![class("high", 1000, false), class("normal", 10, true)]), tolerations: None };
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
        let none = Admission::Pod { classes: Some(vec![]), tolerations: None };
        let mut plain = json!({"metadata": {"name": "p"}, "spec": {}});
        none.admit(&pods, &mut plain).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain["spec"]["priority"], 0);
    }

    #[test]
    fn pods_tolerate_unready_nodes_for_a_while_and_new_nodes_are_tainted() {
        let mut pod = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        default_tolerations(&mut pod, 300, 200);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_tolerations(&mut everything, 300, 300);
        assert_eq!(everything["spec"]["tolerations"].as_array().map(Vec::len), Some(1), "tolerates every taint already");
        let mut node = json!({"metadata": {"name": "n"}});
        taint_not_ready(&mut node);
        taint_not_ready(&mut node);
        assert_eq!(node["spec"]["taints"], json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]));
    }

    #[test]
    fn plugins_are_kubes_names_on_by_default_or_as_asked() {
        let on = plugins(&[], &[], false).unwrap_or_default();
        assert!(on.contains("Priority") && on.contains("LimitRanger") && on.contains("ResourceQuota"));
        assert!(!on.contains("TaintNodesByCondition") && !on.contains("ServiceAccount"), "{on:?}");
        let on = plugins(&["TaintNodesByCondition".into()], &["Priority".into()], false).unwrap_or_default();
        assert!(on.contains("TaintNodesByCondition") && !on.contains("Priority"));
        assert!(plugins(&["PodSecurity".into()], &[], false).is_err());
        // ServiceAccount: on by default with a signing key, refused without one.
        assert!(plugins(&[], &[], true).unwrap_or_default().contains("ServiceAccount"));
        assert!(!plugins(&[], &["ServiceAccount".into()], true).unwrap_or_default().contains("ServiceAccount"));
        let refused = plugins(&["ServiceAccount".into()], &[], false);
        assert!(refused.as_ref().is_err_and(|e| e.contains("--service-account-signing-key-file")), "{refused:?}");
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
