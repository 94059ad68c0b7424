//! The EndpointSlice controller (kube's `pkg/controller/endpointslice`): the same endpoints
//! as [`super::compute`] as `discovery.k8s.io/v1` EndpointSlices labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`, owned by the
//! Service, one slice per distinct port set and at most [`MAX_PER_SLICE`] endpoints each
//! (`--max-endpoints-per-slice`), with ready/serving/terminating conditions.
//!
//! Reconciling keeps existing slices where they still fit (updated in place), creates missing
//! ones and deletes the rest; unchanged slices are not written.

use super::compute::{self, Endpoint};
use super::{selected, watch_pods};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::ownership;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use crate::shared::BY_OWNER;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Label: the Service a slice belongs to.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label: who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Our `managed-by` value (kube's).
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// kube's default `--max-endpoints-per-slice`.
pub const MAX_PER_SLICE: usize = 100;

/// The desired slices' contents: (ports, endpoints), one entry per slice, in a stable order.
pub fn desired(eps: &[Endpoint], max_per_slice: usize) -> Vec<(Vec<EndpointPort>, Vec<SliceEndpoint>)> {
    let mut groups: BTreeMap<Vec<compute::PortKey>, (Vec<EndpointPort>, Vec<SliceEndpoint>)> = BTreeMap::new();
    for e in eps {
        let mut ports: Vec<EndpointPort> = e
            .ports
            .iter()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        ports.sort_by_key(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0), p.protocol.clone().unwrap_or_default()));
        let key = ports
            .iter()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0), p.protocol.clone().unwrap_or_default()))
            .collect();
        let g = groups.entry(key).or_insert_with(|| (ports, vec![]));
        g.1.push(SliceEndpoint {
            addresses: vec![e.address.ip.clone()],
            conditions: Some(EndpointConditions { ready: Some(e.ready), serving: Some(e.serving), terminating: Some(e.terminating) }),
            node_name: e.address.node_name.clone(),
            target_ref: e.address.target_ref.clone(),
            hostname: e.address.hostname.clone(),
            ..Default::default()
        });
    }
    let mut out = Vec::new();
    for (ports, mut eps) in groups.into_values() {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in eps.chunks(max_per_slice.max(1)) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

/// The controller; its queue holds Service keys.
pub struct EndpointSliceController {
    ctx: Context,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
    queue: Arc<Queue>,
}

impl EndpointSliceController {
    /// The controller over the `slices` informer, with its handlers registered.
    pub fn new(ctx: &Context, slices: Arc<Informer<EndpointSlice>>) -> Arc<EndpointSliceController> {
        let c = Arc::new(EndpointSliceController {
            ctx: ctx.clone(),
            services: ctx.shared.services.clone(),
            pods: ctx.shared.pods.clone(),
            slices,
            queue: Queue::new("endpoint_slice", Some(ctx.metrics.clone())),
        });
        let q = c.queue.clone();
        c.services.on_change(move |ch: &Change<'_, Service>| q.add(ObjectKey::of(ch.object())));
        watch_pods(&c.pods, &c.services, &c.queue);
        let q = c.queue.clone();
        c.slices.on_change(move |ch: &Change<'_, EndpointSlice>| {
            let s = ch.object();
            if let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) {
                q.add(ObjectKey::new(s.metadata.namespace.clone().unwrap_or_default(), svc.clone()));
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }
}

fn managed_by_us(s: &EndpointSlice) -> bool {
    s.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some(CONTROLLER_NAME)
}

impl Reconcile for EndpointSliceController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.services.is_synced() || !self.pods.is_synced() || !self.slices.is_synced() {
            return Err(Error::NotSynced("services/pods/endpointslices"));
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let svc = self.services.get(key);
        // Our slices of this Service (by owner, or by label for ones whose Service is gone).
        let mut existing: Vec<EndpointSlice> = match &svc {
            Some(s) => {
                self.slices.by_index(BY_OWNER, s.metadata.uid.as_deref().unwrap_or_default()).iter().map(|s| s.as_ref().clone()).collect()
            }
            None => self
                .slices
                .list()
                .into_iter()
                .filter(|s| {
                    s.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                        && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) == Some(&key.name)
                })
                .map(|s| s.as_ref().clone())
                .collect(),
        };
        existing.retain(managed_by_us);
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let want = match &svc {
            Some(s) if compute::managed(s) && s.metadata.deletion_timestamp.is_none() => {
                let pods = selected(&self.pods, s);
                let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
                desired(&compute::endpoints(s, &refs), MAX_PER_SLICE)
            }
            _ => vec![],
        };
        let mut existing = existing.into_iter();
        for (ports, endpoints) in &want {
            let Some(svc) = &svc else { break };
            match existing.next() {
                Some(mut cur) => {
                    if &cur.endpoints == endpoints && cur.ports.as_ref() == Some(ports) {
                        continue;
                    }
                    cur.metadata.managed_fields = None;
                    cur.endpoints = endpoints.clone();
                    cur.ports = Some(ports.clone());
                    let name = cur.metadata.name.clone().unwrap_or_default();
                    api.replace(&name, &PostParams::default(), &cur).await.map_err(|e| {
                        let e = Error::from(e);
                        if e.is_conflict() { Error::Conflict(name.clone()) } else { e }
                    })?;
                }
                None => {
                    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
                    labels.insert(SERVICE_NAME.into(), key.name.clone());
                    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
                    let slice = EndpointSlice {
                        metadata: ObjectMeta {
                            generate_name: Some(format!("{}-", key.name)),
                            labels: Some(labels),
                            owner_references: Some(vec![ownership::controller_ref(svc.as_ref())]),
                            ..Default::default()
                        },
                        address_type: "IPv4".into(),
                        endpoints: endpoints.clone(),
                        ports: Some(ports.clone()),
                    };
                    if let Err(e) = api.create(&PostParams::default(), &slice).await {
                        let e = Error::from(e);
                        if !e.is_namespace_terminating() {
                            return Err(e);
                        }
                    }
                }
            }
        }
        // A Service with no endpoints still has one (empty) slice, as kube keeps a placeholder.
        let rest: Vec<EndpointSlice> = existing.collect();
        let keep_placeholder = want.is_empty() && svc.as_ref().is_some_and(|s| compute::managed(s));
        for (i, s) in rest.iter().enumerate() {
            if keep_placeholder && i == 0 {
                if !s.endpoints.is_empty() {
                    let mut s = s.clone();
                    s.metadata.managed_fields = None;
                    s.endpoints = vec![];
                    s.ports = None;
                    api.replace(s.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &s).await?;
                }
                continue;
            }
            if let Err(e) = api.delete(s.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await {
                let e = Error::from(e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EndpointAddress;

    fn ep(ip: &str, ready: bool, port: i32) -> Endpoint {
        Endpoint {
            address: EndpointAddress { ip: ip.into(), ..Default::default() },
            ready,
            serving: ready,
            terminating: false,
            ports: vec![k8s_openapi::api::core::v1::EndpointPort {
                name: Some("http".into()),
                port,
                protocol: Some("TCP".into()),
                app_protocol: None,
            }],
        }
    }

    #[test]
    fn slices_group_by_port_set_and_split_at_the_limit() {
        let eps: Vec<Endpoint> = (1..=5).map(|i| ep(&format!("10.0.0.{i}"), i % 2 == 0, 80)).chain([ep("10.0.1.1", true, 8080)]).collect();
        let d = desired(&eps, 2);
        let sizes: Vec<(i32, usize)> = d.iter().map(|(p, e)| (p[0].port.unwrap_or(0), e.len())).collect();
        assert_eq!(sizes, [(80, 2), (80, 2), (80, 1), (8080, 1)]);
        let first = &d[0].1[0];
        assert_eq!(first.addresses, ["10.0.0.1"]);
        assert_eq!(first.conditions.as_ref().and_then(|c| c.ready), Some(false));
    }
}
