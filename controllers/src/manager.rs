//! One run of every enabled controller over one set of shared informers. `main.rs` calls
//! [`run`] each time this instance becomes the leader and stops it (drops the future or fires
//! `stop`) when leadership is lost; nothing survives from one run to the next.

use crate::aggregation::AggregationController;
use crate::clock::SharedClock;
use crate::context::Context;
use crate::daemonset::{self, DaemonSetController};
use crate::deployment::{self, DeploymentController};
use crate::endpoints::{EndpointsController, slices::EndpointSliceController};
use crate::error::Result;
use crate::events::Recorder;
use crate::gc::GarbageCollector;
use crate::metrics::Metrics;
use crate::namespace::NamespaceController;
use crate::nodelifecycle::{self, NodeLifecycleController, eviction::TaintEvictionController};
use crate::replicaset::{self, ReplicaSetController};
use crate::resourcequota::{self, ResourceQuotaController};
use crate::rootca::RootCaPublisher;
use crate::runner;
use crate::serviceaccount::ServiceAccountController;
use crate::shared::{Served, Shared};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Every controller's name, as `--controllers` spells them (kube's names).
pub const ALL: &[&str] = &[
    "replicaset",
    "deployment",
    "nodelifecycle",
    "taint-eviction-controller",
    "serviceaccount",
    "daemonset",
    "endpoint",
    "endpointslice",
    "namespace",
    "garbagecollector",
    "root-ca-cert-publisher",
    "clusterrole-aggregation",
    "resourcequota",
];

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Config {
    /// Enabled controllers (names from [`ALL`]).
    pub enabled: BTreeSet<String>,
    /// ReplicaSet controller tunables.
    pub replicaset: replicaset::Config,
    /// Deployment controller tunables.
    pub deployment: deployment::Config,
    /// Node lifecycle controller tunables.
    pub nodelifecycle: nodelifecycle::Config,
    /// DaemonSet controller tunables.
    pub daemonset: daemonset::Config,
    /// The CA bundle (PEM) the root CA publisher puts in every namespace's `kube-root-ca.crt`;
    /// without one that controller does not run.
    pub root_ca: Option<String>,
    /// How often every ResourceQuota is recounted (`--resource-quota-sync-period`).
    pub resource_quota_sync_period: std::time::Duration,
    /// Test-only switch for keel-sim's planted-bug self-test (issue 23), never set by a flag:
    /// the ReplicaSet controller trusts its (possibly stale) informer without expectations, so
    /// the simulation's pod-count checker must catch the extra creates and deletes.
    pub bug_ignore_expectations: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: ALL.iter().map(|s| s.to_string()).collect(),
            replicaset: Default::default(),
            deployment: Default::default(),
            nodelifecycle: Default::default(),
            daemonset: Default::default(),
            root_ca: None,
            resource_quota_sync_period: resourcequota::SYNC_PERIOD,
            bug_ignore_expectations: false,
        }
    }
}

/// `--controllers` as kube reads it: `*` enables the defaults, `foo` enables foo, `-foo`
/// disables it. Unknown names are an error.
pub fn parse_controllers(spec: &str) -> std::result::Result<BTreeSet<String>, String> {
    let mut on = BTreeSet::new();
    let mut off = BTreeSet::new();
    let mut star = false;
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (neg, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item),
        };
        if name == "*" {
            star = true;
            continue;
        }
        if !ALL.contains(&name) {
            return Err(format!("{name:?} is not a known controller (known: {})", ALL.join(", ")));
        }
        if neg {
            off.insert(name.to_string())
        } else {
            on.insert(name.to_string())
        };
    }
    if star {
        on.extend(ALL.iter().map(|s| s.to_string()));
    }
    Ok(on.difference(&off).cloned().collect())
}

/// Which optional resources the apiserver serves.
pub async fn discover(client: &kube::Client) -> Served {
    let has = |group: &'static str, plural: &'static str| {
        let client = client.clone();
        async move {
            match client.list_api_group_resources(group).await {
                Ok(list) => list.resources.iter().any(|r| r.name == plural),
                Err(_) => false,
            }
        }
    };
    Served {
        controller_revisions: has("apps/v1", "controllerrevisions").await,
        endpoint_slices: has("discovery.k8s.io/v1", "endpointslices").await,
        cluster_roles: has("rbac.authorization.k8s.io/v1", "clusterroles").await,
        resource_quotas: match client.list_core_api_resources("v1").await {
            Ok(list) => list.resources.iter().any(|r| r.name == "resourcequotas"),
            Err(_) => false,
        },
    }
}

/// Runs the enabled controllers until `stop` completes.
pub async fn run(client: kube::Client, cfg: Config, clock: SharedClock, metrics: Metrics, stop: impl Future<Output = ()>) -> Result<()> {
    let served = discover(&client).await;
    tracing::info!(?served, "starting controllers: {}", cfg.enabled.iter().cloned().collect::<Vec<_>>().join(","));
    let shared = Arc::new(Shared::new(&client, served));
    let mut tasks = JoinSet::new();
    let (recorder, send_events) = Recorder::new(client.clone(), clock.clone());
    tasks.spawn(send_events);
    let ctx = Context { client, shared: shared.clone(), clock, recorder, metrics };
    let mut queues = Vec::new();
    if cfg.enabled.contains("replicaset") {
        let rs_cfg = replicaset::Config { bug_ignore_expectations: cfg.bug_ignore_expectations, ..cfg.replicaset.clone() };
        let c = ReplicaSetController::new(&ctx, rs_cfg);
        queues.push(c.queue());
        let workers = c.workers();
        runner::spawn(&mut tasks, "replicaset", c.queue(), workers, c);
    }
    if cfg.enabled.contains("deployment") {
        let c = DeploymentController::new(&ctx, cfg.deployment.clone());
        queues.push(c.queue());
        let workers = c.workers();
        runner::spawn(&mut tasks, "deployment", c.queue(), workers, c);
    }
    if cfg.enabled.contains("nodelifecycle") {
        let c = NodeLifecycleController::new(&ctx, cfg.nodelifecycle.clone());
        queues.push(c.queue());
        tasks.spawn(c.clone().run_monitor());
        runner::spawn(&mut tasks, "nodelifecycle", c.queue(), 1, c);
    }
    if cfg.enabled.contains("taint-eviction-controller") {
        let c = TaintEvictionController::new(&ctx);
        queues.push(c.queue());
        runner::spawn(&mut tasks, "taint-eviction-controller", c.queue(), 4, c);
    }
    if cfg.enabled.contains("serviceaccount") {
        let c = ServiceAccountController::new(&ctx);
        queues.push(c.queue());
        runner::spawn(&mut tasks, "serviceaccount", c.queue(), 2, c);
    }
    if cfg.enabled.contains("daemonset") {
        let c = DaemonSetController::new(&ctx, cfg.daemonset.clone());
        queues.push(c.queue());
        let workers = c.workers();
        runner::spawn(&mut tasks, "daemonset", c.queue(), workers, c);
    }
    if cfg.enabled.contains("endpoint") {
        let c = EndpointsController::new(&ctx);
        queues.push(c.queue());
        runner::spawn(&mut tasks, "endpoint", c.queue(), 5, c);
    }
    if cfg.enabled.contains("endpointslice") {
        match shared.endpoint_slices.clone() {
            Some(slices) => {
                let c = EndpointSliceController::new(&ctx, slices);
                queues.push(c.queue());
                runner::spawn(&mut tasks, "endpointslice", c.queue(), 5, c);
            }
            None => tracing::warn!("the apiserver does not serve discovery.k8s.io/v1 endpointslices: the endpointslice controller is off"),
        }
    }
    if cfg.enabled.contains("namespace") {
        let c = NamespaceController::new(&ctx);
        queues.push(c.queue());
        runner::spawn(&mut tasks, "namespace", c.queue(), 10, c);
    }
    if cfg.enabled.contains("garbagecollector") {
        let c = GarbageCollector::new(&ctx);
        queues.push(c.queue());
        runner::spawn(&mut tasks, "garbagecollector", c.queue(), 20, c);
    }
    if cfg.enabled.contains("root-ca-cert-publisher") {
        match cfg.root_ca.clone() {
            Some(ca) => {
                let c = RootCaPublisher::new(&ctx, ca);
                queues.push(c.queue());
                runner::spawn(&mut tasks, "root-ca-cert-publisher", c.queue(), 5, c);
            }
            None => tracing::warn!("no CA bundle (--root-ca-file, or the kubeconfig's CA): the root-ca-cert-publisher is off"),
        }
    }
    if cfg.enabled.contains("clusterrole-aggregation") {
        match shared.cluster_roles.clone() {
            Some(roles) => {
                let c = AggregationController::new(&ctx, roles);
                queues.push(c.queue());
                runner::spawn(&mut tasks, "clusterrole-aggregation", c.queue(), 5, c);
            }
            None => {
                tracing::warn!("the apiserver does not serve rbac.authorization.k8s.io/v1 clusterroles: clusterrole-aggregation is off")
            }
        }
    }
    if cfg.enabled.contains("resourcequota") {
        match shared.resource_quotas.clone() {
            Some(quotas) => {
                let c = ResourceQuotaController::new(&ctx, quotas, cfg.resource_quota_sync_period);
                queues.push(c.queue());
                tasks.spawn(c.clone().run_resync());
                runner::spawn(&mut tasks, "resourcequota", c.queue(), 5, c);
            }
            None => tracing::warn!("the apiserver does not serve v1 resourcequotas: the resourcequota controller is off"),
        }
    }
    shared.start(&mut tasks);
    stop.await;
    for q in &queues {
        q.shut_down();
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_reads_like_kubes() {
        let all: BTreeSet<String> = ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_controllers("*").ok(), Some(all.clone()));
        assert_eq!(parse_controllers("*,-replicaset").ok().map(|s| s.contains("replicaset")), Some(false));
        assert_eq!(parse_controllers("replicaset").ok().map(|s| s.len()), Some(1));
        assert!(parse_controllers("bogus").is_err());
    }
}
