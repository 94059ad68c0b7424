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
use super::history::{ObjKind, Version, Written};
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

/// Violations of "a pod is bound at most once and never rebound": once a pod's `nodeName` is
/// set it never changes (to another node or back to none) while the pod exists.
pub fn bound_once(history: &[Version]) -> Vec<String> {
    let mut bound: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    let mut out = Vec::new();
    for v in history.iter().filter(|v| !v.deleted && v.kind == ObjKind::Pod) {
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

/// The image of the user's `n`th template.
fn image(n: u64) -> String {
    format!("registry.k8s.io/keel-sim/web:v{n}")
}

/// The user's pod template: `image`, asking for `cpu`.
fn template(name: &str, image: &str, cpu: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "web", "image": image, "resources": {"requests": {"cpu": cpu}}}]}
    })
}

fn deployment(name: &str, replicas: i32, image: &str, cpu: &str) -> Result<Deployment, String> {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(name, image, cpu)}
    }))
    .map_err(|e| e.to_string())
}

/// The burst Deployment's name.
const BURST: &str = "burst";

/// The burst Deployment: as many pods as [`super::BURST_NODES`] hold, each asking for its
/// share of a node, selecting and tolerating only those nodes.
fn burst_deployment() -> Result<Deployment, String> {
    let key = super::BURST_KEY;
    let replicas = super::BURST_NODES.len() as u32 * super::BURST_PER_NODE;
    let cpu = format!("{}m", super::NODE_CPU / super::BURST_PER_NODE);
    let mut template = template(BURST, &image(0), &cpu);
    template["spec"]["nodeSelector"] = json!({ key: "true" });
    template["spec"]["tolerations"] = json!([{"key": key, "operator": "Exists", "effect": "NoSchedule"}]);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": BURST, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": BURST}}, "template": template}
    }))
    .map_err(|e| e.to_string())
}

/// What the user does: when.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// First request.
    pub start: Duration,
    /// Changes stop; the final spec is set and the convergence check starts.
    pub settle: Duration,
    /// The convergence check gives up.
    pub deadline: Duration,
    /// The nodes scenario's cut: the Deployments must converge on the other nodes before it
    /// heals.
    pub cut: Option<Cut>,
    /// The CPU each pod asks for.
    pub pod_cpu: &'static str,
    /// The `controlplane` scenario: also create the burst Deployment ([`super::BURST_NODES`]),
    /// never changed afterwards.
    pub burst: bool,
}

/// A kubelet host cut off from the apiservers.
#[derive(Clone, Debug)]
pub struct Cut {
    /// It starts.
    pub from: Duration,
    /// It heals.
    pub until: Duration,
    /// The nodes it cuts off.
    pub nodes: Vec<String>,
}

/// One change the user makes to a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Scale(i32),
    /// A rolling update to a new template (a new image).
    Rollout(String),
    /// `kubectl rollout undo`: the template of the ReplicaSet of the revision before the
    /// current one.
    Undo,
    /// The final spec: replicas and template both.
    Final(i32, String),
}

/// Creates `d` (called `name`, asking `replicas` of `image(0)`) until it is created or already
/// exists (409), half a second between tries; every try is recorded.
async fn create_until_done(rec: &Rc<RefCell<Record>>, api: &Api<Deployment>, d: &Deployment, name: &str, replicas: i32) {
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), api.create(&PostParams::default(), d)).await;
        let ok = match &r {
            Ok(Ok(_)) => true,
            Ok(Err(kube::Error::Api(s))) => s.code == 409,
            _ => false,
        };
        let at = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        rec.borrow_mut().user.push(format!("{at} ms create {name} replicas {replicas}: {}", outcome(&r)));
        written(rec, name, &r, (replicas, image(0)));
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The user: creates `count` Deployments, then until `settle` scales them, rolls them out to a
/// new image and rolls them back at random, sets the final spec once more (acknowledged), then
/// waits for every Deployment to converge. Every write of a spec is recorded in
/// `Record::writes` (acknowledged with its resourceVersion, or sent without an answer).
pub async fn user(rec: Rc<RefCell<Record>>, apiservers: Vec<SocketAddr>, seed: u64, count: usize, when: Schedule) -> turmoil::Result {
    let client = super::net::kube_client("user", ApiConnector::new(apiservers, 0))?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut rng = SplitMix64(seed);
    tokio::time::sleep(when.start).await;
    let names: Vec<String> = (0..count).map(|i| format!("web-{i}")).collect();
    let mut desired: BTreeMap<String, (i32, String)> = BTreeMap::new();
    let mut images = 0;
    // Bigger jumps where nodes have room (a ReplicaSet creating several pods at once is where
    // a controller without expectations over-creates).
    let max_replicas: i32 = if when.cut.is_some() { 2 } else { 6 };
    for name in &names {
        let replicas = 1 + (rng.next_u64() % max_replicas.min(4) as u64) as i32;
        let d = deployment(name, replicas, &image(0), when.pod_cpu)?;
        create_until_done(&rec, &api, &d, name, replicas).await;
        desired.insert(name.clone(), (replicas, image(0)));
    }
    // The burst: created once, at its full size, and left alone (the changes below pick only
    // the `web-*` Deployments); it joins `desired` after their final spec.
    let burst = if when.burst {
        let d = burst_deployment()?;
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        create_until_done(&rec, &api, &d, BURST, replicas).await;
        Some((replicas, image(0)))
    } else {
        None
    };
    while turmoil::sim_elapsed().unwrap_or_default() < when.settle {
        let pause = Duration::from_millis(1000 + rng.next_u64() % 3000);
        // In `nodes` the changes end by `settle`, 4 s before the cut, so the final spec's pods
        // are placed before it starts; a pause that ran past `settle` put the last change up to
        // 4 s later (seed 63: web-0 scaled to 0 100 ms before the cut, and nothing ran on the
        // cut nodes when it started). In `controlplane` the last change may land after the
        // faults stop, as before (its draws are unchanged).
        if when.cut.is_some() && turmoil::sim_elapsed().unwrap_or_default() + pause > when.settle {
            break;
        }
        tokio::time::sleep(pause).await;
        let name = &names[(rng.next_u64() % count as u64) as usize];
        let change = match rng.next_u64() % 10 {
            // The nodes scenario only scales (see `NodeTimings::pod_cpu`).
            _ if when.cut.is_some() => Change::Scale((rng.next_u64() % (max_replicas as u64 + 1)) as i32),
            0..=4 => Change::Scale((rng.next_u64() % (max_replicas as u64 + 1)) as i32),
            5..=7 => {
                images += 1;
                Change::Rollout(image(images))
            }
            _ => Change::Undo,
        };
        let want = desired.get(name).cloned().unwrap_or_default();
        change_one(&rec, &api, name, change, want, &mut desired, when.pod_cpu).await;
    }
    // The nodes scenario's cut starts with every Deployment at its largest, so the cut nodes
    // run some of its pods.
    if when.cut.is_some() {
        for (replicas, _) in desired.values_mut() {
            *replicas = max_replicas;
        }
    }
    // The final spec, acknowledged.
    for (name, (replicas, image)) in desired.clone() {
        loop {
            let change = Change::Final(replicas, image.clone());
            if change_one(&rec, &api, &name, change, (replicas, image.clone()), &mut desired, when.pod_cpu).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if let Some(b) = burst {
        desired.insert(BURST.to_string(), b);
    }
    rec.borrow_mut().desired = desired.clone();
    if let Some(cut) = &when.cut {
        let verdict = converge_during(&client, &desired, cut).await;
        rec.borrow_mut().during = Some(verdict);
        tokio::time::sleep(cut.until.saturating_sub(turmoil::sim_elapsed().unwrap_or_default())).await;
    }
    let settled = turmoil::sim_elapsed().unwrap_or_default();
    loop {
        let state = match observe(&client, &desired, &[]).await {
            Ok(()) => nodes_ready(&client).await,
            Err(e) => Err(e),
        };
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

/// Whether every Deployment converges on the nodes `cut` leaves while it lasts (its pods on
/// the cut nodes evicted and replaced on the others).
async fn converge_during(client: &kube::Client, desired: &BTreeMap<String, (i32, String)>, cut: &Cut) -> Result<String, String> {
    let mut why = "never checked".to_string();
    loop {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        if now >= cut.until {
            return Err(format!("not converged on the other nodes before the cut healed: {why}"));
        }
        match observe(client, desired, &cut.nodes).await {
            Ok(()) if now >= cut.from => {
                return Ok(format!("converged on the other nodes {} ms into the cut", (now - cut.from).as_millis()));
            }
            Ok(()) => why = "converged before the cut".into(),
            Err(e) => why = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether every node is Ready without a `not-ready` or `unreachable` taint.
async fn nodes_ready(client: &kube::Client) -> Result<(), String> {
    use k8s_openapi::api::core::v1::Node;
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.map_err(|e| format!("list nodes: {e}"))?;
    if list.items.len() != super::KUBELETS * super::NODES_PER_KUBELET {
        return Err(format!("{} nodes registered", list.items.len()));
    }
    for n in &list.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let ready = n.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        if ready.map(|c| c.status.as_str()) != Some("True") {
            return Err(format!("node {name} is not Ready: {:?}", ready.map(|c| (&c.status, &c.reason))));
        }
        let taints = n.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten();
        if let Some(t) = taints.into_iter().find(|t| t.key == "node.kubernetes.io/unreachable" || t.key == "node.kubernetes.io/not-ready") {
            return Err(format!("node {name} is still tainted {}:{}", t.key, t.effect));
        }
    }
    Ok(())
}

/// Makes `change` to Deployment `name` (whose spec the user believes is `want`), records it,
/// and updates `desired` to what the user now wants; whether it was acknowledged.
async fn change_one(
    rec: &Rc<RefCell<Record>>,
    api: &Api<Deployment>,
    name: &str,
    change: Change,
    want: (i32, String),
    desired: &mut BTreeMap<String, (i32, String)>,
    cpu: &str,
) -> bool {
    let now_ms = || turmoil::sim_elapsed().unwrap_or_default().as_millis();
    let (replicas, image) = want;
    let (patch, after) = match &change {
        Change::Scale(n) => (json!({"spec": {"replicas": n}}), (*n, image)),
        Change::Rollout(i) => (json!({"spec": {"template": template(name, i, cpu)}}), (replicas, i.clone())),
        Change::Final(n, i) => (json!({"spec": {"replicas": n, "template": template(name, i, cpu)}}), (*n, i.clone())),
        Change::Undo => match tokio::time::timeout(Duration::from_secs(5), previous_template(api, name)).await {
            Ok(Ok(Some(t))) => {
                let i = t["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string();
                (json!({"spec": {"template": t}}), (replicas, i))
            }
            other => {
                let why = match other {
                    Ok(Ok(_)) => "no earlier revision".to_string(),
                    Ok(Err(e)) => e,
                    Err(_) => "timed out".into(),
                };
                rec.borrow_mut().user.push(format!("{} ms undo {name}: {why}", now_ms()));
                return false;
            }
        },
    };
    let r = tokio::time::timeout(Duration::from_secs(5), api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))).await;
    rec.borrow_mut().user.push(format!("{} ms {change:?} {name} (now {after:?}): {}", now_ms(), outcome(&r)));
    written(rec, name, &r, after.clone());
    desired.insert(name.to_string(), after);
    matches!(r, Ok(Ok(_)))
}

/// Records a write of Deployment `name`'s spec: with the stored values the answer names when
/// acknowledged, else what the user meant to set.
fn written(rec: &Rc<RefCell<Record>>, name: &str, r: &Result<kube::Result<Deployment>, tokio::time::error::Elapsed>, meant: (i32, String)) {
    let key = format!("/registry/deployments/default/{name}");
    let w = match r {
        Ok(Ok(d)) => {
            let spec = d.spec.as_ref();
            Written {
                key,
                revision: d.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
                replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
                image: spec
                    .and_then(|s| s.template.spec.as_ref())
                    .and_then(|p| p.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default(),
            }
        }
        // Refused for sure: nothing was written.
        Ok(Err(kube::Error::Api(s))) if s.code < 500 => return,
        _ => Written { key, revision: 0, replicas: meant.0, image: meant.1 },
    };
    rec.borrow_mut().writes.push(w);
}

/// `kubectl rollout undo`'s choice: the pod template of the Deployment's ReplicaSet with the
/// highest revision below the current one, without its `pod-template-hash` label.
async fn previous_template(api: &Api<Deployment>, name: &str) -> Result<Option<serde_json::Value>, String> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    const REVISION: &str = "deployment.kubernetes.io/revision";
    let d = api.get(name).await.map_err(|e| format!("get: {e}"))?;
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let rss: Api<ReplicaSet> = Api::namespaced(api.clone().into_client(), "default");
    let list = rss.list(&ListParams::default().labels(&format!("app={name}"))).await.map_err(|e| format!("list: {e}"))?;
    let revision = |a: Option<&BTreeMap<String, String>>| a.and_then(|a| a.get(REVISION)).and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
    let current = revision(d.metadata.annotations.as_ref());
    let owned =
        list.items.into_iter().filter(|r| r.metadata.owner_references.iter().flatten().any(|o| o.uid == uid && o.controller == Some(true)));
    let previous = owned
        .map(|r| (revision(r.metadata.annotations.as_ref()), r))
        .filter(|(rev, _)| *rev < current && *rev > 0)
        .max_by_key(|(rev, _)| *rev);
    let Some((_, rs)) = previous else { return Ok(None) };
    let Some(t) = rs.spec.map(|s| s.template) else { return Ok(None) };
    let mut t = serde_json::to_value(t).map_err(|e| e.to_string())?;
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    Ok(Some(t))
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
/// each bound (to none of `avoid`), running, with the wanted image.
async fn observe(client: &kube::Client, desired: &BTreeMap<String, (i32, String)>, avoid: &[String]) -> Result<(), String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, (want, image)) in desired {
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
        let stored =
            d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.containers.first()).and_then(|c| c.image.as_deref());
        if stored != Some(image.as_str()) {
            return Err(format!("{name} wants image {image}: its template has {stored:?}"));
        }
        if got != (true, *want, *want, *want, *want) {
            return Err(format!("{name} wants {want}: status (observed current, replicas, updated, ready, available) {got:?}"));
        }
        let list =
            pods.list(&ListParams::default().labels(&format!("app={name}"))).await.map_err(|e| format!("list pods of {name}: {e}"))?;
        let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        if let Some(p) = live.iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| avoid.contains(n))) {
            return Err(format!("{name}: pod {} is still live on a cut node", p.metadata.name.clone().unwrap_or_default()));
        }
        let running = live
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                    && p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.as_deref()) == Some(image.as_str())
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .count();
        if live.len() != *want as usize || running != *want as usize {
            return Err(format!("{name} wants {want}: {} pods, {running} bound and running {image}", live.len()));
        }
    }
    Ok(())
}

/// Whether the cut (from `from` to `until` ms, of `nodes`) had something to evict: some pod
/// was active on a cut node when it started, or was placed on one while it lasted (the
/// scheduler sees a cut node Ready until its grace period has passed, and such a pod needs
/// evicting just the same: seed 63's two did, 12.5 s into the cut). Times are the history's
/// arrival times.
pub fn evicted(history: &[Version], from: u128, until: u128, nodes: &[String]) -> Result<(), String> {
    let on_cut = |v: &Version| v.kind == ObjKind::Pod && v.active && v.node.as_ref().is_some_and(|n| nodes.contains(n));
    let mut last: BTreeMap<&str, &Version> = BTreeMap::new();
    for v in history.iter().filter(|v| v.kind == ObjKind::Pod && v.at_ms <= from) {
        last.insert(v.uid.as_str(), v);
    }
    let at_start = last.values().filter(|&&v| on_cut(v)).count();
    let placed_during = history.iter().filter(|&v| v.at_ms > from && v.at_ms < until && on_cut(v)).count();
    if at_start + placed_during == 0 {
        return Err(format!("no pod was running on {nodes:?} when they were cut off at {from} ms, nor placed there before {until} ms"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(revision: i64, uid: &str, node: Option<&str>, deleted: bool) -> Version {
        Version {
            revision,
            at_ms: 0,
            kind: ObjKind::Pod,
            key: format!("/registry/pods/default/{uid}"),
            uid: uid.into(),
            deleted,
            node: node.map(str::to_string),
            active: !deleted,
            owner: None,
            replicas: 0,
            max_surge: 0,
            image: None,
            cpu_millis: 0,
            terminal: false,
        }
    }

    #[test]
    fn the_cut_had_something_to_evict() {
        let at = |at_ms: u128, v: Version| Version { at_ms, ..v };
        let cut = ["n1".to_string()];
        let cases: Vec<(&str, Vec<Version>, bool)> = vec![
            ("running on a cut node when it started", vec![at(5, v(1, "a", Some("n1"), false))], true),
            ("placed on a cut node while it lasted", vec![at(5, v(1, "a", Some("n2"), false)), at(15, v(2, "b", Some("n1"), false))], true),
            (
                "gone from the cut node before it started",
                vec![at(5, v(1, "a", Some("n1"), false)), at(8, v(2, "a", Some("n1"), true))],
                false,
            ),
            ("only on the other nodes", vec![at(5, v(1, "a", Some("n2"), false)), at(15, v(2, "b", Some("n2"), false))], false),
            ("placed on a cut node after it healed", vec![at(25, v(1, "a", Some("n1"), false))], false),
            ("not bound while it lasted", vec![at(15, v(1, "a", None, false))], false),
        ];
        for (name, history, ok) in cases {
            assert_eq!(evicted(&history, 10, 20, &cut).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn a_pod_is_bound_once() {
        let cases: Vec<(&str, Vec<Version>, usize)> = vec![
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
}
