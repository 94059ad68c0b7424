//! Pods (`core/v1`), as kube-apiserver's pod strategy:
//!
//! - defaults of every pod spec (also those of workload templates, [`default_pod_spec`]), and a
//!   pod's requests defaulted from its limits;
//! - a create resets status to `Pending` with the pod's QoS class ([`qos_class`]);
//! - the spec is immutable after create except container images, `activeDeadlineSeconds`
//!   (lowered, or set), added tolerations and a negative `terminationGracePeriodSeconds` set to
//!   1 (kube's ValidatePodUpdate); `spec.nodeName` is set only through `pods/binding`;
//! - DELETE is graceful for a bound, unfinished pod ([`Pods::deletion`]);
//! - kubectl's columns and the field selectors the scheduler (`spec.nodeName=`) and kubelets use.

use crate::registry::quantity;
use crate::registry::strategy::{Column, Deletion, Strategy, age, name, or_none};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, PodSpec, PodStatus, ResourceRequirements};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What kube answers a spec change it does not allow with.
pub const IMMUTABLE_SPEC: &str = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The pods strategy.
pub struct Pods;

/// A container's image pull policy: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if last.contains('@') { Some("digest") } else { last.split_once(':').map(|(_, t)| t) };
    match tag {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Container) {
    let image = c.image.clone().unwrap_or_default();
    c.image_pull_policy.get_or_insert_with(|| pull_policy(&image).into());
    c.termination_message_path.get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy.get_or_insert_with(|| "File".into());
    c.resources.get_or_insert_with(ResourceRequirements::default);
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// A container's requests default to its limits (pods only, not templates: kube's SetDefaults_Pod).
fn requests_from_limits(c: &mut Container) {
    let Some(r) = c.resources.as_mut() else { return };
    let Some(limits) = r.limits.clone() else { return };
    let requests = r.requests.get_or_insert_with(BTreeMap::new);
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// Kubernetes' QoS class of a pod spec: `BestEffort` without cpu or memory requests and limits,
/// `Guaranteed` when every container limits both and the requests equal the limits, else
/// `Burstable` (kube's GetPodQOS).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let (mut requests, mut limits) = (BTreeMap::<&str, f64>::new(), BTreeMap::<&str, f64>::new());
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let r = c.resources.as_ref();
        let amount = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, name: &str| {
            m.and_then(|m| m.get(name)).and_then(|q| quantity::value(&q.0)).filter(|v| *v > 0.0)
        };
        let mut limited = 0;
        for name in ["cpu", "memory"] {
            if let Some(v) = amount(r.and_then(|r| r.requests.as_ref()), name) {
                *requests.entry(name).or_default() += v;
            }
            if let Some(v) = amount(r.and_then(|r| r.limits.as_ref()), name) {
                *limits.entry(name).or_default() += v;
                limited += 1;
            }
        }
        guaranteed &= limited == 2;
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let same = requests.len() == limits.len() && requests.iter().all(|(k, v)| limits.get(k).is_some_and(|l| (l - v).abs() < 1e-9));
    if guaranteed && same { "Guaranteed" } else { "Burstable" }
}

/// Why an update of `old`'s spec to `new` is not allowed (kube's ValidatePodUpdate).
pub fn spec_update_problems(new: &PodSpec, old: &PodSpec) -> Vec<Cause> {
    let mut out = Vec::new();
    match (old.active_deadline_seconds, new.active_deadline_seconds) {
        (Some(_), None) => out.push((
            "spec.activeDeadlineSeconds".into(),
            "Invalid value: \"null\": must not update from a positive integer to nil value".into(),
        )),
        (Some(o), Some(n)) if n > o => {
            out.push(("spec.activeDeadlineSeconds".into(), format!("Invalid value: {n}: must be less than or equal to previous value")))
        }
        _ => {}
    }
    let mut munged = new.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old.containers) {
        c.image = o.image.clone();
    }
    if let (Some(cs), Some(os)) = (munged.init_containers.as_mut(), old.init_containers.as_ref()) {
        for (c, o) in cs.iter_mut().zip(os) {
            c.image = o.image.clone();
        }
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    let kept = old.tolerations.iter().flatten().all(|t| new.tolerations.iter().flatten().any(|n| n == t));
    if kept {
        munged.tolerations = old.tolerations.clone();
    }
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0) && new.termination_grace_period_seconds == Some(1) {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    if munged != *old {
        out.push(("spec".into(), IMMUTABLE_SPEC.into()));
    }
    out
}

/// Defaults of a pod spec (pods and pod templates).
pub fn default_pod_spec(s: &mut PodSpec) {
    s.restart_policy.get_or_insert_with(|| "Always".into());
    s.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    s.scheduler_name.get_or_insert_with(|| "default-scheduler".into());
    s.termination_grace_period_seconds.get_or_insert(30);
    s.security_context.get_or_insert_with(PodSecurityContext::default);
    s.containers.iter_mut().for_each(default_container);
    s.init_containers.iter_mut().flatten().for_each(default_container);
}

const COLUMNS: &[Column] = &[("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1)];

const FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

/// The STATUS column: the reason, else the phase, overridden by a waiting container's reason
/// and by `Terminating`.
fn status_cell(p: &Pod) -> String {
    let st = p.status.as_ref();
    let mut status =
        st.and_then(|s| s.reason.clone()).filter(|r| !r.is_empty()).unwrap_or_else(|| st.and_then(|s| s.phase.clone()).unwrap_or_default());
    for c in st.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten() {
        if let Some(reason) = c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone()).filter(|r| !r.is_empty()) {
            status = reason;
        }
    }
    if p.metadata.deletion_timestamp.is_some() {
        status = "Terminating".into();
    }
    status
}

impl Strategy for Pods {
    type Object = Pod;

    fn default(&self, p: &mut Pod) {
        if let Some(spec) = p.spec.as_mut() {
            default_pod_spec(spec);
            spec.containers.iter_mut().for_each(requests_from_limits);
            spec.init_containers.iter_mut().flatten().for_each(requests_from_limits);
        }
        p.status.get_or_insert_with(PodStatus::default).phase.get_or_insert_with(|| "Pending".into());
    }

    fn malformed(&self, p: &Pod) -> Option<String> {
        let spec = p.spec.as_ref()?;
        let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
        let resources = containers.filter_map(|c| c.resources.as_ref());
        let quantities = resources.flat_map(|r| r.requests.iter().chain(r.limits.iter()).flat_map(|m| m.values()));
        quantity::malformed(quantities.chain(spec.overhead.iter().flat_map(|m| m.values())).map(|q| &q.0))
    }

    fn prepare_create(&self, p: &mut Pod) {
        let qos = p.spec.as_ref().map(|s| qos_class(s).to_string());
        p.status = Some(PodStatus { phase: Some("Pending".into()), qos_class: qos, ..Default::default() });
    }

    fn validate(&self, p: &Pod) -> Vec<Cause> {
        let mut out = Vec::new();
        validation::pod_spec(p.spec.as_ref(), "spec", &mut out);
        out
    }

    /// kube's podStatusStrategy: a status write keeps the pod's ownerReferences (old kubelets
    /// corrupted them) and its QoS class when the writer dropped it.
    fn status_resets(&self) -> &'static [&'static str] {
        &["ownerReferences"]
    }

    fn prepare_update(&self, new: &mut Pod, old: &Pod, status: bool) {
        let old_qos = old.status.as_ref().and_then(|s| s.qos_class.clone());
        if status
            && let Some(st) = new.status.as_mut()
            && st.qos_class.as_deref().is_none_or(str::is_empty)
        {
            st.qos_class = old_qos;
        }
    }

    fn validate_update(&self, new: &Pod, old: &Pod, status: bool) -> Vec<Cause> {
        if status {
            return Vec::new();
        }
        let empty = PodSpec::default();
        spec_update_problems(new.spec.as_ref().unwrap_or(&empty), old.spec.as_ref().unwrap_or(&empty))
    }

    /// kube's CheckGracefulDelete: the request's grace period, else the pod's
    /// `terminationGracePeriodSeconds`; none for a pod not bound to a node or already finished;
    /// a negative one is 1.
    fn deletion(&self, p: &Pod, grace: Option<i64>) -> Deletion {
        let spec = p.spec.as_ref();
        let mut period = grace.or(spec.and_then(|s| s.termination_grace_period_seconds)).unwrap_or(0);
        if spec.and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty) {
            period = 0;
        }
        if p.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|ph| ph == "Failed" || ph == "Succeeded") {
            period = 0;
        }
        match period {
            0 => Deletion::Now,
            p if p < 0 => Deletion::Graceful(1),
            p => Deletion::Graceful(p),
        }
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, p: &Pod, now: i64) -> Vec<Value> {
        let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        let total = p.spec.as_ref().map_or(0, |s| s.containers.len());
        let ready = statuses.iter().filter(|c| c.ready).count();
        let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
        vec![
            json!(name(&p.metadata)),
            json!(format!("{ready}/{total}")),
            json!(status_cell(p)),
            json!(restarts),
            json!(age(&p.metadata, now)),
            json!(or_none(p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default())),
            json!(or_none(p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default())),
        ]
    }

    fn selectable(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn field(&self, p: &Pod, field: &str) -> Option<String> {
        let spec = p.spec.as_ref();
        let status = p.status.as_ref();
        let s = |v: Option<&String>| v.cloned().unwrap_or_default();
        Some(match field {
            "spec.nodeName" => s(spec.and_then(|x| x.node_name.as_ref())),
            "spec.restartPolicy" => s(spec.and_then(|x| x.restart_policy.as_ref())),
            "spec.schedulerName" => s(spec.and_then(|x| x.scheduler_name.as_ref())),
            "spec.serviceAccountName" => s(spec.and_then(|x| x.service_account_name.as_ref())),
            "spec.hostNetwork" => spec.and_then(|x| x.host_network).unwrap_or(false).to_string(),
            "status.phase" => s(status.and_then(|x| x.phase.as_ref())),
            "status.podIP" => s(status.and_then(|x| x.pod_ip.as_ref())),
            "status.nominatedNodeName" => s(status.and_then(|x| x.nominated_node_name.as_ref())),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::strategy::Behaviour;

    fn spec(v: Value) -> PodSpec {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let c = |resources: Value| spec(json!({"containers": [{"name": "a", "resources": resources}]}));
        let table = [
            (c(json!({})), "BestEffort"),
            (c(json!({"requests": {"cpu": "100m"}})), "Burstable"),
            (c(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}})), "Guaranteed"),
            (c(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})), "Burstable"),
            (c(json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})), "Burstable"),
        ];
        for (s, want) in table {
            assert_eq!(qos_class(&s), want, "{s:?}");
        }
    }

    #[test]
    fn a_created_pod_starts_pending_with_its_qos_and_requests_from_limits() {
        let sent = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}, "status": {"phase": "Running", "podIP": "10.0.0.9"}});
        let p = Pods.finish("Pod", sent, Default::default(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p["status"], json!({"phase": "Pending", "qosClass": "Guaranteed"}));
        assert_eq!(p["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "1", "memory": "1Gi"}));
    }

    #[test]
    fn only_what_kubernetes_allows_changes_in_a_pod_spec() {
        let old = spec(
            json!({"containers": [{"name": "a", "image": "x:1"}], "activeDeadlineSeconds": 60, "tolerations": [{"key": "k", "operator": "Exists"}]}),
        );
        let with = |f: &dyn Fn(&mut PodSpec)| {
            let mut s = old.clone();
            f(&mut s);
            spec_update_problems(&s, &old).into_iter().map(|(f, _)| f).collect::<Vec<_>>()
        };
        assert!(with(&|s| s.containers[0].image = Some("x:2".into())).is_empty(), "images change");
        assert!(with(&|s| s.active_deadline_seconds = Some(30)).is_empty(), "the deadline shortens");
        assert_eq!(with(&|s| s.active_deadline_seconds = Some(90)), vec!["spec.activeDeadlineSeconds"]);
        assert!(with(&|s| s.tolerations.get_or_insert_with(Vec::new).push(Default::default())).is_empty(), "tolerations are added");
        assert_eq!(with(&|s| s.tolerations = None), vec!["spec"], "but not removed");
        assert_eq!(with(&|s| s.node_name = Some("n1".into())), vec!["spec"], "nodeName only through binding");
        assert_eq!(with(&|s| s.containers[0].name = "b".into()), vec!["spec"]);
    }

    #[test]
    fn a_bound_running_pod_is_deleted_gracefully_and_others_at_once() {
        let pod = |node: Option<&str>, phase: &str, tgps: Option<i64>| {
            let mut p = Pod::default();
            p.spec = Some(PodSpec { node_name: node.map(str::to_string), termination_grace_period_seconds: tgps, ..Default::default() });
            p.status = Some(PodStatus { phase: Some(phase.into()), ..Default::default() });
            p
        };
        let table = [
            (pod(Some("n"), "Running", Some(30)), None, Deletion::Graceful(30)),
            (pod(Some("n"), "Running", Some(30)), Some(5), Deletion::Graceful(5)),
            (pod(Some("n"), "Running", Some(30)), Some(0), Deletion::Now),
            (pod(Some("n"), "Running", None), None, Deletion::Now),
            (pod(Some("n"), "Running", Some(30)), Some(-3), Deletion::Graceful(1)),
            (pod(None, "Pending", Some(30)), None, Deletion::Now),
            (pod(Some("n"), "Succeeded", Some(30)), None, Deletion::Now),
        ];
        for (p, grace, want) in table {
            assert_eq!(Strategy::deletion(&Pods, &p, grace), want, "{grace:?} {:?}", p.status);
        }
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx:1.2"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn a_pod_row_has_the_columns_kubectl_prints() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "image": "", "imageID": "", "ready": true, "restartCount": 2},
                {"name": "b", "image": "", "imageID": "", "ready": false, "restartCount": 1}]}
        });
        let now = "2026-01-01T00:01:00Z".parse::<jiff::Timestamp>().map(|t| t.as_second()).unwrap_or(0);
        assert_eq!(
            Behaviour::cells(&Pods, &pod, now),
            vec![json!("p"), json!("1/2"), json!("Running"), json!(3), json!("60s"), json!("<none>"), json!("n1")]
        );
    }

    #[test]
    fn invalid_pods_name_their_fields() {
        let table: Vec<(Value, Vec<&str>)> = vec![
            (json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}), vec![]),
            (json!({"spec": {"containers": []}}), vec!["spec.containers"]),
            (
                json!({"spec": {"containers": [{"name": "A_b"}, {"name": "", "image": "x"}]}}),
                vec!["spec.containers[0].name", "spec.containers[0].image", "spec.containers[1].name"],
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]}}),
                vec!["spec.containers[0].ports[0].containerPort"],
            ),
        ];
        for (obj, want) in table {
            let got = match Pods.finish("Pod", obj.clone(), Default::default(), false) {
                Ok(_) => vec![],
                Err(crate::error::ApiError::Invalid { causes, .. }) => causes.into_iter().map(|(f, _)| f).collect(),
                Err(e) => panic!("{obj}: {e}"),
            };
            assert_eq!(got, want, "{obj}");
        }
    }
}
