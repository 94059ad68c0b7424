//! The root CA publisher (kube's `pkg/controller/certificates/rootcacertpublisher`,
//! `root-ca-cert-publisher`): every namespace has the ConfigMap `kube-root-ca.crt` whose
//! `ca.crt` is the CA bundle that verifies the apiserver (`--root-ca-file`, else the CA of the
//! manager's own kubeconfig). The projected token volume every pod gets names it.
//!
//! Invariants (kube's):
//! - the ConfigMap holds exactly `{"ca.crt": <bundle>}` and the `kubernetes.io/description`
//!   annotation; other annotations and labels someone added are kept, other data keys are not;
//! - a deleted or edited ConfigMap is put back; namespaces that are not Active on update are
//!   left alone, and a create refused because the namespace is gone or terminating is not
//!   retried.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The ConfigMap's name in every namespace.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// Its one data key.
pub const DATA_KEY: &str = "ca.crt";
/// The annotation kube sets on it.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// kube's text for it.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What a namespace's ConfigMap needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// It is right.
    Keep,
    /// It is missing: create this.
    Create(ConfigMap),
    /// It differs: write this (the cached object with the data and annotation fixed, so the
    /// update carries its resourceVersion).
    Update(ConfigMap),
}

/// kube's `syncNamespace` decision for `existing` against the bundle `ca`.
pub fn plan(existing: Option<&ConfigMap>, ca: &str) -> Plan {
    let data: BTreeMap<String, String> = [(DATA_KEY.to_string(), ca.to_string())].into();
    let Some(cm) = existing else {
        return Plan::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                annotations: Some([(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())].into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        });
    };
    let described = cm.metadata.annotations.as_ref().and_then(|a| a.get(DESCRIPTION_ANNOTATION)).is_some_and(|d| !d.is_empty());
    if cm.data.as_ref() == Some(&data) && described {
        return Plan::Keep;
    }
    let mut fixed = cm.clone();
    fixed.data = Some(data);
    fixed.binary_data = None;
    fixed.metadata.annotations.get_or_insert_with(Default::default).insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Plan::Update(fixed)
}

fn active(ns: &Namespace) -> bool {
    ns.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Active")
}

/// The controller; its queue holds namespace names.
pub struct RootCaPublisher {
    ctx: Context,
    ca: String,
    namespaces: Arc<Informer<Namespace>>,
    config_maps: Arc<Informer<ConfigMap>>,
    queue: Arc<Queue>,
}

impl RootCaPublisher {
    /// The controller publishing `ca` (PEM), with its handlers registered.
    pub fn new(ctx: &Context, ca: String) -> Arc<RootCaPublisher> {
        let c = Arc::new(RootCaPublisher {
            ctx: ctx.clone(),
            ca,
            namespaces: ctx.shared.namespaces.clone(),
            config_maps: ctx.shared.config_maps.clone(),
            queue: Queue::new("root_ca_cert_publisher", Some(ctx.metrics.clone())),
        });
        let q = c.queue.clone();
        c.namespaces.on_change(move |ch: &Change<'_, Namespace>| match ch {
            Change::Added(ns) => q.add(ObjectKey::of(*ns)),
            Change::Updated { new, .. } if active(new) => q.add(ObjectKey::of(*new)),
            _ => {}
        });
        let q = c.queue.clone();
        c.config_maps.on_change(move |ch: &Change<'_, ConfigMap>| {
            if matches!(ch, Change::Added(_)) {
                return;
            }
            let cm = ch.object();
            if cm.metadata.name.as_deref() == Some(CONFIG_MAP) {
                q.add(ObjectKey::cluster(cm.metadata.namespace.clone().unwrap_or_default()));
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }
}

impl Reconcile for RootCaPublisher {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.namespaces.is_synced() || !self.config_maps.is_synced() {
            return Err(Error::NotSynced("namespaces/configmaps"));
        }
        let ns = &key.name;
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), ns);
        let existing = self.config_maps.get(&ObjectKey::new(ns.clone(), CONFIG_MAP));
        match plan(existing.as_deref(), &self.ca) {
            Plan::Keep => Ok(Action::Done),
            Plan::Create(cm) => match api.create(&PostParams::default(), &cm).await.map_err(Error::from) {
                Ok(_) => Ok(Action::Done),
                // Don't retry a create if the namespace doesn't exist or is terminating (kube);
                // an existing one the cache has not seen yet comes back through its handler.
                Err(e) if e.is_not_found() || e.is_namespace_terminating() || e.is_already_exists() => Ok(Action::Done),
                Err(e) => Err(e),
            },
            Plan::Update(cm) => match api.replace(CONFIG_MAP, &PostParams::default(), &cm).await.map_err(Error::from) {
                Ok(_) => Ok(Action::Done),
                Err(e) if e.is_not_found() => Ok(Action::Done),
                Err(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: &[(&str, &str)], annotations: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                namespace: Some("dev".into()),
                resource_version: Some("7".into()),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    /// The cases of kube's `TestConfigMapCreation` / `syncNamespace`.
    #[test]
    fn the_config_map_is_created_fixed_or_kept_as_kube_does() {
        let ca = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let right = cm(&[(DATA_KEY, ca)], &[(DESCRIPTION_ANNOTATION, DESCRIPTION)]);
        let cases: Vec<(&str, Option<ConfigMap>, Option<ConfigMap>)> = vec![
            ("missing: created with the data and the description", None, Some(plan_create(ca))),
            ("right: kept", Some(right.clone()), None),
            (
                "right plus someone's annotation: kept",
                Some(cm(&[(DATA_KEY, ca)], &[(DESCRIPTION_ANNOTATION, DESCRIPTION), ("x", "y")])),
                None,
            ),
            ("stale bundle: data replaced", Some(cm(&[(DATA_KEY, "old")], &[(DESCRIPTION_ANNOTATION, DESCRIPTION)])), Some(right.clone())),
            (
                "extra key: removed",
                Some(cm(&[(DATA_KEY, ca), ("other", "1")], &[(DESCRIPTION_ANNOTATION, DESCRIPTION)])),
                Some(right.clone()),
            ),
            ("no description: added", Some(cm(&[(DATA_KEY, ca)], &[])), Some(right.clone())),
            ("empty description: set", Some(cm(&[(DATA_KEY, ca)], &[(DESCRIPTION_ANNOTATION, "")])), Some(right.clone())),
            (
                "other annotations survive an update",
                Some(cm(&[], &[("keep", "me")])),
                Some(cm(&[(DATA_KEY, ca)], &[("keep", "me"), (DESCRIPTION_ANNOTATION, DESCRIPTION)])),
            ),
        ];
        for (name, existing, want) in cases {
            let got = plan(existing.as_ref(), ca);
            match (existing.is_some(), want) {
                (false, Some(w)) => assert_eq!(got, Plan::Create(w), "{name}"),
                (true, Some(w)) => {
                    assert_eq!(got, Plan::Update(w.clone()), "{name}");
                    assert_eq!(w.metadata.resource_version.as_deref(), Some("7"), "{name}: the update carries the cached version");
                }
                (_, None) => assert_eq!(got, Plan::Keep, "{name}"),
            }
        }
    }

    fn plan_create(ca: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                annotations: Some([(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())].into()),
                ..Default::default()
            },
            data: Some([(DATA_KEY.to_string(), ca.to_string())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn only_active_namespaces_are_republished_on_update() {
        let ns = |phase: Option<&str>| Namespace {
            status: phase.map(|p| k8s_openapi::api::core::v1::NamespaceStatus { phase: Some(p.into()), ..Default::default() }),
            ..Default::default()
        };
        assert!(active(&ns(None)));
        assert!(active(&ns(Some("Active"))));
        assert!(!active(&ns(Some("Terminating"))));
    }
}
