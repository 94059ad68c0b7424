//! The store's history of the objects the checkers judge: one etcd watch of `/registry/` from
//! revision 1 with previous values, resumed after every break, keeping every version of every
//! pod, ReplicaSet and Deployment (in revision order, each with the simulated instant the
//! watcher received it). [`rollout_bounds`] and [`lost_writes`] judge it.
//!
//! Invariants:
//! - One stream for the three kinds, so their versions interleave in the store's order.
//! - An object is identified by its uid (a name can be reused by a new object).
//! - The rollout bounds are what the controllers guarantee from their own decisions, given
//!   informers each at most [`STALE`] behind the store: a ReplicaSet never has more active pods
//!   (not terminating, not Succeeded or Failed) right after a pod create than the replicas it
//!   had at some instant within [`STALE`] before; a ReplicaSet scaled up to `n` never makes
//!   `n` plus what its Deployment's other ReplicaSets asked for at some instant within
//!   [`STALE`] before (the least such total; none yet counts 0) more than `replicas + maxSurge`
//!   of a Deployment version current within [`STALE`] before. The other ReplicaSets are taken
//!   as the controller may have seen them, not as the store holds them now: kube's Deployment
//!   controller sizes a new or growing ReplicaSet as `replicas + maxSurge − Σ spec.replicas` of
//!   the ReplicaSets in its lister (`NewRSNewReplicas`), with no expectations for ReplicaSets,
//!   so a ReplicaSet informer that has not yet seen an older ReplicaSet (even one the
//!   controller created itself a moment before) makes it ask for more than the store then
//!   allows, and that is within the staleness this checker grants. Node faults cannot break
//!   either bound (pods that fail or are evicted stop counting); availability
//!   (`maxUnavailable`) they can, so it is not checked.

use super::Record;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// How far behind the store a controller's informer may be when it decides.
pub const STALE: Duration = Duration::from_secs(10);

/// What kind of object a version is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjKind {
    Pod,
    ReplicaSet,
    Deployment,
    Node,
}

/// One version of an object as the store holds it (a deletion carries the previous value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Store revision.
    pub revision: i64,
    /// When the history's watcher received it (simulated ms).
    pub at_ms: u128,
    /// Kind.
    pub kind: ObjKind,
    /// `/registry/pods/<ns>/<name>`.
    pub key: String,
    /// `metadata.uid`.
    pub uid: String,
    /// A deletion.
    pub deleted: bool,
    /// Pod: `spec.nodeName`.
    pub node: Option<String>,
    /// Pod: not terminating, not Succeeded or Failed (kube's `IsPodActive`).
    pub active: bool,
    /// Pod, ReplicaSet: the controller owner's uid.
    pub owner: Option<String>,
    /// ReplicaSet, Deployment: `spec.replicas`.
    pub replicas: i32,
    /// Deployment: `maxSurge` resolved against `replicas`.
    pub max_surge: i32,
    /// Deployment: the first container's image (the template as the user sets it).
    pub image: Option<String>,
    /// Pod: its containers' CPU requests; Node: its allocatable CPU (millicores).
    pub cpu_millis: i64,
    /// Pod: Succeeded or Failed (it holds no resources).
    pub terminal: bool,
}

/// A CPU quantity in millicores (`500m`, `2`, `1.5`); 0 when it does not parse.
pub fn cpu_millis(q: &str) -> i64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => q.parse::<f64>().map(|c| (c * 1000.0).round() as i64).unwrap_or(0),
    }
}

/// `maxSurge` (an int or a percentage, default 25 %) resolved against `replicas`, rounded up
/// as kube's `ResolveFenceposts` does for the surge.
pub fn resolve_surge(v: &serde_json::Value, replicas: i32) -> i32 {
    match v {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0) as i32,
        serde_json::Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => ((p * replicas as i64 + 99) / 100) as i32,
            None => 0,
        },
        _ => (replicas + 3) / 4,
    }
}

/// The version `value` (stored JSON) is of `key`, or None for keys of other kinds.
pub fn version_of(revision: i64, at_ms: u128, key: &str, value: &[u8], deleted: bool) -> Option<Version> {
    let kind = if key.starts_with("/registry/pods/") {
        ObjKind::Pod
    } else if key.starts_with("/registry/replicasets/") {
        ObjKind::ReplicaSet
    } else if key.starts_with("/registry/deployments/") {
        ObjKind::Deployment
    } else if key.starts_with("/registry/nodes/") {
        ObjKind::Node
    } else {
        return None;
    };
    let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
    let owner = v["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|refs| refs.iter().find(|r| r["controller"].as_bool() == Some(true)))
        .and_then(|r| r["uid"].as_str())
        .map(str::to_string);
    let phase = v["status"]["phase"].as_str().unwrap_or_default();
    let replicas = v["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
    let cpu = match kind {
        ObjKind::Node => cpu_millis(v["status"]["allocatable"]["cpu"].as_str().unwrap_or_default()),
        _ => v["spec"]["containers"]
            .as_array()
            .map(|cs| cs.iter().map(|c| cpu_millis(c["resources"]["requests"]["cpu"].as_str().unwrap_or_default())).sum())
            .unwrap_or(0),
    };
    let node = match kind {
        ObjKind::Node => v["metadata"]["name"].as_str(),
        _ => v["spec"]["nodeName"].as_str(),
    };
    Some(Version {
        revision,
        at_ms,
        kind,
        key: key.to_string(),
        uid: v["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        deleted,
        node: node.filter(|n| !n.is_empty()).map(str::to_string),
        active: !deleted && v["metadata"]["deletionTimestamp"].is_null() && phase != "Succeeded" && phase != "Failed",
        owner,
        replicas,
        max_surge: resolve_surge(&v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], replicas),
        image: v["spec"]["template"]["spec"]["containers"][0]["image"].as_str().map(str::to_string),
        cpu_millis: cpu,
        terminal: phase == "Succeeded" || phase == "Failed",
    })
}

/// An object's versions seen so far: (received at, value) in order.
type Timeline = Vec<(u128, i32)>;

/// The largest value a timeline had at any instant in [`at` - [`STALE`], `at`].
fn max_within(t: &Timeline, at: u128) -> i32 {
    let from = at.saturating_sub(STALE.as_millis());
    // The value current at `from` (the last one received at or before it) and every later one.
    let first = t.iter().rposition(|(when, _)| *when <= from).unwrap_or(0);
    t[first..].iter().map(|(_, v)| *v).max().unwrap_or(0)
}

/// A Deployment's ReplicaSets after each change to one of them: (received at, the uid and
/// `spec.replicas` of each existing one it owns).
type Sizes<'a> = Vec<(u128, Vec<(&'a str, i32)>)>;

/// The least total `spec.replicas` the ReplicaSets of `sizes` other than `uid` had at any
/// instant in [`at` - [`STALE`], `at`]: what a controller whose ReplicaSet informer is at most
/// [`STALE`] behind may have counted. 0 when the Deployment had none at the window's start.
fn others_within(sizes: &Sizes<'_>, uid: &str, at: u128) -> i32 {
    let from = at.saturating_sub(STALE.as_millis());
    match sizes.iter().rposition(|(when, _)| *when <= from) {
        Some(first) => {
            sizes[first..].iter().map(|(_, rss)| rss.iter().filter(|(u, _)| *u != uid).map(|(_, r)| *r).sum::<i32>()).min().unwrap_or(0)
        }
        None => 0,
    }
}

/// Violations of the rollout bounds (see the module doc) in `history`.
pub fn rollout_bounds(history: &[Version]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pods: BTreeMap<&str, (&str, bool)> = BTreeMap::new(); // pod uid → (RS uid, active)
    let mut rs_spec: BTreeMap<&str, Timeline> = BTreeMap::new();
    let mut rs_now: BTreeMap<&str, (&str, i32, bool)> = BTreeMap::new(); // RS uid → (Deployment uid, replicas, exists)
    let mut d_sizes: BTreeMap<&str, Sizes<'_>> = BTreeMap::new();
    let mut d_bound: BTreeMap<&str, Timeline> = BTreeMap::new();
    for v in history {
        match v.kind {
            ObjKind::Node => {}
            ObjKind::Deployment => {
                if !v.deleted {
                    d_bound.entry(v.uid.as_str()).or_default().push((v.at_ms, v.replicas + v.max_surge));
                }
            }
            ObjKind::ReplicaSet => {
                let (before, owned_by) = rs_now.get(v.uid.as_str()).map_or((0, ""), |(d, r, _)| (*r, *d));
                let owner = v.owner.as_deref().unwrap_or_default();
                rs_now.insert(v.uid.as_str(), (owner, if v.deleted { 0 } else { v.replicas }, !v.deleted));
                if !v.deleted {
                    rs_spec.entry(v.uid.as_str()).or_default().push((v.at_ms, v.replicas));
                }
                // The Deployments whose ReplicaSets changed: the owner, and the one that owned it
                // before (a release or an adoption moves a ReplicaSet between them).
                let mut changed = vec![owner];
                if owned_by != owner {
                    changed.push(owned_by);
                }
                for d in changed.into_iter().filter(|d| !d.is_empty()) {
                    let now = rs_now.iter().filter(|(_, (o, _, live))| *o == d && *live).map(|(u, (_, r, _))| (*u, *r)).collect();
                    d_sizes.entry(d).or_default().push((v.at_ms, now));
                }
                if !v.deleted && v.replicas > before && !owner.is_empty() {
                    let seen = d_sizes.get(owner).map_or(0, |s| others_within(s, &v.uid, v.at_ms));
                    let total = v.replicas + seen;
                    let bound = d_bound.get(owner).map_or(0, |t| max_within(t, v.at_ms));
                    if total > bound {
                        let stale = STALE.as_secs();
                        out.push(format!(
                            "ReplicaSet {} scaled to {} at revision {}: with the {seen} replicas its Deployment's other ReplicaSets asked for at least at every instant within {stale} s, they ask for {total}, more than replicas + maxSurge ({bound}) of any version of the Deployment within {stale} s",
                            v.key, v.replicas, v.revision
                        ));
                    }
                }
            }
            ObjKind::Pod => {
                let created = !pods.contains_key(v.uid.as_str()) && !v.deleted;
                let owner = v.owner.as_deref().unwrap_or_default();
                pods.insert(v.uid.as_str(), (owner, v.active));
                if created && v.active && !owner.is_empty() {
                    let active = pods.values().filter(|(rs, a)| *rs == owner && *a).count() as i32;
                    let bound = rs_spec.get(owner).map_or(0, |t| max_within(t, v.at_ms));
                    if active > bound {
                        out.push(format!(
                            "pod {} created at revision {} ({} ms) makes {active} active pods of its ReplicaSet (uid {owner}), more than the {bound} replicas it had at any instant within {} s",
                            v.key,
                            v.revision,
                            v.at_ms,
                            STALE.as_secs()
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Violations of "the scheduler never overcommits a node" (what its assume cache is for):
/// whenever a pod is bound, the CPU requests of the pods on its node (bound there, not deleted
/// from the store, not Succeeded or Failed; terminating pods still hold their room, as the
/// scheduler counts them) fit the node's allocatable CPU.
pub fn no_overcommit(history: &[Version]) -> Vec<String> {
    let mut out = Vec::new();
    let mut allocatable: BTreeMap<&str, i64> = BTreeMap::new();
    let mut on: BTreeMap<&str, (&str, i64)> = BTreeMap::new(); // pod uid → (node, cpu)
    for v in history {
        match v.kind {
            ObjKind::Node if !v.deleted => {
                if let Some(n) = &v.node {
                    allocatable.insert(n.as_str(), v.cpu_millis);
                }
            }
            ObjKind::Pod => {
                let bound_now = !on.contains_key(v.uid.as_str());
                match &v.node {
                    Some(n) if !v.deleted && !v.terminal => {
                        on.insert(v.uid.as_str(), (n.as_str(), v.cpu_millis));
                        let Some(room) = allocatable.get(n.as_str()) else { continue };
                        let used: i64 = on.values().filter(|(m, _)| m == n).map(|(_, c)| c).sum();
                        if bound_now && used > *room {
                            out.push(format!(
                                "pod {} bound to {n} at revision {} makes {used}m of CPU requested there, more than its {room}m allocatable",
                                v.key, v.revision
                            ));
                        }
                    }
                    _ => {
                        on.remove(v.uid.as_str());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// An object write the user was told succeeded: the key, the revision the answer named
/// (`resourceVersion`), and what it set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// `/registry/deployments/default/web-0`.
    pub key: String,
    /// The answer's `resourceVersion` (0 when the write was sent but not acknowledged).
    pub revision: i64,
    /// `spec.replicas` written.
    pub replicas: i32,
    /// The image written.
    pub image: String,
}

/// Violations of "no acknowledged write is lost": each acknowledged write is the key's
/// version at its revision, with what it wrote, and each key's last version holds the last
/// acknowledged write's values or those of a write sent after it (acknowledged or not).
pub fn lost_writes(history: &[Version], writes: &[Written]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at: BTreeMap<(&str, i64), &Version> = BTreeMap::new();
    let mut last: BTreeMap<&str, &Version> = BTreeMap::new();
    for v in history.iter().filter(|v| v.kind == ObjKind::Deployment) {
        at.insert((v.key.as_str(), v.revision), v);
        last.insert(v.key.as_str(), v);
    }
    for w in writes.iter().filter(|w| w.revision > 0) {
        match at.get(&(w.key.as_str(), w.revision)) {
            None => out.push(format!("the write of {} acknowledged at revision {} is not in the store's history", w.key, w.revision)),
            Some(v) if v.deleted || v.replicas != w.replicas || v.image.as_deref() != Some(w.image.as_str()) => out.push(format!(
                "the write of {} acknowledged at revision {} (replicas {}, image {}) is stored as replicas {}, image {:?}",
                w.key, w.revision, w.replicas, w.image, v.replicas, v.image
            )),
            Some(_) => {}
        }
    }
    let mut keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    keys.dedup();
    for key in keys {
        let Some(acked) = writes.iter().rposition(|w| w.key == key && w.revision > 0) else { continue };
        let Some(v) = last.get(key) else {
            out.push(format!("{key}: acknowledged writes, but no version in the store's history"));
            continue;
        };
        let holds = writes[acked..]
            .iter()
            .filter(|w| w.key == key)
            .any(|w| !v.deleted && v.replicas == w.replicas && v.image.as_deref() == Some(w.image.as_str()));
        if !holds {
            let w = &writes[acked];
            out.push(format!(
                "{key} ends as replicas {}, image {:?} (revision {}), not as its last acknowledged write (revision {}: replicas {}, image {}) nor any later one",
                v.replicas, v.image, v.revision, w.revision, w.replicas, w.image
            ));
        }
    }
    out
}

/// How long after the user's deadline the history's watch may go on catching up with the store.
pub const CATCH_UP: Duration = Duration::from_secs(10);

/// Watches `/registry/` in the store from revision 1 with previous values, resumed after
/// every break, keeping the versions [`version_of`] knows, until it has delivered the store's
/// revision as read (linearizably) after the user's convergence verdict, and at least a second
/// after the verdict. A watch that has not caught up by `until` is recorded as
/// [`Record::history_behind`]: judged on a history missing its tail, the acknowledged writes
/// of the final spec would look lost.
pub async fn watch(rec: Rc<RefCell<Record>>, members: Vec<SocketAddr>, until: Duration) -> turmoil::Result {
    use futures::StreamExt;
    use keel_etcd::WatchItem;
    let endpoints: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    // The apiservers' keepalives: a stream on a dead member breaks and resumes within seconds.
    let client = super::hosts::store_client(&endpoints, &super::hosts::store_config(Duration::from_secs(3)))?;
    let prefix = b"/registry/".to_vec();
    let end_key = keel_etcd::prefix_end(&prefix);
    let create = keel_etcd::proto::etcdserverpb::WatchCreateRequest {
        range_end: end_key.clone().into(),
        key: prefix.clone().into(),
        start_revision: 1,
        prev_kv: true,
        ..Default::default()
    };
    let mut stream = Box::pin(keel_etcd::Resumable::new(client.clone(), create).into_stream());
    let end = tokio::time::sleep(until.saturating_sub(turmoil::sim_elapsed().unwrap_or_default()));
    tokio::pin!(end);
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut converged_at: Option<Duration> = None;
    // The highest revision the watch has delivered (any key under the prefix), and the store's
    // revision once the verdict is in.
    let mut seen = 0_i64;
    let mut target: Option<i64> = None;
    loop {
        let item = tokio::select! {
            _ = &mut end => {
                if converged_at.is_some() && target.is_none_or(|t| seen < t) {
                    rec.borrow_mut().history_behind = Some((seen, target));
                }
                return Ok(());
            }
            _ = check.tick() => {
                let now = turmoil::sim_elapsed().unwrap_or_default();
                match converged_at {
                    Some(at) => {
                        if target.is_none() {
                            // Bounded by `until` too, so the end is never overrun waiting for it.
                            let left = until.saturating_sub(now);
                            let read = tokio::time::timeout(left.min(Duration::from_secs(2)), client.range(&prefix, &end_key, 0, 1)).await;
                            target = read.ok().and_then(Result::ok).map(|p| p.revision);
                        }
                        if now >= at + Duration::from_secs(1) && target.is_some_and(|t| seen >= t) {
                            return Ok(());
                        }
                    }
                    None if rec.borrow().convergence.is_some() => converged_at = Some(now),
                    None => {}
                }
                continue;
            }
            item = stream.next() => item,
        };
        match item {
            Some(WatchItem::Events(events)) => {
                let at_ms = turmoil::sim_elapsed().unwrap_or_default().as_millis();
                let mut r = rec.borrow_mut();
                for e in events {
                    let deleted = e.r#type == keel_etcd::proto::mvccpb::event::EventType::Delete as i32;
                    let Some(kv) = e.kv.as_ref() else { continue };
                    seen = seen.max(kv.mod_revision);
                    let key = String::from_utf8_lossy(&kv.key);
                    let value = if deleted { e.prev_kv.as_ref().map(|p| p.value.as_ref()).unwrap_or_default() } else { kv.value.as_ref() };
                    if let Some(v) = version_of(kv.mod_revision, at_ms, &key, value, deleted) {
                        r.history.push(v);
                    }
                }
            }
            Some(WatchItem::Progress(at)) => seen = seen.max(at),
            Some(WatchItem::Compacted(at)) => {
                rec.borrow_mut().history_lost = Some(at);
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
