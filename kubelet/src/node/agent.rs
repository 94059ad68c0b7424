//! One node's life: register the Node, keep its Lease fresh, post its status, and run its pods
//! (the pods loop in [`crate::node::pods`]). Timings are kubelet's: the Lease (in
//! `kube-node-lease`, named after the node, owned by the Node) is renewed every quarter of
//! `--node-lease-duration-seconds` (40 s → 10 s) with a little jitter; the status is computed
//! every `--node-status-update-frequency` (10 s) and posted when it changed or every
//! `--node-status-report-frequency` (5 min).
//!
//! Invariant: every loop survives apiserver errors by retrying on its next tick; a Node deleted
//! behind the kubelet's back is registered again.

use crate::clock::Clock;
use crate::error::Result;
use crate::node::conditions::{Observed, conditions, must_post};
use crate::node::host::Capacity;
use crate::pod::quantity::format_millis;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node as ApiNode, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, GetParams, Patch, PatchParams, PostParams};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Everything about one node that flags decide.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The node's name.
    pub name: String,
    /// Labels to register with (beside kubernetes.io/hostname, os, arch).
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`.
    pub taints: Vec<Taint>,
    /// `--pod-cidr`.
    pub pod_cidr: Option<String>,
    /// The InternalIP.
    pub address: String,
    /// The Hostname address.
    pub hostname: String,
    /// Capacity.
    pub capacity: Capacity,
    /// `--eviction-hard memory.available<…` in bytes (subtracted from allocatable, as kubelet).
    pub eviction_memory: u64,
    /// The kubelet's port (status.daemonEndpoints).
    pub kubelet_port: u16,
    /// `--node-lease-duration-seconds`.
    pub lease_duration: Duration,
    /// `--node-status-update-frequency`.
    pub status_update: Duration,
    /// `--node-status-report-frequency`.
    pub status_report: Duration,
    /// The runtime's name and version for nodeInfo.
    pub runtime_version: String,
    /// Seed of the renew jitter.
    pub seed: u64,
}

fn q(s: String) -> Quantity {
    Quantity(s)
}

impl NodeSettings {
    fn resources(&self, allocatable: bool) -> BTreeMap<String, Quantity> {
        let c = self.capacity;
        let memory = if allocatable { c.memory.saturating_sub(self.eviction_memory) } else { c.memory };
        BTreeMap::from([
            ("cpu".to_string(), q(format_millis(c.cpu_millis))),
            ("memory".to_string(), q(format!("{}Ki", memory / 1024))),
            ("ephemeral-storage".to_string(), q(format!("{}Ki", c.ephemeral_storage / 1024))),
            ("pods".to_string(), q(c.pods.to_string())),
        ])
    }

    /// The status fields besides conditions.
    pub fn status(&self, conds: Vec<NodeCondition>) -> NodeStatus {
        NodeStatus {
            capacity: Some(self.resources(false)),
            allocatable: Some(self.resources(true)),
            conditions: Some(conds),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: self.address.clone() },
                NodeAddress { type_: "Hostname".into(), address: self.hostname.clone() },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: self.kubelet_port as i32 }) }),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                boot_id: crate::node::host::boot_id(),
                container_runtime_version: self.runtime_version.clone(),
                kernel_version: crate::node::host::kernel_version(),
                kube_proxy_version: String::new(),
                kubelet_version: "v1.33.0-keel".into(),
                machine_id: crate::node::host::machine_id(),
                operating_system: "linux".into(),
                os_image: crate::node::host::os_image(),
                system_uuid: String::new(),
                swap: None,
            }),
            ..Default::default()
        }
    }

    /// The Node to register.
    pub fn node(&self) -> ApiNode {
        let mut labels = self.labels.clone();
        let arch = std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64");
        for (k, v) in [
            ("kubernetes.io/hostname", self.name.clone()),
            ("kubernetes.io/os", "linux".into()),
            ("kubernetes.io/arch", arch.clone()),
            ("beta.kubernetes.io/os", "linux".into()),
            ("beta.kubernetes.io/arch", arch),
        ] {
            labels.entry(k.into()).or_insert(v);
        }
        ApiNode {
            metadata: ObjectMeta { name: Some(self.name.clone()), labels: Some(labels), ..Default::default() },
            spec: Some(NodeSpec {
                pod_cidr: self.pod_cidr.clone(),
                pod_cidrs: self.pod_cidr.clone().map(|c| vec![c]),
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// Shared between the pods loop (which learns about pressure) and the status loop.
pub type Observations = Arc<Mutex<Observed>>;

/// Registers the Node (or finds it); returns its uid.
pub async fn register(client: &kube::Client, s: &NodeSettings) -> Result<String> {
    let api: Api<ApiNode> = Api::all(client.clone());
    let node = match api.create(&PostParams::default(), &s.node()).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(&s.name).await?,
        Err(e) => return Err(e.into()),
    };
    Ok(node.metadata.uid.unwrap_or_default())
}

/// Posts the node status when it differs from the apiserver's copy and at least every
/// `status_report`. As kube's `tryUpdateNodeStatus`, the comparison is with the Node as the
/// apiserver has it (read with resourceVersion=0 each tick), not with what this kubelet last
/// posted: the node lifecycle controller writes `Ready=Unknown` while the kubelet is cut off,
/// and only a kubelet that looks at the Node puts `Ready=True` back when it returns.
pub async fn status_loop(client: kube::Client, s: NodeSettings, observed: Observations, clock: Arc<dyn Clock>) {
    let api: Api<ApiNode> = Api::all(client.clone());
    let mut last_post: Option<tokio::time::Instant> = None;
    loop {
        let server = match api.get_with(&s.name, &GetParams::any()).await {
            Ok(n) => n.status.and_then(|st| st.conditions).unwrap_or_default(),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::warn!(node = %s.name, "the Node is gone; registering again");
                if register(&client, &s).await.is_ok() {
                    continue;
                }
                tokio::time::sleep(s.status_update).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(node = %s.name, error = %e, "reading the Node");
                tokio::time::sleep(s.status_update).await;
                continue;
            }
        };
        let obs = observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let conds = conditions(&obs, &server, clock.now());
        let since = last_post.map(|t| t.elapsed()).unwrap_or(Duration::MAX);
        if must_post(&conds, &server, since, s.status_report) {
            let patch = serde_json::json!({ "status": s.status(conds) });
            match api.patch_status(&s.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => last_post = Some(tokio::time::Instant::now()),
                Err(e) => tracing::warn!(node = %s.name, error = %e, "node status"),
            }
        }
        tokio::time::sleep(s.status_update).await;
    }
}

/// Keeps the node's Lease fresh.
pub async fn lease_loop(client: kube::Client, s: NodeSettings, node_uid: String, clock: Arc<dyn Clock>) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let interval = s.lease_duration / 4;
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed);
    let mut cached: Option<Lease> = None;
    // Spread the first renewals of many nodes over one interval (node 0 renews at once).
    tokio::time::sleep(interval.mul_f64((s.seed as f64 * 0.618_033_988_75).fract())).await;
    loop {
        let now = MicroTime(clock.now());
        let result = match cached.take() {
            Some(mut l) => {
                if let Some(spec) = l.spec.as_mut() {
                    spec.renew_time = Some(now);
                    spec.holder_identity = Some(s.name.clone());
                    spec.lease_duration_seconds = Some(s.lease_duration.as_secs() as i32);
                }
                api.replace(&s.name, &PostParams::default(), &l).await
            }
            None => match api.get_opt(&s.name).await {
                Ok(Some(mut l)) => {
                    let spec = l.spec.get_or_insert_with(LeaseSpec::default);
                    spec.renew_time = Some(now);
                    spec.holder_identity = Some(s.name.clone());
                    spec.lease_duration_seconds = Some(s.lease_duration.as_secs() as i32);
                    api.replace(&s.name, &PostParams::default(), &l).await
                }
                Ok(None) => {
                    let l = Lease {
                        metadata: ObjectMeta {
                            name: Some(s.name.clone()),
                            namespace: Some("kube-node-lease".into()),
                            owner_references: (!node_uid.is_empty()).then(|| {
                                vec![OwnerReference {
                                    api_version: "v1".into(),
                                    kind: "Node".into(),
                                    name: s.name.clone(),
                                    uid: node_uid.clone(),
                                    ..Default::default()
                                }]
                            }),
                            ..Default::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(s.name.clone()),
                            lease_duration_seconds: Some(s.lease_duration.as_secs() as i32),
                            renew_time: Some(now),
                            ..Default::default()
                        }),
                    };
                    api.create(&PostParams::default(), &l).await
                }
                Err(e) => Err(e),
            },
        };
        let wait = match result {
            Ok(l) => {
                cached = Some(l);
                interval.mul_f64(1.0 + 0.04 * rng.random_range(0.0..1.0))
            }
            Err(e) => {
                tracing::debug!(node = %s.name, error = %e, "lease renew; retrying");
                Duration::from_millis(200 + rng.random_range(0..800))
            }
        };
        tokio::time::sleep(wait).await;
    }
}
