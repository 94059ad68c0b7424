//! ReplicaSets (`apps/v1`): a create resets status; one replica by default, the selector that must match the template,
//! kubectl's columns, and the `status.replicas` field selector.

use crate::registry::deployments::{containers, default_template, selector};
use crate::registry::strategy::{Column, Strategy, age, name};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{Value, json};

/// The replicasets strategy.
pub struct ReplicaSets;

impl Strategy for ReplicaSets {
    type Object = ReplicaSet;

    fn prepare_create(&self, r: &mut ReplicaSet) {
        r.status = Some(Default::default());
    }

    fn default(&self, r: &mut ReplicaSet) {
        let Some(s) = r.spec.as_mut() else { return };
        s.replicas.get_or_insert(1);
        if let Some(t) = s.template.as_mut() {
            default_template(t);
        }
    }

    fn validate(&self, r: &ReplicaSet) -> Vec<Cause> {
        let mut out = Vec::new();
        let s = r.spec.as_ref();
        validation::workload(s.and_then(|s| s.replicas), s.map(|s| &s.selector), s.and_then(|s| s.template.as_ref()), &mut out);
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)]
    }

    fn cells(&self, r: &ReplicaSet, now: i64) -> Vec<Value> {
        let spec = r.spec.clone().unwrap_or_default();
        let st = r.status.clone().unwrap_or_default();
        let template = spec.template.clone().unwrap_or_default();
        vec![
            json!(name(&r.metadata)),
            json!(spec.replicas.unwrap_or(0)),
            json!(st.replicas),
            json!(st.ready_replicas.unwrap_or(0)),
            json!(age(&r.metadata, now)),
            json!(containers(&template, false)),
            json!(containers(&template, true)),
            json!(selector(&spec.selector)),
        ]
    }

    fn selectable(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn field(&self, r: &ReplicaSet, field: &str) -> Option<String> {
        (field == "status.replicas").then(|| r.status.as_ref().map_or(0, |s| s.replicas).to_string())
    }
}
