//! The store's own history of pods and ReplicaSets (a keel-etcd watch from revision 1), and the
//! checkers that read it. Each checker states one guarantee and returns the first violation;
//! `tests/leader.rs` proves each able to fail on a history that breaks it.

use futures::StreamExt;
use keel_etcd::proto::etcdserverpb::WatchCreateRequest;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One write in the store: the key, its revision, and the object after it (`None`: deleted).
#[derive(Clone, Debug)]
pub struct Change {
    /// The store revision of the write.
    pub rev: i64,
    /// `/registry/<resource>/<namespace>/<name>`.
    pub key: String,
    /// The object written, `None` for a delete.
    pub value: Option<Value>,
    /// The key did not exist before this write.
    pub created: bool,
}

/// Every change under `prefixes` from revision 1, in revision order.
pub async fn read(etcd_servers: &str, prefixes: &[&str]) -> Vec<Change> {
    let client = keel_etcd::Client::connect(&[etcd_servers.to_string()], &keel_etcd::Config::default(), Arc::new(keel_etcd::Tcp))
        .expect("an etcd client");
    let end = client.revision().await.expect("the store's revision");
    let mut all = Vec::new();
    for prefix in prefixes {
        let create = WatchCreateRequest {
            key: prefix.as_bytes().to_vec().into(),
            range_end: keel_etcd::prefix_end(prefix.as_bytes()).into(),
            start_revision: 1,
            ..Default::default()
        };
        let mut stream = client.watch(create).await.expect("a watch from revision 1");
        // The watch replays history, then waits: stop at the revision read above, or after a
        // quiet second (the last revisions may belong to other prefixes).
        'replay: while let Ok(Some(Ok(resp))) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
            assert_eq!(resp.compact_revision, 0, "the store was compacted: history is incomplete");
            for e in resp.events {
                let Some(kv) = e.kv else { continue };
                let deleted = e.r#type == 1;
                all.push(Change {
                    rev: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: if deleted { None } else { serde_json::from_slice(&kv.value).ok() },
                    created: !deleted && kv.create_revision == kv.mod_revision,
                });
                if kv.mod_revision >= end {
                    break 'replay;
                }
            }
        }
    }
    all.sort_by_key(|c| c.rev);
    all
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn controller_uid(pod: &Value) -> Option<String> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        .map(String::from)
}

fn live(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none() && !matches!(text(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// The state replayed up to some revision: live pods by key (with their controller's uid) and
/// ReplicaSets' `spec.replicas` by uid.
#[derive(Default)]
struct Replay {
    pods: BTreeMap<String, (Option<String>, bool, Value)>,
    rs_replicas: BTreeMap<String, (String, i64)>,
}

impl Replay {
    fn apply(&mut self, c: &Change) {
        if c.key.starts_with("/registry/replicasets/") {
            if let Some(v) = &c.value {
                let uid = text(v, "/metadata/uid").to_string();
                let replicas = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
                self.rs_replicas.insert(uid, (text(v, "/metadata/name").to_string(), replicas));
            }
        } else if c.key.starts_with("/registry/pods/") {
            match &c.value {
                Some(v) => {
                    self.pods.insert(c.key.clone(), (controller_uid(v), live(v), v.clone()));
                }
                None => {
                    self.pods.remove(&c.key);
                }
            }
        }
    }

    fn live_of(&self, rs_uid: &str, except: &str) -> usize {
        self.pods.iter().filter(|(k, (owner, live, _))| k.as_str() != except && *live && owner.as_deref() == Some(rs_uid)).count()
    }

    fn live_matching(&self, selector: &dyn Fn(&Value) -> bool) -> usize {
        self.pods.values().filter(|(_, live, v)| *live && selector(v)).count()
    }
}

/// `every_creation_fills_a_vacancy`: each pod a ReplicaSet owns is created while that
/// ReplicaSet has fewer live pods than its `spec.replicas` (at that revision). A pod created for
/// a slot another pod already fills (two managers acting at once, or a stale cache trusted) is
/// reported with the revision. Returns the number of pod creations checked.
pub fn every_creation_fills_a_vacancy(history: &[Change]) -> Result<usize, String> {
    let mut replay = Replay::default();
    let mut checked = 0;
    for c in history {
        if c.created
            && c.key.starts_with("/registry/pods/")
            && let Some(owner) = c.value.as_ref().and_then(controller_uid)
            && let Some((name, replicas)) = replay.rs_replicas.get(&owner).cloned()
        {
            let before = replay.live_of(&owner, &c.key);
            if before as i64 >= replicas {
                return Err(format!(
                    "rev {}: {} created while ReplicaSet {name} already had {before} live pods of {replicas}",
                    c.rev, c.key
                ));
            }
            checked += 1;
        }
        replay.apply(c);
    }
    Ok(checked)
}

/// `never_more_than_replicas_plus_surge`: at no revision do more than `max` live pods match
/// `selector` (a Deployment's pods across all its ReplicaSets). Returns the highest count seen.
pub fn never_more_than(history: &[Change], max: usize, selector: &dyn Fn(&Value) -> bool) -> Result<usize, String> {
    let mut replay = Replay::default();
    let mut highest = 0;
    for c in history {
        replay.apply(c);
        let n = replay.live_matching(selector);
        if n > max {
            return Err(format!("rev {}: {n} live pods (more than {max}) after {}", c.rev, c.key));
        }
        highest = highest.max(n);
    }
    Ok(highest)
}

/// The revision at which each pod key was created (its first incarnation's, and later ones').
pub fn creations(history: &[Change]) -> Vec<(i64, String)> {
    history.iter().filter(|c| c.created && c.key.starts_with("/registry/pods/")).map(|c| (c.rev, c.key.clone())).collect()
}

/// A pod's labels include `key=value`.
pub fn labelled(key: &'static str, value: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v.pointer("/metadata/labels").and_then(|l| l.get(key)).and_then(Value::as_str) == Some(value)
}
