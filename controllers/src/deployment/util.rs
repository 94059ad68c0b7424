//! Deployment arithmetic and bookkeeping without I/O (kube's `deployment/util`):
//! maxSurge/maxUnavailable resolution (surge rounded up, unavailable rounded down, both zero →
//! unavailable 1), the new ReplicaSet's next size, proportional scaling, revisions and the
//! annotations a Deployment copies to its ReplicaSets, the pod-template hash, and template
//! equality ignoring that hash.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use std::collections::BTreeMap;

/// `deployment.kubernetes.io/revision`: a ReplicaSet's place in its Deployment's rollouts.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// `deployment.kubernetes.io/revision-history`: older revisions a rolled-back-to ReplicaSet had.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `deployment.kubernetes.io/desired-replicas`: the Deployment's replicas when last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `deployment.kubernetes.io/max-replicas`: replicas + maxSurge when last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label (and selector term) that tells a Deployment's ReplicaSets apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// kubectl's last-applied annotation, never copied to ReplicaSets.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The deprecated rollback annotation, never copied.
pub const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Longest revision-history annotation kube keeps (characters).
pub const MAX_REV_HISTORY_CHARS: usize = 2000;

/// `spec.replicas` (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas` (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// True for `RollingUpdate` (the default strategy).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// `intstr.GetScaledValueFromIntOrPercent`: an int as is, "N%" of `total` rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%') else {
                return Err(format!("invalid value for IntOrString: invalid type: string is not a percentage: {s:?}"));
            };
            let pct: i64 = p.parse().map_err(|_| format!("invalid value {s:?}: not a percentage"))?;
            let num = pct * i64::from(total);
            let v = if round_up { (num + 99).div_euclid(100) } else { num.div_euclid(100) };
            Ok(v as i32)
        }
    }
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable) of `desired` replicas.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        // Validation forbids both zero, but rounding down can give it: allow one unavailable.
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = ru.map(|r| r.max_surge.as_ref()).unwrap_or(Some(&default));
    let unav = ru.map(|r| r.max_unavailable.as_ref()).unwrap_or(Some(&default));
    resolve_fenceposts(surge, unav, replicas(d)).unwrap_or((0, 1))
}

/// `MaxSurge`: 0 unless rolling.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// `MaxUnavailable`: 0 unless rolling with replicas > 0; never more than replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// `NewRSNewReplicas`: the size the new ReplicaSet may grow to now, given the sum of all
/// ReplicaSets' `spec.replicas` and the new one's.
pub fn new_rs_new_replicas(d: &Deployment, all_replicas: i32, new_rs_replicas: i32) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let max_total = replicas(d) + max_surge(d);
    if all_replicas >= max_total {
        return new_rs_replicas;
    }
    let up = (max_total - all_replicas).min(replicas(d) - new_rs_replicas);
    new_rs_replicas + up
}

/// Integer annotation `key` of `rs`.
pub fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// `GetProportion`: how many replicas `rs` (of size `rs_size`, annotated max `annotated`)
/// takes of `to_add` when `added` were already handed out.
pub fn proportion(rs_size: i32, annotated_max: Option<i32>, d: &Deployment, status_replicas: i32, to_add: i32, added: i32) -> i32 {
    if rs_size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -rs_size
    } else {
        let deployment_replicas = replicas(d) + max_surge(d);
        let annotated = annotated_max.unwrap_or(status_replicas);
        if annotated == 0 {
            0
        } else {
            let size = f64::from(rs_size) * f64::from(deployment_replicas) / f64::from(annotated);
            size.round() as i32 - rs_size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

/// A ReplicaSet's view for [`proportional_sizes`].
#[derive(Clone, Debug)]
pub struct Sized {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `deployment.kubernetes.io/max-replicas`.
    pub annotated_max: Option<i32>,
    /// Creation time (older first when scaling down, newer first when scaling up).
    pub created: Option<Timestamp>,
    /// Name (tie-break).
    pub name: String,
}

/// kube's `scale` for a rolling Deployment with several active ReplicaSets: distributes
/// `replicas + maxSurge − Σreplicas` over `active` proportionally (larger first; on equal size
/// newer first when adding, older first when removing), leftovers to the first. Returns the
/// new sizes, in `active`'s order.
pub fn proportional_sizes(d: &Deployment, status_replicas: i32, active: &[Sized]) -> Vec<i32> {
    let total: i32 = active.iter().map(|r| r.replicas).sum();
    let allowed = if replicas(d) > 0 { replicas(d) + max_surge(d) } else { 0 };
    let to_add = allowed - total;
    let mut order: Vec<usize> = (0..active.len()).collect();
    if to_add > 0 {
        // ReplicaSetsBySizeNewer: larger first, then newer.
        order.sort_by(|&a, &b| {
            active[b]
                .replicas
                .cmp(&active[a].replicas)
                .then_with(|| active[b].created.cmp(&active[a].created))
                .then_with(|| active[a].name.cmp(&active[b].name))
        });
    } else if to_add < 0 {
        // ReplicaSetsBySizeOlder: larger first, then older.
        order.sort_by(|&a, &b| {
            active[b]
                .replicas
                .cmp(&active[a].replicas)
                .then_with(|| active[a].created.cmp(&active[b].created))
                .then_with(|| active[a].name.cmp(&active[b].name))
        });
    }
    let mut sizes: Vec<i32> = active.iter().map(|r| r.replicas).collect();
    let mut added = 0;
    if to_add != 0 {
        for &i in &order {
            let p = proportion(active[i].replicas, active[i].annotated_max, d, status_replicas, to_add, added);
            sizes[i] += p;
            added += p;
        }
        if let Some(&first) = order.first() {
            sizes[first] = (sizes[first] + to_add - added).max(0);
        }
    }
    sizes
}

/// `Revision`: the revision annotation of an object (0 when absent or not a number).
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations.and_then(|a| a.get(REVISION)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `MaxRevision` over `rss`.
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter().map(|r| revision(r.metadata.annotations.as_ref())).max().unwrap_or(0)
}

fn skip_copy(key: &str) -> bool {
    matches!(key, LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | DEPRECATED_ROLLBACK_TO)
}

/// `SetReplicasAnnotations`: desired- and max-replicas; true when they changed.
pub fn set_replicas_annotations(ann: &mut BTreeMap<String, String>, desired: i32, max: i32) -> bool {
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        if ann.get(k).map(String::as_str) != Some(v.to_string().as_str()) {
            ann.insert(k.into(), v.to_string());
            changed = true;
        }
    }
    changed
}

/// True when [`set_replicas_annotations`] would change `rs`.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let mut a = rs.metadata.annotations.clone().unwrap_or_default();
    set_replicas_annotations(&mut a, desired, max)
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations (but kube's skip list),
/// raises the revision to `new_revision` when lower (keeping the old one in revision-history,
/// within [`MAX_REV_HISTORY_CHARS`]), and for a ReplicaSet about to be created (`!exists`) sets
/// desired/max replicas. True when anything changed.
pub fn set_new_rs_annotations(d: &Deployment, ann: &mut BTreeMap<String, String>, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = ann.get(REVISION).cloned();
    let old_n: i64 = match &old {
        None => 0,
        Some(s) => match s.parse() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_n < new_revision {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = ann.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                ann.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    parts = parts.split_off(start);
                    parts.push(&old);
                    ann.insert(REVISION_HISTORY.into(), parts.join(","));
                }
            }
        }
    }
    if !exists && set_replicas_annotations(ann, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Drops empty maps, empty lists and nulls (Go's semantic equality treats nil and empty alike).
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                normalize(x);
            }
            m.retain(|_, x| !(x.is_null() || x.as_object().is_some_and(|o| o.is_empty()) || x.as_array().is_some_and(|a| a.is_empty())));
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn template_value(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    normalize(&mut v);
    v
}

/// `EqualIgnoreHash`: the templates are semantically equal apart from the hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    template_value(a) == template_value(b)
}

/// `ComputeHash`: fnv-32a of the template (and collisionCount), encoded with
/// `rand.SafeEncodeString`'s alphabet. Stable for equal templates; not byte-identical to
/// kube's (which hashes Go's struct dump), which nothing outside the controller reads.
pub fn pod_template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(&template_value(t)).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |b: u8| {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    };
    bytes.iter().for_each(|b| feed(*b));
    if let Some(c) = collision_count {
        let mut le = [0u8; 8];
        le[..4].copy_from_slice(&(c as u32).to_le_bytes());
        le.iter().for_each(|b| feed(*b));
    }
    safe_encode(&h.to_string())
}

/// `rand.SafeEncodeString`: maps each byte into consonants and digits that spell no words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

#[cfg(test)]
#[path = "util_tests.rs"]
mod tests;
