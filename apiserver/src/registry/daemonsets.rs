//! DaemonSets (`apps/v1`): a create resets status; a rolling update of one node at a time and ten revisions by default,
//! the selector that must match the template, kubectl's columns.

use crate::registry::deployments::default_template;
use crate::registry::strategy::{Column, Strategy, age, name, or_none, pairs};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

/// The daemonsets strategy.
pub struct DaemonSets;

/// The annotation holding the template's generation (kube's `DeprecatedTemplateGeneration`),
/// which the DaemonSet controller labels pods with (`pod-template-generation`).
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

impl Strategy for DaemonSets {
    type Object = DaemonSet;

    fn prepare_create(&self, d: &mut DaemonSet) {
        d.status = Some(Default::default());
        d.metadata.annotations.get_or_insert_with(Default::default).insert(TEMPLATE_GENERATION.into(), "1".into());
    }

    /// kube's daemonSetStrategy: a changed template counts one more template generation.
    fn prepare_update(&self, new: &mut DaemonSet, old: &DaemonSet, status: bool) {
        let template = |d: &DaemonSet| d.spec.as_ref().map(|s| s.template.clone());
        if status || template(new) == template(old) {
            return;
        }
        let previous =
            old.metadata.annotations.as_ref().and_then(|a| a.get(TEMPLATE_GENERATION)).and_then(|g| g.parse::<i64>().ok()).unwrap_or(0);
        new.metadata.annotations.get_or_insert_with(Default::default).insert(TEMPLATE_GENERATION.into(), (previous + 1).to_string());
    }

    fn default(&self, d: &mut DaemonSet) {
        let Some(s) = d.spec.as_mut() else { return };
        s.revision_history_limit.get_or_insert(10);
        s.update_strategy.get_or_insert_with(|| DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_surge: Some(IntOrString::Int(0)),
                max_unavailable: Some(IntOrString::Int(1)),
            }),
        });
        default_template(&mut s.template);
    }

    fn validate(&self, d: &DaemonSet) -> Vec<Cause> {
        let mut out = Vec::new();
        let s = d.spec.as_ref();
        validation::workload(None, s.map(|s| &s.selector), s.map(|s| &s.template), &mut out);
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Node Selector", 0), ("Age", 0)]
    }

    fn cells(&self, d: &DaemonSet, now: i64) -> Vec<Value> {
        let st = d.status.clone().unwrap_or_default();
        let node_selector = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.node_selector.as_ref());
        vec![
            json!(name(&d.metadata)),
            json!(st.desired_number_scheduled),
            json!(st.current_number_scheduled),
            json!(st.number_ready),
            json!(st.updated_number_scheduled.unwrap_or(0)),
            json!(st.number_available.unwrap_or(0)),
            json!(or_none(pairs(node_selector))),
            json!(age(&d.metadata, now)),
        ]
    }
}
