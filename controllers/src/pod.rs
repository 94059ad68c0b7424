//! What controllers need to know about a pod, without I/O: active, ready, available after
//! `minReadySeconds`, and kube's ranking of which pods to delete first when scaling down
//! (`controller.ActivePodsWithRanks`, with the PodDeletionCost and LogarithmicScaleDown
//! behaviour Kubernetes enables by default).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use std::cmp::Ordering;

/// Annotation that makes a pod cheaper (lower) or dearer (higher) to delete.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The pod's phase (`Pending` when unset, as the apiserver defaults it).
pub fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// The node the pod is bound to ("" when unscheduled).
pub fn node_name(p: &Pod) -> &str {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Not terminal and not being deleted (`controller.IsPodActive`).
pub fn is_active(p: &Pod) -> bool {
    let ph = phase(p);
    ph != "Succeeded" && ph != "Failed" && p.metadata.deletion_timestamp.is_none()
}

/// The pod's `Ready` condition.
pub fn ready_condition(p: &Pod) -> Option<&PodCondition> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// `Ready` is `True`.
pub fn is_ready(p: &Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

/// When the pod became ready, if it is.
pub fn ready_since(p: &Pod) -> Option<Timestamp> {
    ready_condition(p).filter(|c| c.status == "True").and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` at `now` (`podutil.IsPodAvailable`).
pub fn is_available(p: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(p) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(p) {
        Some(t) => t.as_second() + i64::from(min_ready_seconds) < now.as_second(),
        None => false,
    }
}

fn phase_ordinal(p: &Pod) -> u8 {
    match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata.annotations.as_ref().and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn created(p: &Pod) -> Option<Timestamp> {
    p.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// floor(log2(now − t)) in nanoseconds, −1 when `t` is not in the past.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d <= 0 { -1 } else { 127 - i64::from(d.leading_zeros()) }
}

/// "t1 should go first" for timestamps: empty first, then the later one.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (None, _) | (_, None) => t1.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

fn newer_first(t1: Option<Timestamp>, t2: Option<Timestamp>, now: Timestamp, a: &Pod, b: &Pod) -> bool {
    match (t1, t2) {
        (Some(x), Some(y)) => {
            let diff = log_rank(x, now) - log_rank(y, now);
            if diff == 0 { a.metadata.uid < b.metadata.uid } else { diff < 0 }
        }
        _ => after_or_zero(t1, t2),
    }
}

/// kube's `ActivePodsWithRanks.Less`: true when `a` should be deleted before `b`. `rank_*` is the
/// number of related active pods on the same node (doubled-up pods go first).
pub fn delete_before(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> bool {
    let (na, nb) = (node_name(a), node_name(b));
    // 1. Unassigned < assigned.
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    // 2. Pending < Unknown < Running.
    if phase_ordinal(a) != phase_ordinal(b) {
        return phase_ordinal(a) < phase_ordinal(b);
    }
    // 3. Not ready < ready.
    if is_ready(a) != is_ready(b) {
        return !is_ready(a);
    }
    // 4. Lower deletion cost < higher.
    if deletion_cost(a) != deletion_cost(b) {
        return deletion_cost(a) < deletion_cost(b);
    }
    // 5. Doubled up < not doubled up.
    if rank_a != rank_b {
        return rank_a > rank_b;
    }
    // 6. Ready for less time < more time (logarithmic buckets).
    if is_ready(a) && is_ready(b) {
        let (ra, rb) = (ready_since(a), ready_since(b));
        if ra != rb {
            return newer_first(ra, rb, now, a, b);
        }
    }
    // 7. More restarts < fewer.
    if max_restarts(a) != max_restarts(b) {
        return max_restarts(a) > max_restarts(b);
    }
    // 8. Empty creation time < newer < older (logarithmic buckets).
    let (ca, cb) = (created(a), created(b));
    if ca != cb {
        return newer_first(ca, cb, now, a, b);
    }
    false
}

/// The `count` pods of `pods` to delete first. `related` are the active pods of every
/// ReplicaSet with the same owner (for the doubled-up rank); pass `pods` when there are none.
pub fn pick_for_deletion<'a>(pods: &[&'a Pod], related: &[&Pod], count: usize, now: Timestamp) -> Vec<&'a Pod> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node_name(p)).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (*p, on_node.get(node_name(p)).copied().unwrap_or(0))).collect();
    ranked.sort_by(|(a, ra), (b, rb)| {
        if delete_before(a, *ra, b, *rb, now) {
            Ordering::Less
        } else if delete_before(b, *rb, a, *ra, now) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// name, node, phase, ready since (seconds), restarts, created (seconds).
    fn pod(name: &str, node: &str, ph: &str, ready: Option<i64>, restarts: i32, created: i64) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.creation_timestamp = Some(Time(ts(created)));
        p.spec = Some(PodSpec { node_name: (!node.is_empty()).then(|| node.to_string()), ..Default::default() });
        let conditions = ready.map(|r| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(r))),
                ..Default::default()
            }]
        });
        let statuses = Some(vec![ContainerStatus { name: "c".into(), restart_count: restarts, ..Default::default() }]);
        p.status = Some(PodStatus { phase: Some(ph.into()), conditions, container_statuses: statuses, ..Default::default() });
        p
    }

    fn names(v: &[&Pod]) -> Vec<String> {
        v.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
    }

    // Cases from kubernetes/pkg/controller/controller_utils_test.go TestSortingActivePods and
    // TestSortingActivePodsWithRanks: each row is (first to delete, then) pairs.
    #[test]
    fn ranking_prefers_unscheduled_pending_unready_doubled_up_young_restarting_new_pods() {
        let now = ts(1_000_000);
        let rows: Vec<(&str, Pod, usize, Pod, usize)> = vec![
            ("unassigned before assigned", pod("a", "", "Pending", None, 0, 0), 0, pod("b", "n1", "Pending", None, 0, 0), 0),
            ("pending before running", pod("a", "n1", "Pending", None, 0, 0), 0, pod("b", "n1", "Running", None, 0, 0), 0),
            ("unknown before running", pod("a", "n1", "Unknown", None, 0, 0), 0, pod("b", "n1", "Running", None, 0, 0), 0),
            ("not ready before ready", pod("a", "n1", "Running", None, 0, 0), 0, pod("b", "n1", "Running", Some(10), 0, 0), 0),
            ("doubled up before alone", pod("a", "n1", "Running", Some(10), 0, 0), 2, pod("b", "n2", "Running", Some(10), 0, 0), 1),
            (
                "ready for less time before more (other log bucket)",
                pod("a", "n1", "Running", Some(999_990), 0, 0),
                0,
                pod("b", "n1", "Running", Some(10), 0, 0),
                0,
            ),
            ("more restarts before fewer", pod("a", "n1", "Running", Some(10), 5, 0), 0, pod("b", "n1", "Running", Some(10), 1, 0), 0),
            (
                "newer before older (other log bucket)",
                pod("a", "n1", "Running", Some(10), 0, 999_000),
                0,
                pod("b", "n1", "Running", Some(10), 0, 10),
                0,
            ),
        ];
        for (what, a, ra, b, rb) in rows {
            assert!(delete_before(&a, ra, &b, rb, now), "{what}");
            assert!(!delete_before(&b, rb, &a, ra, now), "{what} (reversed)");
        }
    }

    #[test]
    fn deletion_cost_wins_over_rank_and_age() {
        let now = ts(1_000_000);
        let mut cheap = pod("cheap", "n1", "Running", Some(10), 0, 10);
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-5".to_string())].into());
        let young = pod("young", "n1", "Running", Some(999_999), 3, 999_999);
        assert!(delete_before(&cheap, 0, &young, 5, now));
    }

    #[test]
    fn same_log_bucket_falls_back_to_uid_order() {
        let now = ts(1_000_000);
        // 100 s and 101 s ago are in the same power-of-two bucket of nanoseconds.
        let a = pod("a", "n1", "Running", Some(10), 0, now.as_second() - 100);
        let b = pod("b", "n1", "Running", Some(10), 0, now.as_second() - 101);
        assert!(delete_before(&a, 0, &b, 0, now));
        assert!(!delete_before(&b, 0, &a, 0, now));
    }

    #[test]
    fn pick_for_deletion_takes_the_least_valuable() {
        let now = ts(1_000_000);
        let pods = [
            pod("running-old", "n1", "Running", Some(10), 0, 10),
            pod("pending", "n2", "Pending", None, 0, 20),
            pod("unscheduled", "", "Pending", None, 0, 30),
            pod("running-new", "n3", "Running", Some(999_900), 0, 999_900),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(names(&pick_for_deletion(&refs, &refs, 3, now)), ["unscheduled", "pending", "running-new"]);
        assert_eq!(pick_for_deletion(&refs, &refs, 9, now).len(), 4);
    }

    #[test]
    fn availability_needs_min_ready_seconds_of_readiness() {
        let p = pod("a", "n1", "Running", Some(100), 0, 0);
        assert!(is_available(&p, 0, ts(100)));
        assert!(!is_available(&p, 10, ts(110)), "strictly after, as kube's Before");
        assert!(is_available(&p, 10, ts(111)));
        assert!(!is_available(&pod("b", "n1", "Running", None, 0, 0), 0, ts(1)));
    }

    #[test]
    fn terminal_and_deleted_pods_are_not_active() {
        assert!(is_active(&pod("a", "n", "Running", None, 0, 0)));
        assert!(!is_active(&pod("a", "n", "Succeeded", None, 0, 0)));
        assert!(!is_active(&pod("a", "n", "Failed", None, 0, 0)));
        let mut d = pod("a", "n", "Running", None, 0, 0);
        d.metadata.deletion_timestamp = Some(Time(ts(5)));
        assert!(!is_active(&d));
    }
}
