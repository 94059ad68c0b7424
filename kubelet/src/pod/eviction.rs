//! Eviction under node memory pressure, after kubelet's eviction manager
//! (pkg/kubelet/eviction): when `memory.available` falls under the hard threshold
//! (`--eviction-hard memory.available<100Mi`), the node reports MemoryPressure and evicts one pod
//! per monitoring pass. The order is by QoS class first (BestEffort, then Burstable, then
//! Guaranteed), as Keel's design asks, and within a class as kubelet's `rankMemoryPressure` does:
//! pods whose usage exceeds their memory request first, then lower priority, then the larger
//! usage above request. (kubelet itself skips the QoS step; its first key makes BestEffort pods
//! that use memory come first in most cases anyway.) The evicted pod fails with reason `Evicted`
//! and kubelet's message.
//!
//! Pure: usages and thresholds come in as numbers.

use crate::pod::qos::QosClass;
use crate::pod::quantity::format_bytes;
use std::cmp::Ordering;

/// One pod as the ranking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `namespace/name`, for messages and tests.
    pub key: String,
    /// Memory working set of the pod, bytes.
    pub usage: u64,
    /// Sum of its containers' memory requests, bytes.
    pub request: u64,
    /// The pod's QoS class.
    pub qos: QosClass,
    /// `spec.priority` (0 without).
    pub priority: i32,
    /// The container using the most memory, with its usage and request, for the message.
    pub top_container: Option<(String, u64, u64)>,
}

fn exceeds(c: &Candidate) -> bool {
    c.usage > c.request
}

/// QoS class, then kubelet's order: exceeds-requests first, then lower priority, then more usage
/// above request.
pub fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    a.qos
        .cmp(&b.qos)
        .then(exceeds(b).cmp(&exceeds(a)))
        .then(a.priority.cmp(&b.priority))
        .then_with(|| (b.usage as i128 - b.request as i128).cmp(&(a.usage as i128 - a.request as i128)))
        .then_with(|| a.key.cmp(&b.key))
}

/// The candidates in eviction order.
pub fn rank(mut pods: Vec<Candidate>) -> Vec<Candidate> {
    pods.sort_by(compare);
    pods
}

/// Whether `available` is under the threshold.
pub fn under_pressure(available: u64, threshold: u64) -> bool {
    available < threshold
}

/// kubelet's eviction message (`evictionMessage`).
pub fn message(threshold: u64, available: u64, victim: &Candidate) -> String {
    let mut m = format!(
        "The node was low on resource: memory. Threshold quantity: {}, available: {}Ki. ",
        format_bytes(threshold),
        available / 1024
    );
    if let Some((name, usage, request)) = &victim.top_container {
        m.push_str(&format!(
            "Container {name} was using {}Ki, request is {}, has larger consumption of memory. ",
            usage / 1024,
            format_bytes(*request)
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &str, usage: u64, request: u64, priority: i32) -> Candidate {
        let qos = match key.split('-').next() {
            Some("besteffort") => QosClass::BestEffort,
            Some("guaranteed") => QosClass::Guaranteed,
            _ => QosClass::Burstable,
        };
        Candidate { key: key.into(), usage, request, priority, qos, top_container: None }
    }

    #[test]
    fn best_effort_first_then_usage_over_request_then_priority_then_usage() {
        let pods = vec![
            c("guaranteed-big", 500, 500, 0),
            c("burstable-over", 300, 100, 0),
            c("besteffort-small", 10, 0, 0),
            c("besteffort-big", 200, 0, 0),
            c("burstable-under", 50, 100, 0),
            c("besteffort-important", 900, 0, 1000),
        ];
        let order: Vec<String> = rank(pods).into_iter().map(|p| p.key).collect();
        assert_eq!(
            order,
            ["besteffort-big", "besteffort-small", "besteffort-important", "burstable-over", "burstable-under", "guaranteed-big"]
        );
    }

    #[test]
    fn message_names_the_threshold_and_the_container() {
        let mut v = c("p", 200 << 20, 0, 0);
        v.top_container = Some(("hog".into(), 200 << 20, 0));
        assert_eq!(
            message(100 << 20, 50 << 20, &v),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. Container hog was using 204800Ki, request is 0, has larger consumption of memory. "
        );
        assert!(under_pressure(1, 2) && !under_pressure(2, 2));
    }
}
