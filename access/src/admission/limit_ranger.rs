//! LimitRanger admission (kube's `plugin/pkg/admission/limitranger`), and the defaulting of
//! LimitRange objects themselves.
//!
//! Invariants (kube's):
//! - Mutation (pod create): each Container-type item's `default` fills missing limits and
//!   `defaultRequest` missing requests, in init and regular containers; what was set is recorded
//!   in the `kubernetes.io/limit-ranger` annotation.
//! - Validation: Container-type min/max/maxLimitRequestRatio per container (init containers
//!   too), Pod-type ones against the pod's total (kube's pod requests/limits); every violation
//!   of the first LimitRange that has any is reported, and the request is 403 with kube's
//!   messages. PersistentVolumeClaim-type min/max check storage requests.
//! - Pod updates are not checked (containers' resources are immutable), nor subresources.

use crate::admission::quantity::Quantity;
use crate::admission::resources::{ResourceList, container_limits, container_requests, parse_list, pod_limits, pod_requests, to_kube};
use crate::authz::aggregate;
use crate::error::Error;
use k8s_openapi::api::core::v1::{Container, LimitRange, LimitRangeItem, PersistentVolumeClaim, Pod};
use std::collections::BTreeMap;

/// The annotation recording what LimitRanger set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// kube's `SetDefaults_LimitRangeItem`, for the apiserver's limitranges strategy: a Container
/// item's `default` comes from `max`, its `defaultRequest` from `default`, then from `min`.
pub fn default_limit_range(lr: &mut LimitRange) {
    for item in lr.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
        if item.type_ != "Container" {
            continue;
        }
        let default = item.default.get_or_insert_with(BTreeMap::new);
        for (k, v) in item.max.iter().flatten() {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let default = default.clone();
        let request = item.default_request.get_or_insert_with(BTreeMap::new);
        for (k, v) in &default {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in item.min.iter().flatten() {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn items(lr: &LimitRange) -> &[LimitRangeItem] {
    lr.spec.as_ref().map(|s| s.limits.as_slice()).unwrap_or(&[])
}

fn merge_container(c: &mut Container, limits: &ResourceList, requests: &ResourceList, prefix: &str, notes: &mut Vec<String>) {
    let res = c.resources.get_or_insert_with(Default::default);
    let fill = |list: &mut Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, defaults: &ResourceList| {
        let mut set = Vec::new();
        let l = list.get_or_insert_with(BTreeMap::new);
        for (k, v) in to_kube(defaults) {
            if !l.contains_key(&k) {
                l.insert(k.clone(), v);
                set.push(k);
            }
        }
        if l.is_empty() {
            *list = None;
        }
        set
    };
    let set_limits = fill(&mut res.limits, limits);
    let set_requests = fill(&mut res.requests, requests);
    if !set_requests.is_empty() {
        notes.push(format!("{} request for {prefix} {}", set_requests.join(", "), c.name));
    }
    if !set_limits.is_empty() {
        notes.push(format!("{} limit for {prefix} {}", set_limits.join(", "), c.name));
    }
}

/// Applies one LimitRange's container defaults to a pod being created (kube's
/// `PodMutateLimitFunc`).
pub fn mutate_pod(lr: &LimitRange, pod: &mut Pod) -> Result<(), Error> {
    let (mut limits, mut requests) = (ResourceList::new(), ResourceList::new());
    for item in items(lr).iter().filter(|i| i.type_ == "Container") {
        requests.extend(parse_list(item.default_request.as_ref())?);
        limits.extend(parse_list(item.default.as_ref())?);
    }
    let mut notes = Vec::new();
    if let Some(spec) = pod.spec.as_mut() {
        for c in spec.containers.iter_mut() {
            merge_container(c, &limits, &requests, "container", &mut notes);
        }
        for c in spec.init_containers.iter_mut().flatten() {
            merge_container(c, &limits, &requests, "init container", &mut notes);
        }
    }
    if !notes.is_empty() {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNOTATION.into(), format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
    Ok(())
}

/// kube's `requestLimitEnforcedValues`: milli precision unless that would overflow.
fn comparable(request: Option<&Quantity>, limit: Option<&Quantity>, enforced: &Quantity) -> (i64, i64, i64) {
    const MAX_MILLI: i64 = i64::MAX / 1000;
    let (r, l) = (request.copied().unwrap_or(Quantity::ZERO), limit.copied().unwrap_or(Quantity::ZERO));
    if r.value() <= MAX_MILLI && l.value() <= MAX_MILLI && enforced.value() <= MAX_MILLI {
        (r.milli_value(), l.milli_value(), enforced.milli_value())
    } else {
        (r.value(), l.value(), enforced.value())
    }
}

fn min_constraint(kind: &str, name: &str, enforced: &Quantity, request: &ResourceList, limit: &ResourceList) -> Option<String> {
    let (req, lim) = (request.get(name), limit.get(name));
    let (r, l, e) = comparable(req, lim, enforced);
    match req {
        None => Some(format!("minimum {name} usage per {kind} is {enforced}.  No request is specified")),
        Some(q) if r < e => Some(format!("minimum {name} usage per {kind} is {enforced}, but request is {q}")),
        _ => lim.filter(|_| l < e).map(|q| format!("minimum {name} usage per {kind} is {enforced}, but limit is {q}")),
    }
}

fn max_constraint(kind: &str, name: &str, enforced: &Quantity, request: &ResourceList, limit: &ResourceList) -> Option<String> {
    let (req, lim) = (request.get(name), limit.get(name));
    let (r, l, e) = comparable(req, lim, enforced);
    match lim {
        None => Some(format!("maximum {name} usage per {kind} is {enforced}.  No limit is specified")),
        Some(q) if l > e => Some(format!("maximum {name} usage per {kind} is {enforced}, but limit is {q}")),
        _ => req.filter(|_| r > e).map(|q| format!("maximum {name} usage per {kind} is {enforced}, but request is {q}")),
    }
}

fn max_request_constraint(kind: &str, name: &str, enforced: &Quantity, request: &ResourceList) -> Option<String> {
    let req = request.get(name);
    let (r, _, e) = comparable(req, None, enforced);
    match req {
        None => Some(format!("maximum {name} usage per {kind} is {enforced}.  No request is specified")),
        Some(q) if r > e => Some(format!("maximum {name} usage per {kind} is {enforced}, but request is {q}")),
        _ => None,
    }
}

fn ratio_constraint(kind: &str, name: &str, enforced: &Quantity, request: &ResourceList, limit: &ResourceList) -> Option<String> {
    let (req, lim) = (request.get(name), limit.get(name));
    let (r, l, _) = comparable(req, lim, enforced);
    if req.is_none() || r == 0 {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    }
    if lim.is_none() || l == 0 {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    }
    let display = l as f64 / r as f64;
    let (observed, max) = if enforced.value() <= i64::MAX / 1000 {
        (display * 1000.0, enforced.milli_value() as f64)
    } else {
        (display, enforced.value() as f64)
    };
    (observed > max).then(|| format!("{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {display:.6}"))
}

fn check_item(item: &LimitRangeItem, requests: &ResourceList, limits: &ResourceList, errs: &mut Vec<String>) -> Result<(), Error> {
    let kind = item.type_.as_str();
    for (k, v) in parse_list(item.min.as_ref())? {
        errs.extend(min_constraint(kind, &k, &v, requests, limits));
    }
    for (k, v) in parse_list(item.max.as_ref())? {
        errs.extend(max_constraint(kind, &k, &v, requests, limits));
    }
    for (k, v) in parse_list(item.max_limit_request_ratio.as_ref())? {
        errs.extend(ratio_constraint(kind, &k, &v, requests, limits));
    }
    Ok(())
}

/// The violations of one LimitRange by a pod (kube's `PodValidateLimitFunc`), as one message.
pub fn validate_pod(lr: &LimitRange, pod: &Pod) -> Result<Option<String>, Error> {
    let mut errs = Vec::new();
    let Some(spec) = &pod.spec else { return Ok(None) };
    for item in items(lr) {
        match item.type_.as_str() {
            "Container" => {
                for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
                    check_item(item, &container_requests(c)?, &container_limits(c)?, &mut errs)?;
                }
            }
            "Pod" => check_item(item, &pod_requests(pod, false)?, &pod_limits(pod, false)?, &mut errs)?,
            _ => {}
        }
    }
    Ok((!errs.is_empty()).then(|| aggregate(&errs)))
}

/// The violations of one LimitRange by a claim (kube's `PersistentVolumeClaimValidateLimitFunc`).
pub fn validate_pvc(lr: &LimitRange, pvc: &PersistentVolumeClaim) -> Result<Option<String>, Error> {
    let requests = parse_list(pvc.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()))?;
    let mut errs = Vec::new();
    for item in items(lr).iter().filter(|i| i.type_ == "PersistentVolumeClaim") {
        for (k, v) in parse_list(item.min.as_ref())? {
            errs.extend(min_constraint("PersistentVolumeClaim", &k, &v, &requests, &ResourceList::new()));
        }
        for (k, v) in parse_list(item.max.as_ref())? {
            errs.extend(max_request_constraint("PersistentVolumeClaim", &k, &v, &requests));
        }
    }
    Ok((!errs.is_empty()).then(|| aggregate(&errs)))
}

/// The name admission errors use: the object's name, else its generateName, else `Unknown`.
pub(crate) fn object_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| meta.generate_name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "Unknown".into())
}

/// LimitRanger for a pod create: defaults from every LimitRange of the namespace, then the
/// checks; a violation is kube's 403.
pub fn admit_pod_create(ranges: &[LimitRange], pod: &mut Pod) -> Result<(), Error> {
    for lr in ranges {
        mutate_pod(lr, pod)?;
    }
    for lr in ranges {
        if let Some(msg) = validate_pod(lr, pod)? {
            return Err(Error::forbidden("", "pods", &object_name(&pod.metadata), msg));
        }
    }
    Ok(())
}

/// LimitRanger for a claim create or update.
pub fn admit_pvc(ranges: &[LimitRange], pvc: &PersistentVolumeClaim) -> Result<(), Error> {
    for lr in ranges {
        if let Some(msg) = validate_pvc(lr, pvc)? {
            return Err(Error::forbidden("", "persistentvolumeclaims", &object_name(&pvc.metadata), msg));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "limit_ranger_tests.rs"]
mod tests;
