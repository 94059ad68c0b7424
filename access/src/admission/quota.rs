//! ResourceQuota arithmetic (kube's `pkg/quota/v1` evaluators and the admission's
//! `CheckRequest`): what an object uses, whether a namespace's quotas admit it, and each quota's
//! new `status.used`. The race-free write of those statuses is the apiserver's (see
//! INTEGRATION.md): this module only computes.
//!
//! Invariants (kube's):
//! - A pod uses `count/pods` always, and `pods`, `cpu`/`requests.cpu`, `memory`/
//!   `requests.memory`, `limits.*`, `ephemeral-storage`, hugepages and `requests.<extended>`
//!   while it is not terminal (and not past its deletion grace period); other objects use
//!   `count/<resource>[.<group>]` and, for core kinds, their legacy name (`configmaps`, …);
//!   claims also use `requests.storage`.
//! - A quota applies to an object when its scopes match and it limits at least one resource the
//!   object uses; an applying quota that limits cpu or memory needs every container to state it;
//!   one whose `used` lacks a limited resource refuses (`status unknown`) until it is computed.
//! - On update only the growth is charged; nothing is charged when nothing grows.
//! - Admission succeeds only if every applying quota stays within `hard`; the first one that
//!   would not is the 403, with kube's `exceeded quota: <name>, requested: ..., used: ...,
//!   limited: ...`.

use crate::admission::limit_ranger::object_name;
use crate::admission::quantity::Quantity;
use crate::admission::resources::{ResourceList, add_into, is_best_effort, parse_list, pod_limits, pod_requests};
use crate::error::Error;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;

/// Core kinds whose object count has a legacy quota name.
const LEGACY_COUNTS: &[&str] =
    &["pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps", "persistentvolumeclaims"];

/// `count/<resource>` for core, `count/<resource>.<group>` otherwise.
pub fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() { format!("count/{resource}") } else { format!("count/{resource}.{group}") }
}

/// What creating one object of a kind without compute usage uses.
pub fn object_count_usage(group: &str, resource: &str) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(count_name(group, resource), Quantity::from_units(1));
    if group.is_empty() && LEGACY_COUNTS.contains(&resource) && resource != "pods" {
        out.insert(resource.to_string(), Quantity::from_units(1));
    }
    out
}

/// kube's `QuotaV1Pod`: terminal pods and pods past their deletion grace period are not charged
/// compute resources.
pub fn pod_is_charged(pod: &Pod, now: Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if let (Some(del), Some(grace)) = (&pod.metadata.deletion_timestamp, pod.metadata.deletion_grace_period_seconds)
        && del.0.checked_add(SignedDuration::from_secs(grace)).is_ok_and(|end| now > end)
    {
        return false;
    }
    true
}

fn is_extended(name: &str) -> bool {
    // kube's IsExtendedResourceName: fully qualified, not kubernetes.io, not requests. prefixed.
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.") && !name.starts_with("count/")
}

/// What a pod uses (kube's `PodUsageFunc`).
pub fn pod_usage(pod: &Pod, now: Timestamp) -> Result<ResourceList, Error> {
    let mut out = ResourceList::new();
    out.insert("count/pods".into(), Quantity::from_units(1));
    if !pod_is_charged(pod, now) {
        return Ok(out);
    }
    let requests = pod_requests(pod, true)?;
    let limits = pod_limits(pod, true)?;
    out.insert("pods".into(), Quantity::from_units(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.into(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (name, q) in &requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        }
        if is_extended(name) {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    Ok(out)
}

/// What a claim uses (kube's PVC evaluator, without storage classes' own names).
pub fn pvc_usage(pvc: &PersistentVolumeClaim) -> Result<ResourceList, Error> {
    let mut out = object_count_usage("", "persistentvolumeclaims");
    let requests = parse_list(pvc.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()))?;
    if let Some(q) = requests.get("storage") {
        out.insert("requests.storage".into(), *q);
        if let Some(class) = pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()) {
            out.insert(format!("{class}.storageclass.storage.k8s.io/requests.storage"), *q);
            out.insert(format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"), Quantity::from_units(1));
        }
    }
    Ok(out)
}

/// The object being admitted, for scope and constraint checks.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A pod (scopes and the cpu/memory constraint apply).
    Pod(&'a Pod),
    /// Any other object.
    Other,
}

/// The `hard` a quota enforces: `status.hard` once the quota's status is set, `spec.hard`
/// before (Keel never leaves a new quota unenforced; kube's admission skips it until its
/// controller copies spec into status).
pub fn hard_of(q: &ResourceQuota) -> Result<ResourceList, Error> {
    let status = q.status.as_ref().and_then(|s| s.hard.as_ref()).filter(|h| !h.is_empty());
    parse_list(status.or(q.spec.as_ref().and_then(|s| s.hard.as_ref())))
}

fn used_of(q: &ResourceQuota) -> Result<ResourceList, Error> {
    parse_list(q.status.as_ref().and_then(|s| s.used.as_ref()))
}

fn scope_matches(scope: &str, op: &str, values: &[String], subject: Subject<'_>) -> bool {
    let Subject::Pod(pod) = subject else {
        // Scopes only select pods; other objects match no scope.
        return false;
    };
    let spec = pod.spec.as_ref();
    let matched = match scope {
        "Terminating" => spec.and_then(|s| s.active_deadline_seconds).is_some_and(|d| d >= 0),
        "NotTerminating" => spec.and_then(|s| s.active_deadline_seconds).is_none_or(|d| d < 0),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = spec.and_then(|s| s.priority_class_name.as_deref()).unwrap_or("");
            return match op {
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            };
        }
        _ => false,
    };
    match op {
        "Exists" | "" => matched,
        "DoesNotExist" => !matched,
        _ => false,
    }
}

fn quota_matches(q: &ResourceQuota, subject: Subject<'_>) -> bool {
    let spec = q.spec.as_ref();
    let scopes = spec.and_then(|s| s.scopes.as_deref()).unwrap_or(&[]);
    let selector = spec.and_then(|s| s.scope_selector.as_ref()).and_then(|s| s.match_expressions.as_deref()).unwrap_or(&[]);
    scopes.iter().all(|s| scope_matches(s, "Exists", &[], subject))
        && selector.iter().all(|e| scope_matches(&e.scope_name, &e.operator, e.values.as_deref().unwrap_or(&[]), subject))
}

fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn mask(list: &ResourceList, names: &BTreeSet<String>) -> ResourceList {
    list.iter().filter(|(k, _)| names.contains(*k)).map(|(k, v)| (k.clone(), *v)).collect()
}

/// The pod evaluator's cpu/memory rule: each container must request (or limit) what a quota
/// limits (kube's `Constraints`).
fn pod_constraints(pod: &Pod, limited: &BTreeSet<String>) -> Option<String> {
    let validation = ["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];
    let mut missing: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let spec = pod.spec.as_ref()?;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let res = c.resources.as_ref();
        for r in validation.iter().filter(|r| limited.contains(**r)) {
            let (list, name) = match r.strip_prefix("limits.") {
                Some(n) => (res.and_then(|x| x.limits.as_ref()), n),
                None => (res.and_then(|x| x.requests.as_ref()), r.strip_prefix("requests.").unwrap_or(r)),
            };
            if !list.is_some_and(|l| l.contains_key(name)) {
                missing.entry(r.to_string()).or_default().insert(c.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> =
        missing.iter().map(|(r, cs)| format!("{r} for: {}", cs.iter().cloned().collect::<Vec<_>>().join(","))).collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// A quota whose `status.used` admission changed: write it (guarded by `resource_version`) in
/// the same transaction as the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// The quota's name.
    pub name: String,
    /// Its resourceVersion when read (the write's precondition).
    pub resource_version: String,
    /// The new `status.used`.
    pub used: ResourceList,
}

/// Checks a create (`old_usage` None) or update of an object in a namespace with `quotas`:
/// the quotas to charge, or kube's 403. `usage` is the object's usage ([`pod_usage`],
/// [`object_count_usage`], …); `resource`/`object` name it in errors.
pub fn check(
    quotas: &[ResourceQuota],
    subject: Subject<'_>,
    usage: &ResourceList,
    old_usage: Option<&ResourceList>,
    resource: (&str, &str),
    object: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<Vec<Charge>, Error> {
    let (group, res) = resource;
    let forbid = |msg: String| Error::forbidden(group, res, &object_name(object), msg);
    let usable: BTreeSet<String> = usage.keys().cloned().collect();
    let mut applying = Vec::new();
    for q in quotas {
        let hard = hard_of(q)?;
        let limited: BTreeSet<String> = hard.keys().filter(|k| usable.contains(*k) || is_pod_matchable(k, subject)).cloned().collect();
        if limited.is_empty() || !quota_matches(q, subject) {
            continue;
        }
        let name = q.metadata.name.clone().unwrap_or_default();
        if let Subject::Pod(pod) = subject
            && let Some(msg) = pod_constraints(pod, &limited)
        {
            return Err(forbid(format!("failed quota: {name}: {msg}")));
        }
        let used = used_of(q)?;
        let unknown: Vec<&String> = limited.iter().filter(|r| !used.contains_key(*r)).collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
            return Err(forbid(format!("status unknown for quota: {name}, resources: {}", names.join(","))));
        }
        applying.push((q, name, hard, used));
    }
    if applying.is_empty() {
        return Ok(Vec::new());
    }
    let negative: Vec<&str> = usage.iter().filter(|(_, v)| **v < Quantity::ZERO).map(|(k, _)| k.as_str()).collect();
    if !negative.is_empty() {
        return Err(forbid(format!("quota usage is negative for resource(s): {}", negative.join(","))));
    }
    let mut delta = usage.clone();
    if let Some(old) = old_usage {
        for (k, v) in delta.iter_mut() {
            if let Some(o) = old.get(k) {
                *v = if *v > *o { *v - *o } else { Quantity::ZERO };
            }
        }
    }
    delta.retain(|_, v| !v.is_zero());
    if delta.is_empty() {
        return Ok(Vec::new());
    }
    let mut charges = Vec::new();
    for (q, name, hard, used) in applying {
        let hard_names: BTreeSet<String> = hard.keys().cloned().collect();
        let requested = mask(&delta, &hard_names);
        if requested.is_empty() {
            continue;
        }
        let mut new_used = used.clone();
        add_into(&mut new_used, &requested);
        let exceeded: BTreeSet<String> = requested.keys().filter(|k| new_used.get(*k) > hard.get(*k)).cloned().collect();
        if !exceeded.is_empty() {
            return Err(forbid(format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                pretty(&mask(&requested, &exceeded)),
                pretty(&mask(&used, &exceeded)),
                pretty(&mask(&hard, &exceeded))
            )));
        }
        charges.push(Charge { name, resource_version: q.metadata.resource_version.clone().unwrap_or_default(), used: new_used });
    }
    Ok(charges)
}

/// What removing (or shrinking) an object gives back: for each quota that applies to
/// `subject` and limits something in `freed`, its `status.used` less `freed` (never below
/// zero). Quotas with nothing to give back are left out. The apiserver writes these in the
/// delete's (or update's) transaction, so `used` stays exact without waiting for a recount.
pub fn release(quotas: &[ResourceQuota], subject: Subject<'_>, freed: &ResourceList) -> Result<Vec<Charge>, Error> {
    let mut out = Vec::new();
    for q in quotas.iter().filter(|q| quota_matches(q, subject)) {
        let hard = hard_of(q)?;
        let mut used = used_of(q)?;
        let mut changed = false;
        for (k, v) in freed.iter().filter(|(k, v)| hard.contains_key(*k) && !v.is_zero()) {
            if let Some(u) = used.get_mut(k) {
                let next = if *u > *v { *u - *v } else { Quantity::ZERO };
                changed |= next != *u;
                *u = next;
            }
        }
        if changed {
            let name = q.metadata.name.clone().unwrap_or_default();
            out.push(Charge { name, resource_version: q.metadata.resource_version.clone().unwrap_or_default(), used });
        }
    }
    Ok(out)
}

/// Resources a pod can be charged even when this pod does not use them (so a quota limiting
/// `requests.cpu` applies, and its constraint reports the missing request).
fn is_pod_matchable(name: &str, subject: Subject<'_>) -> bool {
    matches!(subject, Subject::Pod(_))
        && (matches!(
            name,
            "pods"
                | "count/pods"
                | "cpu"
                | "memory"
                | "ephemeral-storage"
                | "requests.cpu"
                | "requests.memory"
                | "requests.ephemeral-storage"
                | "limits.cpu"
                | "limits.memory"
                | "limits.ephemeral-storage"
        ) || name.starts_with("hugepages-")
            || name.starts_with("requests.hugepages-"))
}

/// Recomputes a quota's `status.used` from what exists (the quota controller's job; the
/// apiserver may run it when a quota is created or its spec changes). `pods` are the pods of
/// the namespace; `counts` are the numbers of other objects by quota resource name
/// (`count/configmaps`, `configmaps`, …).
pub fn recompute_used(q: &ResourceQuota, pods: &[Pod], counts: &ResourceList, now: Timestamp) -> Result<ResourceList, Error> {
    let hard = hard_of(q)?;
    let mut used: ResourceList = hard.keys().map(|k| (k.clone(), Quantity::ZERO)).collect();
    for pod in pods.iter().filter(|p| quota_matches(q, Subject::Pod(p))) {
        let u = pod_usage(pod, now)?;
        let masked: ResourceList = u.into_iter().filter(|(k, _)| hard.contains_key(k)).collect();
        add_into(&mut used, &masked);
    }
    if quota_matches(q, Subject::Other) {
        for (k, v) in counts {
            if hard.contains_key(k) && !k.ends_with("/pods") && k != "pods" {
                used.insert(k.clone(), *v);
            }
        }
    }
    Ok(used)
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
