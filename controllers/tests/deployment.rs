//! The Deployment controller with the real scheduler, kubelets and kubectl: rollout status, a
//! deleted pod replaced, set image under a sampler that checks surge and availability every 100 ms, history, undo,
//! pause/resume, restart and scale.

mod common;

use common::{apply, control_plane, kubectl, ok, ready_nodes, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use keel_controllers::deployment::util::{REVISION, REVISION_HISTORY};
use kube::api::{Api, ListParams};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "nginx:1"}]}
"#;

/// Every 100 ms: live (not terminating) pods ≤ replicas + maxSurge, ready ≥ replicas − maxUnavailable.
struct Sampler {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
    samples: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pods: Api<Pod>, max_pods: usize, min_ready: usize) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(Mutex::new(0));
        let (s, v, n) = (stop.clone(), violations.clone(), samples.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default().labels("app=web")).await {
                    let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
                    let ready = live.iter().filter(|p| keel_controllers::pod::is_ready(p)).count();
                    if live.len() > max_pods || ready < min_ready {
                        v.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{} live, {ready} ready", live.len()));
                    }
                    *n.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Sampler { stop, violations, samples, task }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let n = *self.samples.lock().unwrap_or_else(|p| p.into_inner());
        (n, self.violations.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

async fn rollout_status(c: &keel_testkit::Cluster) {
    let out = kubectl(c, &["rollout", "status", "deployment/web", "--timeout=60s"]).await;
    assert!(out.status.success(), "rollout status: {}{}\n{}", keel_testkit::text(&out.stdout), keel_testkit::text(&out.stderr), c.logs());
    assert!(keel_testkit::text(&out.stdout).contains("successfully rolled out"));
}

fn revision_of(rs: &ReplicaSet) -> String {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned().unwrap_or_default()
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_undoes_pauses_and_restarts_as_kubectl_expects() {
    let c = control_plane(&[], &[], 3);
    ready_nodes(&c, 3).await;
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");

    apply(&c, DEPLOY).await;
    rollout_status(&c).await;
    let d = deploys.get("web").await.ok().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    assert_eq!((st.replicas, st.updated_replicas, st.ready_replicas, st.available_replicas), (Some(3), Some(3), Some(3), Some(3)));
    let conds: Vec<(String, String, Option<String>)> =
        st.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect();
    assert!(conds.contains(&("Available".into(), "True".into(), Some("MinimumReplicasAvailable".into()))), "{conds:?}");
    assert!(conds.contains(&("Progressing".into(), "True".into(), Some("NewReplicaSetAvailable".into()))), "{conds:?}");
    assert_eq!(d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str), Some("1"));

    // A deleted pod (terminating until its kubelet finishes it) is replaced by a new one.
    let live = |l: Vec<Pod>| -> Vec<String> {
        l.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && keel_controllers::pod::is_ready(p))
            .filter_map(|p| p.metadata.name)
            .collect()
    };
    let before = live(pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default());
    assert_eq!(before.len(), 3, "{before:?}");
    ok(&c, &["delete", "pod", &before[0], "--wait=false"]).await;
    wait_for(&c, Duration::from_secs(30), "the deleted pod gone and a new ready one in its place", || async {
        let all = pods.list(&ListParams::default().labels("app=web")).await.ok()?.items;
        let gone = all.iter().all(|p| p.metadata.name.as_deref() != Some(before[0].as_str()));
        let now = live(all);
        (gone && now.len() == 3 && !now.contains(&before[0])).then_some(())
    })
    .await;

    // A new image rolls out; defaults give maxSurge 1 and maxUnavailable 0 for 3 replicas.
    let sampler = Sampler::start(pods.clone(), 4, 3);
    ok(&c, &["set", "image", "deployment/web", "c=nginx:2"]).await;
    rollout_status(&c).await;
    let (samples, violations) = sampler.finish().await;
    assert!(samples > 0 && violations.is_empty(), "{samples} samples, violations: {violations:?}");
    let history = ok(&c, &["rollout", "history", "deployment/web"]).await;
    assert!(
        history.lines().any(|l| l.trim_start().starts_with('1')) && history.lines().any(|l| l.trim_start().starts_with('2')),
        "{history}"
    );

    // Undo goes back to nginx:1 as revision 3; the old ReplicaSet remembers revision 1.
    ok(&c, &["rollout", "undo", "deployment/web"]).await;
    rollout_status(&c).await;
    let list = rss.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    let v1 = list.iter().find(|r| image_of(r) == "nginx:1").cloned().unwrap_or_default();
    assert_eq!(revision_of(&v1), "3");
    assert_eq!(v1.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_HISTORY)).map(String::as_str), Some("1"));
    let history = ok(&c, &["rollout", "history", "deployment/web"]).await;
    let revs: Vec<&str> = history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
    assert_eq!(revs, ["2", "3"], "{history}");
    let detail = ok(&c, &["rollout", "history", "deployment/web", "--revision=3"]).await;
    assert!(detail.contains("nginx:1"), "{detail}");

    // Paused: a template change makes no new ReplicaSet until resumed.
    ok(&c, &["rollout", "pause", "deployment/web"]).await;
    ok(&c, &["set", "image", "deployment/web", "c=nginx:3"]).await;
    wait_for(&c, Duration::from_secs(20), "the Paused condition", || async {
        let d = deploys.get("web").await.ok()?;
        let s = d.status?;
        let paused = s.conditions?.iter().any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"));
        (paused && s.observed_generation == d.metadata.generation).then_some(())
    })
    .await;
    let count = rss.list(&ListParams::default().labels("app=web")).await.map(|l| l.items.len()).unwrap_or(0);
    assert_eq!(count, 2, "no ReplicaSet for nginx:3 while paused");
    ok(&c, &["rollout", "resume", "deployment/web"]).await;
    rollout_status(&c).await;
    let list = rss.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    assert!(list.iter().any(|r| image_of(r) == "nginx:3" && revision_of(r) == "4"));

    // Restart: a new ReplicaSet with kubectl's restartedAt annotation in its template.
    ok(&c, &["rollout", "restart", "deployment/web"]).await;
    rollout_status(&c).await;
    let list = rss.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    let restarted = list.iter().find(|r| revision_of(r) == "5").cloned().unwrap_or_default();
    let ann = restarted.spec.and_then(|s| s.template).and_then(|t| t.metadata).and_then(|m| m.annotations).unwrap_or_default();
    assert!(ann.contains_key("kubectl.kubernetes.io/restartedAt"), "{ann:?}");

    // Scale: 5 pods, all in the newest ReplicaSet.
    ok(&c, &["scale", "deployment/web", "--replicas=5"]).await;
    rollout_status(&c).await;
    let live = pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    let hashes: std::collections::BTreeSet<String> = live
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.labels.as_ref()?.get("pod-template-hash").cloned())
        .collect();
    assert_eq!(live.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count(), 5);
    assert_eq!(hashes.len(), 1, "{hashes:?}");
}
