//! NodeName: a pod that names its node (`spec.nodeName`) fits only there. Pods created with a
//! node name are already assigned and never queued; the filter matters for preemption's dry
//! runs and keeps the profile complete.

use super::{Code, Filtered, Status};
use crate::node::NodeInfo;
use crate::pod::PodInfo;

/// The plugin's name.
pub const NAME: &str = "NodeName";
/// kube-scheduler's `ErrReason`.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// Refuses every node but the named one.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    match &pod.node_name {
        Some(n) if n != node.name() => Err(Status::new(NAME, Code::UnschedulableAndUnresolvable, REASON)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::sized;
    use crate::pod::testing::pod;
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let n1 = sized("n1", "1", "1Gi");
        let table = [
            ("no name: any node", json!({}), true),
            ("named n1", json!({"nodeName": "n1"}), true),
            ("named n2", json!({"nodeName": "n2"}), false),
        ];
        for (name, spec, fits) in table {
            let got = filter(&pod("p", spec), &n1);
            assert_eq!(got.is_ok(), fits, "{name}");
            if let Err(s) = got {
                assert_eq!((s.reasons[0].as_ref(), s.code), (REASON, Code::UnschedulableAndUnresolvable));
            }
        }
    }
}
