//! Deployments (`apps/v1`): a create resets status; Kubernetes' defaults (one replica, 25 % surge and unavailability,
//! ten revisions, 600 s progress deadline, and the pod template's), the selector that must
//! match the template, kubectl's columns.

use crate::registry::pods::default_pod_spec;
use crate::registry::strategy::{Column, Strategy, age, name, or_none, pairs};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

/// The deployments strategy.
pub struct Deployments;

/// The template's containers' `field` (`name` or `image`), comma separated.
pub fn containers(t: &PodTemplateSpec, image: bool) -> String {
    let list = t.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    list.iter().map(|c| if image { c.image.clone().unwrap_or_default() } else { c.name.clone() }).collect::<Vec<_>>().join(",")
}

/// The SELECTOR column.
pub fn selector(s: &LabelSelector) -> String {
    or_none(pairs(s.match_labels.as_ref()))
}

/// Defaults of a workload's pod template.
pub fn default_template(t: &mut PodTemplateSpec) {
    if let Some(spec) = t.spec.as_mut() {
        default_pod_spec(spec);
    }
}

impl Strategy for Deployments {
    type Object = Deployment;

    fn prepare_create(&self, d: &mut Deployment) {
        d.status = Some(Default::default());
    }

    /// kube's deploymentStatusStrategy: a status write keeps the stored labels (annotations,
    /// such as `deployment.kubernetes.io/revision`, come from the writer).
    fn status_resets(&self) -> &'static [&'static str] {
        &["labels"]
    }

    fn default(&self, d: &mut Deployment) {
        let Some(s) = d.spec.as_mut() else { return };
        s.replicas.get_or_insert(1);
        s.revision_history_limit.get_or_insert(10);
        s.progress_deadline_seconds.get_or_insert(600);
        s.strategy.get_or_insert_with(|| DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".into())),
                max_unavailable: Some(IntOrString::String("25%".into())),
            }),
        });
        default_template(&mut s.template);
    }

    fn validate(&self, d: &Deployment) -> Vec<Cause> {
        let mut out = Vec::new();
        let s = d.spec.as_ref();
        validation::workload(s.and_then(|s| s.replicas), s.map(|s| &s.selector), s.map(|s| &s.template), &mut out);
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)]
    }

    fn cells(&self, d: &Deployment, now: i64) -> Vec<Value> {
        let spec = d.spec.clone().unwrap_or_default();
        let st = d.status.clone().unwrap_or_default();
        vec![
            json!(name(&d.metadata)),
            json!(format!("{}/{}", st.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(0))),
            json!(st.updated_replicas.unwrap_or(0)),
            json!(st.available_replicas.unwrap_or(0)),
            json!(age(&d.metadata, now)),
            json!(containers(&spec.template, false)),
            json!(containers(&spec.template, true)),
            json!(selector(&spec.selector)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::strategy::Behaviour;

    fn finish(obj: Value) -> Result<Value, crate::error::ApiError> {
        Deployments.finish("Deployment", obj, Default::default(), false)
    }

    #[test]
    fn a_deployment_gets_kubernetes_defaults() {
        let d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
        let d = finish(d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn invalid_deployments_name_their_fields() {
        let causes = |obj: Value| match finish(obj) {
            Err(crate::error::ApiError::Invalid { causes, .. }) => causes.into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let bad = json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(causes(bad), vec!["spec.replicas", "spec.template.metadata.labels"]);
        let unselected = json!({"spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(causes(unselected), vec!["spec.selector"]);
    }
}
