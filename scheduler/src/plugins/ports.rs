//! NodePorts: two pods on one node cannot claim the same `hostPort` for the same protocol on
//! overlapping host IPs (`0.0.0.0`, the default, overlaps every IP).

use super::{Code, Filtered, Status};
use crate::node::NodeInfo;
use crate::pod::PodInfo;
use k8s_openapi::api::core::v1::PodSpec;

/// The plugin's name.
pub const NAME: &str = "NodePorts";
/// kube-scheduler's `ErrReason`.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// A claimed host port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// `hostIP` (defaulted to `0.0.0.0`).
    pub ip: String,
    /// `protocol` (defaulted to `TCP`).
    pub protocol: String,
    /// `hostPort`.
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port && self.protocol == o.protocol && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// The host ports a pod's containers (and init containers) claim.
pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| HostPort {
            ip: p.host_ip.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
            protocol: p.protocol.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "TCP".into()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

/// Refuses a node where one of the pod's host ports is taken.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    if pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| used.conflicts(want))) {
        Err(Status::new(NAME, Code::Unschedulable, REASON))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::sized;
    use crate::pod::testing::pod;
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn with_port(name: &str, port: Value) -> PodInfo {
        pod(name, json!({"containers": [{"name": "c", "image": "x", "ports": [port]}]}))
    }

    #[test]
    fn host_port_clashes() {
        let mut n = sized("n", "1", "1Gi");
        n.add_pod(Arc::new(with_port("a", json!({"containerPort": 80, "hostPort": 8080}))));
        n.add_pod(Arc::new(with_port("b", json!({"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}))));
        let table = [
            ("same port, default ip and protocol", json!({"containerPort": 80, "hostPort": 8080}), false),
            (
                "same port, a specific ip still overlaps 0.0.0.0",
                json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}),
                false,
            ),
            ("same port, other protocol", json!({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}), true),
            ("other port", json!({"containerPort": 80, "hostPort": 8081}), true),
            ("no host port", json!({"containerPort": 8080}), true),
            ("UDP 53 on another ip", json!({"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.2"}), true),
            ("UDP 53 on 0.0.0.0 overlaps 10.0.0.1", json!({"containerPort": 53, "hostPort": 53, "protocol": "UDP"}), false),
        ];
        for (name, port, fits) in table {
            let got = filter(&with_port("p", port), &n);
            assert_eq!(got.is_ok(), fits, "{name}");
            if let Err(s) = got {
                assert_eq!((s.reasons[0].as_ref(), s.code), (REASON, Code::Unschedulable));
            }
        }
        n.remove_pod(&crate::pod::PodKey::new("default", "a"));
        assert!(filter(&with_port("p", json!({"containerPort": 80, "hostPort": 8080})), &n).is_ok(), "freed with its pod");
    }
}
