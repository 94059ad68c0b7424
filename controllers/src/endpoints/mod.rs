//! The Endpoints controller (kube's `pkg/controller/endpoint`): for every Service with a
//! selector, an Endpoints object of the same name listing its pods' addresses ([`compute`]),
//! ready ones under `addresses` and the rest under `notReadyAddresses`, rewritten when they
//! change and deleted with the Service. [`slices`] does the same as EndpointSlices when the
//! apiserver serves `discovery.k8s.io/v1`.
//!
//! Invariant: the object written is a pure function of the Service and the cached pods, so
//! repeated syncs write nothing new (no churn).

pub mod compute;
pub mod slices;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use crate::selector;
use crate::shared::BY_NAMESPACE;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use std::sync::Arc;

/// Label on Endpoints of headless Services.
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// The Services in `pod`'s namespace whose selector matches it.
pub fn services_for(services: &Informer<Service>, p: &Pod) -> Vec<ObjectKey> {
    services
        .by_index(BY_NAMESPACE, p.metadata.namespace.as_deref().unwrap_or_default())
        .iter()
        .filter(|s| compute::managed(s))
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_some_and(|sel| selector::equality(sel).matches(p.metadata.labels.as_ref()))
        })
        .map(|s| ObjectKey::of(s.as_ref()))
        .collect()
}

/// The pods `svc` selects.
pub fn selected(pods: &Informer<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else { return vec![] };
    let sel = selector::equality(sel);
    pods.by_index(BY_NAMESPACE, svc.metadata.namespace.as_deref().unwrap_or_default())
        .into_iter()
        .filter(|p| sel.matches(p.metadata.labels.as_ref()))
        .collect()
}

/// Registers the pod → Service wake-ups on `q`.
pub fn watch_pods(pods: &Informer<Pod>, services: &Arc<Informer<Service>>, q: &Arc<Queue>) {
    let (q, services) = (q.clone(), services.clone());
    pods.on_change(move |ch: &Change<'_, Pod>| {
        let mut keys = services_for(&services, ch.object());
        if let Change::Updated { old, new } = ch {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            if old.metadata.labels != new.metadata.labels {
                keys.extend(services_for(&services, old));
            }
        }
        keys.into_iter().for_each(|k| q.add(k));
    });
}

/// The controller; its queue holds Service keys.
pub struct EndpointsController {
    ctx: Context,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    queue: Arc<Queue>,
}

impl EndpointsController {
    /// The controller, with its handlers registered.
    pub fn new(ctx: &Context) -> Arc<EndpointsController> {
        let c = Arc::new(EndpointsController {
            ctx: ctx.clone(),
            services: ctx.shared.services.clone(),
            pods: ctx.shared.pods.clone(),
            endpoints: ctx.shared.endpoints.clone(),
            queue: Queue::new("endpoint", Some(ctx.metrics.clone())),
        });
        let q = c.queue.clone();
        c.services.on_change(move |ch: &Change<'_, Service>| q.add(ObjectKey::of(ch.object())));
        watch_pods(&c.pods, &c.services, &c.queue);
        let q = c.queue.clone();
        c.endpoints.on_change(move |ch: &Change<'_, Endpoints>| {
            if let Change::Deleted(e) = ch {
                q.add(ObjectKey::of(*e));
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }
}

impl Reconcile for EndpointsController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.services.is_synced() || !self.pods.is_synced() || !self.endpoints.is_synced() {
            return Err(Error::NotSynced("services/pods/endpoints"));
        }
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let current = self.endpoints.get(key);
        let Some(svc) = self.services.get(key) else {
            // The Service is gone: so are its Endpoints (kube deletes them itself).
            if current.is_some()
                && let Err(e) = api.delete(&key.name, &DeleteParams::default()).await
            {
                let e = Error::from(e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
            return Ok(Action::Done);
        };
        if !compute::managed(&svc) || svc.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let pods = selected(&self.pods, &svc);
        let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let subsets = compute::subsets(&compute::endpoints(&svc, &refs));
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
            labels.insert(HEADLESS.into(), String::new());
        }
        let subsets = (!subsets.is_empty()).then_some(subsets);
        match current {
            Some(cur) => {
                let cur_subsets = cur.subsets.clone().filter(|s| !s.is_empty());
                if cur_subsets == subsets && cur.metadata.labels.clone().unwrap_or_default() == labels {
                    return Ok(Action::Done);
                }
                let mut e = cur.as_ref().clone();
                e.metadata.managed_fields = None;
                e.metadata.labels = Some(labels);
                e.subsets = subsets;
                api.replace(&key.name, &PostParams::default(), &e).await.map_err(|e| {
                    let e = Error::from(e);
                    if e.is_conflict() { Error::Conflict(key.to_string()) } else { e }
                })?;
            }
            None => {
                let e = Endpoints {
                    metadata: ObjectMeta { name: Some(key.name.clone()), labels: Some(labels), ..Default::default() },
                    subsets,
                };
                if let Err(e) = api.create(&PostParams::default(), &e).await {
                    let e = Error::from(e);
                    if !(e.is_already_exists() || e.is_namespace_terminating()) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(Action::Done)
    }
}
