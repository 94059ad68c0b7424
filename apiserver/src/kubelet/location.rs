//! Where a request to a kubelet goes, as kube-apiserver decides it (pure): the node's address
//! of the first `--kubelet-preferred-address-types` type it has (kube's
//! `GetPreferredNodeAddress`, with the `kubernetes.io/hostname` label standing in for a missing
//! `Hostname` address), the port its kubelet wrote in
//! `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset), and which container of a
//! pod a `log`/`exec` means (kube's `ValidateContainer`).

use crate::error::ApiError;
use serde_json::Value;

/// The address types kube knows, in kube-apiserver's default order.
pub const ADDRESS_TYPES: &[&str] = &["Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"];

/// Keel's default `--kubelet-preferred-address-types`: kube's types with `InternalIP` first,
/// because Keel's node names (`keel-1`, `n1`) need not resolve while the InternalIP always
/// reaches the kubelet.
pub const DEFAULT_PREFERRED: &[&str] = &["InternalIP", "Hostname", "InternalDNS", "ExternalDNS", "ExternalIP"];

/// The kubelet port when a node reports none (kube's `--kubelet-port` default).
pub const DEFAULT_PORT: u16 = 10250;

/// A kubelet's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Host name or IP (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Location {
    /// `host:port`, with an IPv6 host in brackets (for the URL and the Host header).
    pub fn authority(&self) -> String {
        if self.host.contains(':') { format!("[{}]:{}", self.host, self.port) } else { format!("{}:{}", self.host, self.port) }
    }
}

/// Checks `--kubelet-preferred-address-types`.
pub fn parse_preferred(types: &[String]) -> Result<Vec<String>, String> {
    if types.is_empty() {
        return Ok(DEFAULT_PREFERRED.iter().map(|s| s.to_string()).collect());
    }
    for t in types {
        if !ADDRESS_TYPES.contains(&t.as_str()) {
            return Err(format!("{t:?} is not a node address type (one of {})", ADDRESS_TYPES.join(", ")));
        }
    }
    Ok(types.to_vec())
}

/// The kubelet of `node` (a Node object), reached by the first address of a `preferred` type.
pub fn node_location(node: &Value, preferred: &[String]) -> Result<Location, ApiError> {
    let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a.get("type")?.as_str()?, a.get("address")?.as_str()?)))
        .filter(|(_, addr)| !addr.is_empty())
        .collect();
    let mut host = None;
    for t in preferred {
        if let Some((_, a)) = addresses.iter().find(|(kind, _)| kind == t) {
            host = Some(a.to_string());
            break;
        }
        if t == "Hostname"
            && let Some(h) = node.pointer("/metadata/labels/kubernetes.io~1hostname").and_then(Value::as_str).filter(|h| !h.is_empty())
        {
            host = Some(h.to_string());
            break;
        }
    }
    let Some(host) = host else {
        let known: Vec<String> = addresses.iter().map(|(t, a)| format!("{{{t} {a}}}")).collect();
        return Err(ApiError::Kubelet {
            code: 500,
            message: format!("no preferred addresses found for node {name}; known addresses: [{}]", known.join(" ")),
        });
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_PORT);
    Ok(Location { host, port })
}

/// Every container name of `pod`: containers, init containers, ephemeral containers (kube's
/// `VisitContainers` order for the message).
fn names(pod: &Value) -> Vec<&str> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array).into_iter().flatten())
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect()
}

/// The container a `log`/`exec` of `pod` means: the one asked for, which must exist, else the
/// only container (kube's `ValidateContainer`; kubectl picks one itself, raw clients need this).
pub fn container(pod: &Value, asked: Option<&str>) -> Result<String, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let all = names(pod);
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if all.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None => {
            let main: Vec<&str> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect();
            match main.as_slice() {
                [one] => Ok(one.to_string()),
                [] => Err(ApiError::BadRequest(format!("a container name must be specified for pod {name}"))),
                _ => Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prefs(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_preferred_address_type_the_node_has_wins() {
        let node = json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "label-host"}},
            "status": {
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}},
            },
        });
        let bare = json!({"metadata": {"name": "n2", "labels": {"kubernetes.io/hostname": "label-host"}}, "status": {}});
        let v6 = json!({"metadata": {"name": "n3"}, "status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]}});
        let loc = |host: &str, port| Ok(Location { host: host.into(), port });
        let table: Vec<(&Value, Vec<String>, Result<Location, ApiError>)> = vec![
            (&node, prefs(DEFAULT_PREFERRED), loc("10.0.0.5", 12345)),
            (&node, prefs(ADDRESS_TYPES), loc("n1", 12345)),
            (&node, prefs(&["ExternalIP", "InternalIP"]), loc("10.0.0.5", 12345)),
            (&bare, prefs(&["InternalIP", "Hostname"]), loc("label-host", DEFAULT_PORT)),
            (&v6, prefs(DEFAULT_PREFERRED), loc("fd00::1", DEFAULT_PORT)),
        ];
        for (n, p, want) in table {
            assert_eq!(node_location(n, &p).map_err(|e| e.to_string()), want.map_err(|e: ApiError| e.to_string()), "{n} {p:?}");
        }
        let none = node_location(&node, &prefs(&["ExternalIP"])).map_err(|e| e.to_string());
        assert_eq!(none, Err("no preferred addresses found for node n1; known addresses: [{Hostname n1} {InternalIP 10.0.0.5}]".into()));
        assert_eq!(Location { host: "fd00::1".into(), port: 1 }.authority(), "[fd00::1]:1");
        assert!(parse_preferred(&prefs(&["InternalIP", "Bogus"])).is_err());
        assert_eq!(parse_preferred(&[]).map(|p| p[0].clone()), Ok("InternalIP".into()));
    }

    #[test]
    fn the_container_is_the_one_asked_for_or_the_only_one() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "i"}]}});
        let two =
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let table: &[(&Value, Option<&str>, Result<&str, &str>)] = &[
            (&one, None, Ok("c")),
            (&one, Some(""), Ok("c")),
            (&one, Some("i"), Ok("i")),
            (&one, Some("x"), Err("container x is not valid for pod p")),
            (&two, Some("b"), Ok("b")),
            (&two, None, Err("a container name must be specified for pod p, choose one of: [a b i]")),
        ];
        for (pod, asked, want) in table {
            let got = container(pod, *asked);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w),
                (Err(e), Err(w)) => {
                    assert_eq!(e.to_string(), *w);
                    assert_eq!(e.code_reason(), (400, "BadRequest"));
                }
                (g, w) => panic!("{asked:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
