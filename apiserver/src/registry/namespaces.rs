//! Namespaces (`core/v1`, cluster-scoped): a create resets status to `Active`; the `kubernetes.io/metadata.name` label and the
//! `kubernetes` finalizer every namespace gets, phase `Active`, and the `status.phase` field.

use crate::registry::strategy::{Column, Strategy, age, name};
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use serde_json::{Value, json};

/// The namespaces strategy.
pub struct Namespaces;

impl Strategy for Namespaces {
    type Object = Namespace;

    /// kube's namespaceStrategy: an update keeps the stored `spec.finalizers` (only
    /// `namespaces/<name>/finalize` changes them).
    fn prepare_update(&self, new: &mut Namespace, old: &Namespace, _status: bool) {
        let kept = old.spec.as_ref().and_then(|s| s.finalizers.clone());
        new.spec.get_or_insert_with(NamespaceSpec::default).finalizers = kept;
    }

    fn prepare_create(&self, ns: &mut Namespace) {
        ns.status = Some(NamespaceStatus { phase: Some("Active".into()), ..Default::default() });
    }

    fn default(&self, ns: &mut Namespace) {
        let n = name(&ns.metadata).to_string();
        ns.metadata.labels.get_or_insert_with(Default::default).insert("kubernetes.io/metadata.name".into(), n);
        ns.spec.get_or_insert_with(NamespaceSpec::default).finalizers.get_or_insert_with(|| vec!["kubernetes".into()]);
        ns.status.get_or_insert_with(NamespaceStatus::default).phase.get_or_insert_with(|| "Active".into());
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Status", 0), ("Age", 0)]
    }

    fn cells(&self, ns: &Namespace, now: i64) -> Vec<Value> {
        let phase = ns.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        vec![json!(name(&ns.metadata)), json!(phase), json!(age(&ns.metadata, now))]
    }

    fn selectable(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn field(&self, ns: &Namespace, field: &str) -> Option<String> {
        (field == "status.phase").then(|| ns.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::strategy::Behaviour;

    #[test]
    fn user_values_win_and_namespaces_are_labelled() {
        let ns = Namespaces.finish("Namespace", json!({"metadata": {"name": "x"}, "spec": {"finalizers": []}}), Default::default(), false);
        let ns = ns.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "x");
        assert_eq!(ns["spec"]["finalizers"], json!([]));
        assert_eq!(ns["status"]["phase"], "Active");
    }
}
