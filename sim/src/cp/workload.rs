//! The control plane's workload and observers: a user who creates Deployments and scales them
//! through the apiservers, a watcher of every version of every pod in the store (from
//! revision 1, resumed after every break), and, once the faults stop, the convergence check.
//! [`bound_once`] judges the pod history.
//!
//! Invariants:
//! - The desired state is known exactly: after the faults stop the user sets every
//!   Deployment's replicas once more and retries until the apiserver acknowledges it, so a
//!   scale whose answer was lost cannot leave the target in doubt.
//! - A pod is identified by its uid (a name can be reused by a new pod).

use super::Record;
use super::net::ApiConnector;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use keel_store::seams::{Rng, SplitMix64};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// One version of a pod as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodVersion {
    /// Store revision.
    pub revision: i64,
    /// `/registry/pods/<ns>/<name>`.
    pub key: String,
    /// `metadata.uid` (of the previous value for a deletion).
    pub uid: String,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// A deletion.
    pub deleted: bool,
}

fn version_of(revision: i64, key: &str, value: &[u8], deleted: bool) -> PodVersion {
    let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
    PodVersion {
        revision,
        key: key.to_string(),
        uid: v["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        node: v["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(str::to_string),
        deleted,
    }
}

/// Violations of "a pod is bound at most once and never rebound": once a pod's `nodeName` is
/// set it never changes (to another node or back to none) while the pod exists.
pub fn bound_once(history: &[PodVersion]) -> Vec<String> {
    let mut bound: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    let mut out = Vec::new();
    for v in history.iter().filter(|v| !v.deleted) {
        match (bound.get(v.uid.as_str()), &v.node) {
            (Some((node, rev)), Some(now)) if node != now => {
                out.push(format!("pod {} (uid {}) bound to {node} at revision {rev} is on {now} at revision {}", v.key, v.uid, v.revision))
            }
            (Some((node, rev)), None) => {
                out.push(format!("pod {} (uid {}) bound to {node} at revision {rev} is unbound at revision {}", v.key, v.uid, v.revision))
            }
            (None, Some(now)) => {
                bound.insert(v.uid.as_str(), (now.as_str(), v.revision));
            }
            _ => {}
        }
    }
    out
}

/// Watches every pod key in the store from revision 1 with previous values, resumed after
/// every break, until a second after the user's convergence verdict (or `until`).
pub async fn pod_history(rec: Rc<RefCell<Record>>, members: Vec<SocketAddr>, until: Duration) -> turmoil::Result {
    use futures::StreamExt;
    use keel_etcd::WatchItem;
    let endpoints: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    let cfg = keel_etcd::Config { connect_timeout: Duration::from_secs(1), request_timeout: Duration::from_secs(3), ..Default::default() };
    let client = super::hosts::store_client(&endpoints, &cfg)?;
    let prefix = b"/registry/pods/".to_vec();
    let create = keel_etcd::proto::etcdserverpb::WatchCreateRequest {
        range_end: keel_etcd::prefix_end(&prefix).into(),
        key: prefix.into(),
        start_revision: 1,
        prev_kv: true,
        ..Default::default()
    };
    let mut stream = Box::pin(keel_etcd::Resumable::new(client, create).into_stream());
    let end = tokio::time::sleep(until.saturating_sub(turmoil::sim_elapsed().unwrap_or_default()));
    tokio::pin!(end);
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut converged_at: Option<Duration> = None;
    loop {
        let item = tokio::select! {
            _ = &mut end => return Ok(()),
            // Once the user's verdict is in, a second more of history, then the run may end.
            _ = check.tick() => {
                let now = turmoil::sim_elapsed().unwrap_or_default();
                match converged_at {
                    Some(at) if now >= at + Duration::from_secs(1) => return Ok(()),
                    None if rec.borrow().convergence.is_some() => converged_at = Some(now),
                    _ => {}
                }
                continue;
            }
            item = stream.next() => item,
        };
        match item {
            Some(WatchItem::Events(events)) => {
                let mut r = rec.borrow_mut();
                for e in events {
                    let deleted = e.r#type == keel_etcd::proto::mvccpb::event::EventType::Delete as i32;
                    let Some(kv) = e.kv.as_ref() else { continue };
                    let key = String::from_utf8_lossy(&kv.key).into_owned();
                    let value = if deleted { e.prev_kv.as_ref().map(|p| p.value.as_ref()).unwrap_or_default() } else { kv.value.as_ref() };
                    r.pods.push(version_of(kv.mod_revision, &key, value, deleted));
                }
            }
            Some(WatchItem::Progress(_)) => {}
            Some(WatchItem::Compacted(at)) => {
                rec.borrow_mut().pods_lost = Some(at);
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

fn deployment(name: &str, replicas: i32) -> Result<Deployment, String> {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]}
            }
        }
    }))
    .map_err(|e| e.to_string())
}

/// What the user does: when.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// First request.
    pub start: Duration,
    /// Scaling stops; the final spec is set and the convergence check starts.
    pub settle: Duration,
    /// The convergence check gives up.
    pub deadline: Duration,
}

/// The user: creates `count` Deployments, scales them at random until `settle`, sets the final
/// replicas once more, then waits for every Deployment to converge.
pub async fn user(rec: Rc<RefCell<Record>>, apiservers: Vec<SocketAddr>, seed: u64, count: usize, when: Schedule) -> turmoil::Result {
    let client = super::net::kube_client("user", ApiConnector::new(apiservers, 0))?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut rng = SplitMix64(seed);
    tokio::time::sleep(when.start).await;
    let names: Vec<String> = (0..count).map(|i| format!("web-{i}")).collect();
    let mut desired: BTreeMap<String, i32> = BTreeMap::new();
    let now_ms = || turmoil::sim_elapsed().unwrap_or_default().as_millis();
    for name in &names {
        let replicas = 1 + (rng.next_u64() % 3) as i32;
        let d = deployment(name, replicas)?;
        loop {
            let r = tokio::time::timeout(Duration::from_secs(5), api.create(&PostParams::default(), &d)).await;
            let ok = match &r {
                Ok(Ok(_)) => true,
                Ok(Err(kube::Error::Api(s))) => s.code == 409,
                _ => false,
            };
            rec.borrow_mut().user.push(format!("{} ms create {name} replicas {replicas}: {}", now_ms(), outcome(&r)));
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        desired.insert(name.clone(), replicas);
    }
    while turmoil::sim_elapsed().unwrap_or_default() < when.settle {
        tokio::time::sleep(Duration::from_millis(1000 + rng.next_u64() % 3000)).await;
        let name = &names[(rng.next_u64() % count as u64) as usize];
        let replicas = (rng.next_u64() % 5) as i32;
        let r = tokio::time::timeout(Duration::from_secs(5), scale(&api, name, replicas)).await;
        rec.borrow_mut().user.push(format!("{} ms scale {name} to {replicas}: {}", now_ms(), outcome(&r)));
        desired.insert(name.clone(), replicas);
    }
    // The final spec, acknowledged.
    for (name, replicas) in &desired {
        loop {
            let r = tokio::time::timeout(Duration::from_secs(5), scale(&api, name, *replicas)).await;
            rec.borrow_mut().user.push(format!("{} ms final {name} replicas {replicas}: {}", now_ms(), outcome(&r)));
            if matches!(r, Ok(Ok(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    rec.borrow_mut().desired = desired.clone();
    let settled = turmoil::sim_elapsed().unwrap_or_default();
    loop {
        let state = observe(&client, &desired).await;
        let now = turmoil::sim_elapsed().unwrap_or_default();
        match state {
            Ok(()) => {
                rec.borrow_mut().convergence = Some(Ok(format!("converged {} ms after the final spec", (now - settled).as_millis())));
                return Ok(());
            }
            Err(why) if now >= when.deadline => {
                rec.borrow_mut().convergence =
                    Some(Err(format!("not converged {} ms after the final spec: {why}", (now - settled).as_millis())));
                return Ok(());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn scale(api: &Api<Deployment>, name: &str, replicas: i32) -> kube::Result<Deployment> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": replicas}}))).await
}

fn outcome<T>(r: &Result<kube::Result<T>, tokio::time::error::Elapsed>) -> String {
    match r {
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(kube::Error::Api(s))) => format!("{} {}", s.code, s.reason),
        Ok(Err(e)) => format!("error {}", e.to_string().chars().take(80).collect::<String>()),
        Err(_) => "timed out".into(),
    }
}

/// Whether every Deployment has converged to `desired`: its status says so (observed
/// generation, replicas, updated, ready, available) and exactly that many of its pods exist,
/// each bound and running.
async fn observe(client: &kube::Client, desired: &BTreeMap<String, i32>) -> Result<(), String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, want) in desired {
        let d = deployments.get(name).await.map_err(|e| format!("get {name}: {e}"))?;
        let s = d.status.clone().unwrap_or_default();
        let generation = d.metadata.generation.unwrap_or_default();
        let n = |x: Option<i32>| x.unwrap_or(0);
        let got = (
            s.observed_generation.unwrap_or_default() >= generation,
            n(s.replicas),
            n(s.updated_replicas),
            n(s.ready_replicas),
            n(s.available_replicas),
        );
        if got != (true, *want, *want, *want, *want) {
            return Err(format!("{name} wants {want}: status (observed current, replicas, updated, ready, available) {got:?}"));
        }
        let list =
            pods.list(&ListParams::default().labels(&format!("app={name}"))).await.map_err(|e| format!("list pods of {name}: {e}"))?;
        let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let running = live
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .count();
        if live.len() != *want as usize || running != *want as usize {
            return Err(format!("{name} wants {want}: {} pods, {running} bound and running", live.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(revision: i64, uid: &str, node: Option<&str>, deleted: bool) -> PodVersion {
        PodVersion { revision, key: format!("/registry/pods/default/{uid}"), uid: uid.into(), node: node.map(str::to_string), deleted }
    }

    #[test]
    fn a_pod_is_bound_once() {
        let cases: Vec<(&str, Vec<PodVersion>, usize)> = vec![
            (
                "created, bound, updated, deleted",
                vec![v(1, "a", None, false), v(2, "a", Some("n1"), false), v(3, "a", Some("n1"), false), v(4, "a", Some("n1"), true)],
                0,
            ),
            ("rebound", vec![v(1, "a", None, false), v(2, "a", Some("n1"), false), v(3, "a", Some("n2"), false)], 1),
            ("unbound", vec![v(2, "a", Some("n1"), false), v(3, "a", None, false)], 1),
            (
                "a new pod of the same name",
                vec![v(2, "a", Some("n1"), false), v(3, "a", Some("n1"), true), v(4, "b", Some("n2"), false)],
                0,
            ),
            ("two pods on two nodes", vec![v(2, "a", Some("n1"), false), v(3, "b", Some("n2"), false)], 0),
        ];
        for (name, history, violations) in cases {
            assert_eq!(bound_once(&history).len(), violations, "{name}: {:?}", bound_once(&history));
        }
    }

    #[test]
    fn versions_read_uid_and_node_from_the_stored_json() {
        let p = version_of(7, "/registry/pods/d/p", br#"{"metadata":{"uid":"u1"},"spec":{"nodeName":"n1"}}"#, false);
        assert_eq!((p.uid.as_str(), p.node.as_deref()), ("u1", Some("n1")));
        assert_eq!(version_of(7, "k", br#"{"metadata":{"uid":"u1"},"spec":{}}"#, false).node, None);
    }
}
