//! Pods (`core/v1`): the defaults kube-apiserver fills into every pod spec (also those of
//! workload templates, see [`default_pod_spec`]), the spec check, kubectl's columns and the
//! field selectors the scheduler (`spec.nodeName=`) and kubelets use.

use crate::registry::strategy::{Column, Strategy, age, name, or_none};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, PodSpec, PodStatus, ResourceRequirements};
use serde_json::{Value, json};

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
        }
        p.status.get_or_insert_with(PodStatus::default).phase.get_or_insert_with(|| "Pending".into());
    }

    fn validate(&self, p: &Pod) -> Vec<Cause> {
        let mut out = Vec::new();
        validation::pod_spec(p.spec.as_ref(), "spec", &mut out);
        out
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
