//! Which nodes a DaemonSet's pods belong on, without I/O (kube's `NodeShouldRunDaemonPod` and
//! `daemon/util`): a node qualifies when it matches the pod's `nodeName`, `nodeSelector` and
//! required node affinity, and the pod (with the daemon tolerations added) tolerates its
//! NoSchedule and NoExecute taints; a pod already there keeps running unless a NoExecute
//! taint is not tolerated. Each daemon pod is pinned to its node with a required node
//! affinity on `metadata.name`, so the default scheduler places it (Kubernetes ≥ 1.12).

use crate::nodelifecycle::taints::{
    DISK_PRESSURE, MEMORY_PRESSURE, NETWORK_UNAVAILABLE, NO_EXECUTE, NO_SCHEDULE, NOT_READY, PID_PRESSURE, UNREACHABLE, UNSCHEDULABLE,
    tolerates,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, PodTemplateSpec, Toleration,
};
use std::collections::BTreeMap;

/// Label of daemon pods: the ControllerRevision (template hash) they were made from.
pub const REVISION_HASH: &str = "controller-revision-hash";
/// Label of daemon pods: the DaemonSet's template generation (when the annotation is set).
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";
/// DaemonSet annotation kube's apiserver keeps in step with template changes.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    }
}

/// `AddOrUpdateDaemonPodTolerations`: daemon pods stay through not-ready/unreachable and land
/// on nodes under pressure or cordoned.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut want = vec![
        exists(NOT_READY, NO_EXECUTE),
        exists(UNREACHABLE, NO_EXECUTE),
        exists(DISK_PRESSURE, NO_SCHEDULE),
        exists(MEMORY_PRESSURE, NO_SCHEDULE),
        exists(PID_PRESSURE, NO_SCHEDULE),
        exists(UNSCHEDULABLE, NO_SCHEDULE),
    ];
    if spec.host_network == Some(true) {
        want.push(exists(NETWORK_UNAVAILABLE, NO_SCHEDULE));
    }
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for w in want {
        // Replace a toleration of the same key and effect (kube's AddOrUpdateTolerationInPodSpec).
        tols.retain(|t| !(t.key == w.key && t.effect == w.effect));
        tols.push(w);
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| vals.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !vals.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), vals.first().and_then(|b| b.parse::<i64>().ok()))
            else {
                return false;
            };
            if r.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        // An empty term matches no objects.
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, node.metadata.name.as_deref()))
}

/// `nodeSelector` and required node affinity (terms ORed) of `spec` against `node`.
pub fn affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

/// The first of `node`'s taints with an effect `effects` allows that `tolerations` do not tolerate.
fn untolerated(node: &Node, tolerations: &[Toleration], effects: &[&str]) -> bool {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    taints.iter().filter(|t| effects.contains(&t.effect.as_str())).any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The pod spec the DaemonSet would run on a node (its template with daemon tolerations).
pub fn daemon_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

/// `NodeShouldRunDaemonPod`: (should run a pod there, may keep running one there).
pub fn should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let spec = daemon_spec(ds);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != name) {
        return (false, false);
    }
    if !affinity_matches(&spec, node) {
        return (false, false);
    }
    let tols = spec.tolerations.clone().unwrap_or_default();
    if untolerated(node, &tols, &[NO_SCHEDULE, NO_EXECUTE]) {
        return (false, !untolerated(node, &tols, &[NO_EXECUTE]));
    }
    (true, true)
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity becomes exactly
/// "`metadata.name` In \[node\]".
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    });
    a
}

/// `CreatePodTemplate` for `node`: daemon tolerations, the revision-hash (and generation)
/// labels, pinned to the node.
pub fn pod_template(ds: &DaemonSet, hash: &str, node: &str) -> PodTemplateSpec {
    let mut t = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut spec = t.spec.take().unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    t.spec = Some(spec);
    let labels: &mut BTreeMap<String, String> = t.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH.into(), hash.into());
    }
    t
}

/// `GetTemplateGeneration`: the DaemonSet's template generation annotation.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata.annotations.as_ref()?.get(TEMPLATE_GENERATION_ANNOTATION)?.parse().ok()
}

/// `GetTargetNodeName`: `spec.nodeName`, or for a pod not yet scheduled the node its required
/// affinity pins it to.
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms =
        &spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// `IsPodUpdated`: the pod carries the current hash (or template generation).
pub fn is_updated(p: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = p.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let hash_ok = !hash.is_empty() && get(REVISION_HASH) == Some(hash);
    let gen_ok = generation.is_some_and(|g| get(TEMPLATE_GENERATION) == Some(g.to_string().as_str()));
    hash_ok || gen_ok
}

#[cfg(test)]
#[path = "eligibility_tests.rs"]
mod tests;
