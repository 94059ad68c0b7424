//! The process's informers, one per resource, created once and handed to every controller
//! (kube's `SharedInformerFactory`), each with the indexes controllers look objects up by:
//!
//! - [`BY_CONTROLLER`]: the uid of the object's controllerRef;
//! - [`ORPHANS`]: the namespace of objects without a controllerRef (candidates for adoption);
//! - [`BY_NAMESPACE`]: the namespace;
//! - [`BY_OWNER`]: the uid of every ownerReference (the garbage collector's graph edges);
//! - [`BY_UID`]: the object's own uid;
//! - [`BY_NODE`] (pods): `spec.nodeName`.
//!
//! Informers are started after every controller registered its handlers ([`Shared::start`]).

use crate::informer::{Cached, Informer};
use crate::ownership::controller_of;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, ResourceQuota, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Index: controllerRef uid.
pub const BY_CONTROLLER: &str = "controller";
/// Index: namespace of objects that have no controllerRef.
pub const ORPHANS: &str = "orphans";
/// Index: namespace.
pub const BY_NAMESPACE: &str = "namespace";
/// Index: every ownerReference uid.
pub const BY_OWNER: &str = "owner";
/// Index: the object's own uid.
pub const BY_UID: &str = "uid";
/// Index (pods): node name.
pub const BY_NODE: &str = "node";
/// Namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Which optional resources the apiserver serves (from discovery).
#[derive(Clone, Copy, Debug, Default)]
pub struct Served {
    /// `apps/v1 controllerrevisions`.
    pub controller_revisions: bool,
    /// `discovery.k8s.io/v1 endpointslices`.
    pub endpoint_slices: bool,
    /// `rbac.authorization.k8s.io/v1 clusterroles`.
    pub cluster_roles: bool,
    /// `v1 resourcequotas`.
    pub resource_quotas: bool,
}

/// Every informer of the process.
pub struct Shared {
    /// Pods (all namespaces).
    pub pods: Arc<Informer<Pod>>,
    /// ReplicaSets.
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    /// Deployments.
    pub deployments: Arc<Informer<Deployment>>,
    /// DaemonSets.
    pub daemon_sets: Arc<Informer<DaemonSet>>,
    /// Nodes.
    pub nodes: Arc<Informer<Node>>,
    /// Leases (all namespaces: node heartbeats live in `kube-node-lease`).
    pub leases: Arc<Informer<Lease>>,
    /// Namespaces.
    pub namespaces: Arc<Informer<Namespace>>,
    /// Services.
    pub services: Arc<Informer<Service>>,
    /// Endpoints.
    pub endpoints: Arc<Informer<Endpoints>>,
    /// ServiceAccounts.
    pub service_accounts: Arc<Informer<ServiceAccount>>,
    /// ConfigMaps (the garbage collector's).
    pub config_maps: Arc<Informer<ConfigMap>>,
    /// Secrets (the garbage collector's).
    pub secrets: Arc<Informer<Secret>>,
    /// ControllerRevisions, when served.
    pub controller_revisions: Option<Arc<Informer<ControllerRevision>>>,
    /// EndpointSlices, when served.
    pub endpoint_slices: Option<Arc<Informer<EndpointSlice>>>,
    /// ClusterRoles, when served.
    pub cluster_roles: Option<Arc<Informer<ClusterRole>>>,
    /// ResourceQuotas, when served.
    pub resource_quotas: Option<Arc<Informer<ResourceQuota>>>,
}

fn ns_of<K: Resource>(o: &K) -> String {
    o.meta().namespace.clone().unwrap_or_default()
}

fn standard<K: Cached>(name: &'static str, api: Api<K>) -> Arc<Informer<K>>
where
    K::DynamicType: Clone + Eq + std::hash::Hash + Default + Send + Sync,
{
    let i = Informer::new(name, api, watcher::Config::default());
    i.add_index(BY_CONTROLLER, |o: &K| controller_of(o.meta()).map(|r| vec![r.uid.clone()]).unwrap_or_default());
    i.add_index(ORPHANS, |o: &K| if controller_of(o.meta()).is_none() { vec![ns_of(o)] } else { vec![] });
    i.add_index(BY_NAMESPACE, |o: &K| vec![ns_of(o)]);
    i.add_index(BY_OWNER, |o: &K| o.meta().owner_references.iter().flatten().map(|r| r.uid.clone()).collect());
    i.add_index(BY_UID, |o: &K| o.meta().uid.clone().into_iter().collect());
    i
}

impl Shared {
    /// Informers over `client` (not started).
    pub fn new(client: &Client, served: Served) -> Shared {
        let c = client.clone();
        let pods = standard("pods", Api::<Pod>::all(c.clone()));
        pods.add_index(BY_NODE, |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).into_iter().collect());
        Shared {
            pods,
            replica_sets: standard("replicasets", Api::all(c.clone())),
            deployments: standard("deployments", Api::all(c.clone())),
            daemon_sets: standard("daemonsets", Api::all(c.clone())),
            nodes: standard("nodes", Api::all(c.clone())),
            leases: standard("leases", Api::all(c.clone())),
            namespaces: standard("namespaces", Api::all(c.clone())),
            services: standard("services", Api::all(c.clone())),
            endpoints: standard("endpoints", Api::all(c.clone())),
            service_accounts: standard("serviceaccounts", Api::all(c.clone())),
            config_maps: standard("configmaps", Api::all(c.clone())),
            secrets: standard("secrets", Api::all(c.clone())),
            controller_revisions: served.controller_revisions.then(|| standard("controllerrevisions", Api::all(c.clone()))),
            endpoint_slices: served.endpoint_slices.then(|| standard("endpointslices", Api::all(c.clone()))),
            cluster_roles: served.cluster_roles.then(|| standard("clusterroles", Api::all(c.clone()))),
            resource_quotas: served.resource_quotas.then(|| standard("resourcequotas", Api::all(c.clone()))),
        }
    }

    /// Starts every informer's watch on `set`.
    pub fn start(&self, set: &mut JoinSet<()>) {
        fn go<K: Cached>(set: &mut JoinSet<()>, i: &Arc<Informer<K>>)
        where
            K::DynamicType: Clone + Eq + std::hash::Hash + Default + Send + Sync,
        {
            if let Some(run) = i.runner() {
                set.spawn(run);
            }
        }
        go(set, &self.pods);
        go(set, &self.replica_sets);
        go(set, &self.deployments);
        go(set, &self.daemon_sets);
        go(set, &self.nodes);
        go(set, &self.leases);
        go(set, &self.namespaces);
        go(set, &self.services);
        go(set, &self.endpoints);
        go(set, &self.service_accounts);
        go(set, &self.config_maps);
        go(set, &self.secrets);
        if let Some(i) = &self.controller_revisions {
            go(set, i);
        }
        if let Some(i) = &self.endpoint_slices {
            go(set, i);
        }
        if let Some(i) = &self.cluster_roles {
            go(set, i);
        }
        if let Some(i) = &self.resource_quotas {
            go(set, i);
        }
    }
}
