//! Node conditions as kubelet's `nodestatus` setters write them (pkg/kubelet/nodestatus/setters.go),
//! with its exact reasons and messages, and the rule for when to post them
//! (pkg/kubelet/kubelet_node_status.go): every `nodeStatusUpdateFrequency` (10 s) the status is
//! computed; it is sent when it differs from the last one sent, or when `nodeStatusReportFrequency`
//! (5 min) passed since.
//!
//! Invariant: `lastTransitionTime` moves only when a condition's status changes;
//! `lastHeartbeatTime` moves on every post.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::NodeCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// What the node observed about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// memory.available is under the eviction threshold.
    pub memory_pressure: bool,
    /// nodefs.available is under the eviction threshold.
    pub disk_pressure: bool,
    /// pid.available is under the eviction threshold.
    pub pid_pressure: bool,
    /// Why the node is not ready (the runtime cannot run pods), if so.
    pub not_ready: Option<String>,
    /// Features the host lacks, appended to the Ready message so `kubectl describe node` shows
    /// what is degraded.
    pub degraded: Vec<String>,
}

fn cond(kind: &str, status: bool, reason: &str, message: String) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        ..Default::default()
    }
}

/// The four conditions, with times carried over from `old` where the status stayed.
pub fn conditions(o: &Observed, old: &[NodeCondition], now: Timestamp) -> Vec<NodeCondition> {
    let ready = match &o.not_ready {
        None => {
            let mut m = "kubelet is posting ready status".to_string();
            if !o.degraded.is_empty() {
                m.push_str(&format!(". Degraded: {}", o.degraded.join("; ")));
            }
            cond("Ready", true, "KubeletReady", m)
        }
        Some(why) => cond("Ready", false, "KubeletNotReady", why.clone()),
    };
    let mut out = vec![
        if o.memory_pressure {
            cond("MemoryPressure", true, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available".into())
        } else {
            cond("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available".into())
        },
        if o.disk_pressure {
            cond("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure".into())
        } else {
            cond("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure".into())
        },
        if o.pid_pressure {
            cond("PIDPressure", true, "KubeletHasInsufficientPID", "kubelet has insufficient PID available".into())
        } else {
            cond("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available".into())
        },
        ready,
    ];
    for c in &mut out {
        c.last_heartbeat_time = Some(Time(now));
        c.last_transition_time = match old.iter().find(|p| p.type_ == c.type_) {
            Some(p) if p.status == c.status => p.last_transition_time.clone().or(Some(Time(now))),
            _ => Some(Time(now)),
        };
    }
    out
}

/// Whether a freshly computed status must be posted: it differs (ignoring heartbeat times) from
/// the apiserver's copy, or `report_every` passed since the last post.
pub fn must_post(new: &[NodeCondition], last: &[NodeCondition], since_last_post: Duration, report_every: Duration) -> bool {
    let strip = |cs: &[NodeCondition]| -> Vec<NodeCondition> {
        cs.iter().map(|c| NodeCondition { last_heartbeat_time: None, ..c.clone() }).collect()
    };
    strip(new) != strip(last) || since_last_post >= report_every
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn find<'a>(cs: &'a [NodeCondition], kind: &str) -> &'a NodeCondition {
        cs.iter().find(|c| c.type_ == kind).unwrap_or_else(|| panic!("no {kind}"))
    }

    #[test]
    fn reasons_table() {
        let rows = [
            (Observed::default(), "Ready", "True", "KubeletReady"),
            (Observed::default(), "MemoryPressure", "False", "KubeletHasSufficientMemory"),
            (Observed { memory_pressure: true, ..Default::default() }, "MemoryPressure", "True", "KubeletHasInsufficientMemory"),
            (Observed { disk_pressure: true, ..Default::default() }, "DiskPressure", "True", "KubeletHasDiskPressure"),
            (Observed { pid_pressure: true, ..Default::default() }, "PIDPressure", "True", "KubeletHasInsufficientPID"),
            (Observed { not_ready: Some("container runtime is down".into()), ..Default::default() }, "Ready", "False", "KubeletNotReady"),
        ];
        for (o, kind, status, reason) in rows {
            let cs = conditions(&o, &[], t(0));
            let c = find(&cs, kind);
            assert_eq!((c.status.as_str(), c.reason.as_deref()), (status, Some(reason)), "{o:?}");
        }
        let degraded = Observed { degraded: vec!["no cgroup pids controller".into()], ..Default::default() };
        let m = find(&conditions(&degraded, &[], t(0)), "Ready").message.clone().unwrap_or_default();
        assert_eq!(m, "kubelet is posting ready status. Degraded: no cgroup pids controller");
    }

    #[test]
    fn transition_times_move_only_on_change_and_posts_follow_the_rule() {
        let first = conditions(&Observed::default(), &[], t(0));
        let same = conditions(&Observed::default(), &first, t(10));
        assert_eq!(find(&same, "Ready").last_transition_time, Some(Time(t(0))));
        assert_eq!(find(&same, "Ready").last_heartbeat_time, Some(Time(t(10))));
        assert!(!must_post(&same, &first, Duration::from_secs(10), Duration::from_secs(300)));
        assert!(must_post(&same, &first, Duration::from_secs(300), Duration::from_secs(300)));
        let pressure = conditions(&Observed { memory_pressure: true, ..Default::default() }, &same, t(20));
        assert_eq!(find(&pressure, "MemoryPressure").last_transition_time, Some(Time(t(20))));
        assert!(must_post(&pressure, &same, Duration::from_secs(10), Duration::from_secs(300)));
    }

    #[test]
    fn a_ready_the_node_lifecycle_controller_took_away_is_posted_back_at_once() {
        // The apiserver's copy after the kubelet was cut off for longer than the grace period:
        // every condition Unknown, written by the node lifecycle controller.
        let posted = conditions(&Observed::default(), &[], t(0));
        let server: Vec<NodeCondition> = posted
            .iter()
            .map(|c| NodeCondition {
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                last_transition_time: Some(Time(t(50))),
                ..c.clone()
            })
            .collect();
        let now = conditions(&Observed::default(), &server, t(60));
        assert_eq!(find(&now, "Ready").status, "True");
        assert_eq!(find(&now, "Ready").last_transition_time, Some(Time(t(60))), "Unknown → True is a transition");
        assert!(must_post(&now, &server, Duration::from_secs(10), Duration::from_secs(300)), "well before the report frequency");
    }
}
