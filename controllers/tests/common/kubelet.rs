//! A stand-in for keel-scheduler and keel-kubelet until they are on main: a thread that binds
//! unscheduled pods round-robin to the nodes it plays (POST pods/binding), reports bound pods
//! Running and Ready with a pod IP (PATCH pods/status), finishes graceful deletions, and renews
//! each node's Lease and Ready condition as a kubelet's heartbeat. Nodes can be stopped (they
//! go silent, like a dead kubelet) and started again.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fake kubelets of a test; stopped on drop.
pub struct FakeKubelet {
    stop: Arc<AtomicBool>,
    /// Node name → alive.
    nodes: Arc<Mutex<BTreeMap<String, bool>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

async fn client(kubeconfig: &PathBuf) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string()
}

impl FakeKubelet {
    /// Plays nodes `names` (registering them) against the cluster of `kubeconfig`.
    pub fn start(kubeconfig: PathBuf, names: &[&str]) -> FakeKubelet {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let stop = Arc::new(AtomicBool::new(false));
        let nodes = Arc::new(Mutex::new(names.iter().map(|n| (n.to_string(), true)).collect::<BTreeMap<_, _>>()));
        let (s, n) = (stop.clone(), nodes.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(run(kubeconfig, s, n));
        });
        FakeKubelet { stop, nodes, handle: Some(handle) }
    }

    /// Adds node `name` (alive).
    pub fn add_node(&self, name: &str) {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), true);
    }

    /// Silences (`false`) or revives (`true`) node `name`'s kubelet.
    pub fn set_alive(&self, name: &str, alive: bool) {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), alive);
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

async fn register(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
    )
    .expect("node");
    if let Err(e) = nodes.create(&PostParams::default(), &node).await {
        eprintln!("fake kubelet: register {name}: {e}");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}}))
            .expect("lease");
    let _ = leases.create(&PostParams::default(), &lease).await;
}

async fn heartbeat(client: &kube::Client, name: &str) {
    let t = now();
    let nodes: Api<Node> = Api::all(client.clone());
    let conds = json!([
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t},
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": t, "lastTransitionTime": t},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": t, "lastTransitionTime": t},
    ]);
    // Keep lastTransitionTime when the status does not change, as a kubelet does.
    let current = nodes.get_status(name).await.ok();
    let conds = match current.as_ref().and_then(|n| n.status.as_ref()).and_then(|s| s.conditions.clone()) {
        Some(old) => {
            let mut c = conds.as_array().cloned().unwrap_or_default();
            for v in c.iter_mut() {
                if let Some(o) = old.iter().find(|o| Some(o.type_.as_str()) == v["type"].as_str())
                    && Some(o.status.as_str()) == v["status"].as_str()
                    && let Some(lt) = &o.last_transition_time
                {
                    v["lastTransitionTime"] = json!(lt.0.to_string());
                }
            }
            json!(c)
        }
        None => conds,
    };
    let patch = json!({"status": {"conditions": conds, "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}, "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}});
    let _ = nodes.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let _ = leases.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"renewTime": renew, "holderIdentity": name}}))).await;
}

async fn run(kubeconfig: PathBuf, stop: Arc<AtomicBool>, nodes: Arc<Mutex<BTreeMap<String, bool>>>) {
    let client = client(&kubeconfig).await;
    let pods: Api<Pod> = Api::all(client.clone());
    let mut registered: Vec<String> = Vec::new();
    let mut next = 0usize;
    let mut ip = 0u32;
    let mut tick = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let snapshot = nodes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for name in snapshot.keys() {
            if !registered.contains(name) {
                register(&client, name).await;
                registered.push(name.clone());
            }
        }
        let alive: Vec<String> = snapshot.iter().filter(|(_, a)| **a).map(|(n, _)| n.clone()).collect();
        if tick.is_multiple_of(5) {
            for n in &alive {
                heartbeat(&client, n).await;
            }
        }
        tick += 1;
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                match node {
                    None if p.metadata.deletion_timestamp.is_none() && !alive.is_empty() => {
                        let target = required_node(&p).unwrap_or_else(|| {
                            next += 1;
                            alive[next % alive.len()].clone()
                        });
                        if !alive.contains(&target) {
                            continue;
                        }
                        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": target}});
                        let _ = api
                            .create_subresource::<serde_json::Value, serde_json::Value>("binding", &name, &PostParams::default(), &body)
                            .await;
                    }
                    Some(n) if alive.contains(&n) => {
                        if p.metadata.deletion_timestamp.is_some() {
                            let _ = api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                            continue;
                        }
                        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                        if !running {
                            ip += 1;
                            let t = now();
                            let status = json!({"status": {
                                "phase": "Running",
                                "podIP": format!("10.244.{}.{}", ip / 250, ip % 250 + 1),
                                "hostIP": "127.0.0.1",
                                "startTime": t,
                                "conditions": [
                                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                                    {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                                    {"type": "Ready", "status": "True", "lastTransitionTime": t},
                                ],
                            }});
                            let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await;
                        }
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node a DaemonSet pod's required node affinity names (`metadata.name` In [node]).
fn required_node(p: &Pod) -> Option<String> {
    let terms = p.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    terms
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}
