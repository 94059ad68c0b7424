//! Carrying out a workload plan through the real interfaces — kubectl for what users type
//! (`scale`, `set image`, `rollout undo`, each with `-o json` so the answer names the
//! resourceVersion written — except `scale`, which prints the object as read before its patch
//! of `/scale`, so a scale is matched by its replicas), kube-rs for the rest — and keeping every acknowledged write.
//!
//! Errors are expected while faults run (a killed apiserver, a store without a leader): a
//! failed action is counted and dropped, never retried, and never recorded as acknowledged.
//! Deletions are recorded as "the key is deleted or marked for deletion at some revision",
//! since an immediate deletion answers with the object as it was.
//!
//! Deployments `web-<n>` get one of four strategies by `n % 4`: kube's default (25 %/25 %),
//! maxSurge 1 / maxUnavailable 0, 50 %/50 %, and Recreate, so the rollout bounds are checked
//! under each. Pods sleep (`sleep 3600`) with a 1 s grace period.

use crate::history::{AckedWrite, Expect, Op, Revision};
use crate::workload::{Action, Step};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// The namespace of the workload.
pub const NAMESPACE: &str = "default";
/// How long one action may take.
const ACTION_LIMIT: Duration = Duration::from_secs(30);

/// What the workload did.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Actions acknowledged, by kind.
    pub acked: BTreeMap<&'static str, usize>,
    /// Actions that failed (or were not acknowledged in time), by kind.
    pub failed: BTreeMap<&'static str, usize>,
    /// The first few failure messages, for the report.
    pub errors: Vec<String>,
}

/// Carries out plans on one cluster.
pub struct Driver {
    client: kube::Client,
    kubeconfig: PathBuf,
    cache: PathBuf,
    /// Writes acknowledged so far.
    pub acked: Vec<AckedWrite>,
    /// Counts.
    pub tally: Tally,
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::CreateDeployment { .. } => "create deployment",
        Action::Scale { .. } => "scale",
        Action::SetImage { .. } => "set image",
        Action::Rollback { .. } => "rollout undo",
        Action::DeleteOnePod { .. } => "delete deployment pod",
        Action::CreatePod { .. } => "create pod",
        Action::DeletePod { .. } => "delete pod",
    }
}

/// The Deployment `name` of the plan as the driver creates it.
pub fn deployment(name: &str, replicas: u32, image: &str) -> Value {
    let n: usize = name.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let strategy = match n % 4 {
        0 => json!({}),
        1 => json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        2 => json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "50%"}}),
        _ => json!({"type": "Recreate"}),
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}
            }
        }
    })
}

/// The bare pod `name` of the plan.
pub fn bare_pod(name: &str, node: Option<&str>) -> Value {
    let mut spec = json!({"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "keel.dev/bare:v1", "command": ["sleep", "3600"]}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"keel-faults": "bare"}}, "spec": spec})
}

fn revision_of(o: &Value) -> Option<Revision> {
    o.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok()).map(Revision)
}

fn key(resource: &str, name: &str) -> String {
    format!("/registry/{resource}/{NAMESPACE}/{name}")
}

impl Driver {
    /// A driver for the cluster behind `kubeconfig` (kubectl's discovery cache in `cache`).
    pub async fn new(kubeconfig: PathBuf, cache: PathBuf) -> super::Result<Driver> {
        let client = client(&kubeconfig).await?;
        Ok(Driver { client, kubeconfig, cache, acked: Vec::new(), tally: Tally::default() })
    }

    /// Carries out `plan` from `start` (each step at its time, or late when the previous one
    /// took long), until `stop` says so.
    pub async fn run(&mut self, plan: &[Step], start: Instant, stop: &tokio::sync::watch::Receiver<bool>) {
        for step in plan {
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep_until(start + step.at).await;
            let what = kind(&step.action);
            match tokio::time::timeout(ACTION_LIMIT, self.act(&step.action)).await {
                Ok(Ok(writes)) => {
                    *self.tally.acked.entry(what).or_default() += 1;
                    self.acked.extend(writes);
                }
                Ok(Err(e)) => self.failed(what, format!("{}: {e}", step.action)),
                Err(_) => self.failed(what, format!("{}: no answer in {ACTION_LIMIT:?}", step.action)),
            }
        }
    }

    fn failed(&mut self, what: &'static str, message: String) {
        *self.tally.failed.entry(what).or_default() += 1;
        if self.tally.errors.len() < 20 {
            self.tally.errors.push(message);
        }
    }

    async fn kubectl(&self, args: &[&str]) -> Result<Value, String> {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=15s")
            .args(args)
            .args(["-o", "json"])
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("running kubectl: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("kubectl printed no JSON ({e})"))
    }

    fn by(key: String, op: Op, revision: Option<Revision>, expect: Vec<Expect>) -> AckedWrite {
        AckedWrite { by: "workload".into(), key, op, revision, expect }
    }

    async fn act(&self, a: &Action) -> Result<Vec<AckedWrite>, String> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let err = |e: kube::Error| e.to_string();
        match a {
            Action::CreateDeployment { name, replicas, image } => {
                let d: Deployment = serde_json::from_value(deployment(name, *replicas, image)).map_err(|e| e.to_string())?;
                let made = deployments.create(&PostParams::default(), &d).await.map_err(err)?;
                let rv = made.metadata.resource_version.and_then(|s| s.parse().ok()).map(Revision);
                Ok(vec![Self::by(key("deployments", name), Op::Put, rv, vec![])])
            }
            Action::Scale { name, replicas } => {
                let o = self.kubectl(&["scale", &format!("deployment/{name}"), &format!("--replicas={replicas}")]).await?;
                // kubectl scale prints the object it read before patching /scale (its
                // resourceVersion is the old one), so the write is matched by its content.
                let _ = o;
                let expect = vec![Expect::Equals("/spec/replicas".into(), json!(replicas))];
                Ok(vec![Self::by(key("deployments", name), Op::Put, None, expect)])
            }
            Action::SetImage { name, image } => {
                let o = self.kubectl(&["set", "image", &format!("deployment/{name}"), &format!("c={image}")]).await?;
                let expect = vec![Expect::Equals("/spec/template/spec/containers/0/image".into(), json!(image))];
                Ok(vec![Self::by(key("deployments", name), Op::Put, revision_of(&o), expect)])
            }
            Action::Rollback { name } => {
                let o = self.kubectl(&["rollout", "undo", &format!("deployment/{name}")]).await?;
                let image = o.pointer("/spec/template/spec/containers/0/image").cloned().unwrap_or(Value::Null);
                let expect =
                    if image.is_null() { vec![] } else { vec![Expect::Equals("/spec/template/spec/containers/0/image".into(), image)] };
                Ok(vec![Self::by(key("deployments", name), Op::Put, revision_of(&o), expect)])
            }
            Action::DeleteOnePod { deployment, pick } => {
                let list = pods.list(&ListParams::default().labels(&format!("app={deployment}"))).await.map_err(err)?;
                let mut names: Vec<String> =
                    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter_map(|p| p.metadata.name).collect();
                names.sort();
                if names.is_empty() {
                    return Ok(vec![]);
                }
                let victim = names[(*pick % names.len() as u64) as usize].clone();
                pods.delete(&victim, &DeleteParams::default()).await.map_err(err)?;
                Ok(vec![Self::by(key("pods", &victim), Op::Delete, None, vec![])])
            }
            Action::CreatePod { name, node } => {
                let p: Pod = serde_json::from_value(bare_pod(name, node.as_deref())).map_err(|e| e.to_string())?;
                let made = pods.create(&PostParams::default(), &p).await.map_err(err)?;
                let rv = made.metadata.resource_version.and_then(|s| s.parse().ok()).map(Revision);
                Ok(vec![Self::by(key("pods", name), Op::Put, rv, vec![])])
            }
            Action::DeletePod { name } => {
                pods.delete(name, &DeleteParams::default()).await.map_err(err)?;
                Ok(vec![Self::by(key("pods", name), Op::Delete, None, vec![])])
            }
        }
    }
}

/// A kube client for `kubeconfig` with short timeouts (a request to a killed apiserver fails
/// in seconds, not minutes).
pub async fn client(kubeconfig: &std::path::Path) -> super::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| super::Error::Kube(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| super::Error::Kube(e.to_string()))?;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(15));
    config.write_timeout = Some(Duration::from_secs(15));
    kube::Client::try_from(config).map_err(|e| super::Error::Kube(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strategies_cycle_and_objects_parse_as_kube_types() {
        let kinds: Vec<Value> = (0..4).map(|i| deployment(&format!("web-{i}"), 2, "x")["spec"]["strategy"].clone()).collect();
        assert_eq!(kinds[0], json!({}));
        assert_eq!(kinds[3], json!({"type": "Recreate"}));
        assert_eq!(crate::objects::max_total_pods(&deployment("web-2", 3, "x")), 5, "50 % of 3 rounds up to 2");
        assert!(serde_json::from_value::<Deployment>(deployment("web-1", 2, "x")).is_ok());
        let p: Pod = serde_json::from_value(bare_pod("bare-1", Some("keel-2"))).expect("a pod");
        assert_eq!(p.spec.and_then(|s| s.node_name).as_deref(), Some("keel-2"));
    }
}
