//! Resource lists and what a pod asks for, as kube's `resourcehelper.PodRequests/PodLimits`:
//! regular containers add up, init containers run one at a time (the pod needs the largest),
//! restartable ("sidecar") init containers keep running and add up, and `spec.overhead` is added
//! when asked for.

use crate::admission::quantity::Quantity;
use crate::error::Error;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use std::collections::BTreeMap;

/// Resource name to quantity, in name order (messages list them sorted).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses a k8s-openapi resource list; a bad quantity is a 400 naming it.
pub fn parse_list(list: Option<&BTreeMap<String, KubeQuantity>>) -> Result<ResourceList, Error> {
    let mut out = ResourceList::new();
    for (k, v) in list.into_iter().flatten() {
        let q = Quantity::parse(&v.0).map_err(|e| Error::BadRequest(format!("{k}: {e}")))?;
        out.insert(k.clone(), q);
    }
    Ok(out)
}

/// Back to k8s-openapi quantities, in kube's canonical form.
pub fn to_kube(list: &ResourceList) -> BTreeMap<String, KubeQuantity> {
    list.iter().map(|(k, v)| (k.clone(), KubeQuantity(v.to_string()))).collect()
}

/// Adds `add` into `list` (kube's `addResourceList`).
pub fn add_into(list: &mut ResourceList, add: &ResourceList) {
    for (k, v) in add {
        list.entry(k.clone()).and_modify(|q| *q = *q + *v).or_insert(*v);
    }
}

/// Raises `list` to at least `other` per resource (kube's `maxResourceList`).
pub fn max_into(list: &mut ResourceList, other: &ResourceList) {
    for (k, v) in other {
        match list.get(k) {
            Some(q) if q >= v => {}
            _ => {
                list.insert(k.clone(), *v);
            }
        }
    }
}

/// A container's requests.
pub fn container_requests(c: &Container) -> Result<ResourceList, Error> {
    parse_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// A container's limits.
pub fn container_limits(c: &Container) -> Result<ResourceList, Error> {
    parse_list(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

fn aggregate(pod: &Pod, pick: fn(&Container) -> Result<ResourceList, Error>, overhead: bool) -> Result<ResourceList, Error> {
    let mut total = ResourceList::new();
    let Some(spec) = &pod.spec else { return Ok(total) };
    for c in &spec.containers {
        add_into(&mut total, &pick(c)?);
    }
    let mut restartable = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let own = pick(c)?;
        let during = if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut restartable, &own);
            restartable.clone()
        } else {
            let mut tmp = own;
            add_into(&mut tmp, &restartable);
            tmp
        };
        max_into(&mut init_max, &during);
    }
    max_into(&mut total, &init_max);
    if overhead {
        add_into(&mut total, &parse_list(spec.overhead.as_ref())?);
    }
    Ok(total)
}

/// What the pod requests (kube's `PodRequests`).
pub fn pod_requests(pod: &Pod, overhead: bool) -> Result<ResourceList, Error> {
    aggregate(pod, container_requests, overhead)
}

/// The pod's limits (kube's `PodLimits`).
pub fn pod_limits(pod: &Pod, overhead: bool) -> Result<ResourceList, Error> {
    aggregate(pod, container_limits, overhead)
}

/// Whether the pod is BestEffort (no container asks for or limits cpu or memory).
pub fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return true };
    spec.init_containers.iter().flatten().chain(spec.containers.iter()).all(|c| {
        let r = c.resources.as_ref();
        let has = |l: Option<&BTreeMap<String, KubeQuantity>>| l.is_some_and(|m| m.keys().any(|k| k == "cpu" || k == "memory"));
        !has(r.and_then(|r| r.requests.as_ref())) && !has(r.and_then(|r| r.limits.as_ref()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": v})).unwrap()
    }

    fn c(name: &str, cpu: &str) -> serde_json::Value {
        json!({"name": name, "image": "i", "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}})
    }

    #[test]
    fn pod_requests_follow_kube() {
        let p = pod(json!({"containers": [c("a", "100m"), c("b", "200m")], "initContainers": [c("i", "500m")]}));
        assert_eq!(pod_requests(&p, false).unwrap()["cpu"].to_string(), "500m");
        let p = pod(json!({"containers": [c("a", "100m"), c("b", "200m")], "initContainers": [c("i", "250m")]}));
        assert_eq!(pod_requests(&p, false).unwrap()["cpu"].to_string(), "300m");
        // A sidecar keeps running: it adds to the regular containers and to later init containers.
        let mut side = c("s", "100m");
        side["restartPolicy"] = json!("Always");
        let p = pod(json!({"containers": [c("a", "100m")], "initContainers": [side, c("i", "250m")], "overhead": {"cpu": "10m"}}));
        assert_eq!(pod_requests(&p, false).unwrap()["cpu"].to_string(), "350m");
        assert_eq!(pod_requests(&p, true).unwrap()["cpu"].to_string(), "360m");
        assert!(!is_best_effort(&p));
        assert!(is_best_effort(&pod(json!({"containers": [{"name": "a", "image": "i"}]}))));
        assert!(parse_list(Some(&[("cpu".to_string(), KubeQuantity("lots".into()))].into())).is_err());
    }
}
