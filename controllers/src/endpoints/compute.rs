//! A Service's endpoints from its pods, without I/O (kube's `endpoint` controller
//! `syncService` and `endpointslice` reconciler inputs): the pods its selector matches that have
//! an IP and are not terminal, ready ones as `addresses`, the others as `notReadyAddresses`
//! (or all as ready with `publishNotReadyAddresses`); each Service port resolved against the
//! pod (a number, or a named container port), addresses grouped by identical port sets
//! (`RepackSubsets`) and sorted so equal inputs give equal objects.

use crate::pod;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// True when the Service's endpoints are this controller's to manage (it has a selector and
/// is not `ExternalName`).
pub fn managed(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty()) && spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
}

/// `ShouldPodBeInEndpoints`: not terminal, has an IP, not terminating (unless included).
pub fn in_endpoints(p: &Pod, include_terminating: bool) -> bool {
    let ph = pod::phase(p);
    if ph == "Succeeded" || ph == "Failed" {
        return false;
    }
    if pod_ip(p).is_none() {
        return false;
    }
    include_terminating || p.metadata.deletion_timestamp.is_none()
}

/// The pod's IP.
pub fn pod_ip(p: &Pod) -> Option<String> {
    let s = p.status.as_ref()?;
    s.pod_ip.clone().filter(|ip| !ip.is_empty()).or_else(|| s.pod_ips.as_ref()?.first().map(|i| i.ip.clone()))
}

/// `FindPort`: the pod port a Service port targets (`targetPort`, default `port`).
pub fn find_port(p: &Pod, sp: &ServicePort) -> Option<i32> {
    match sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port)) {
        IntOrString::Int(n) => Some(n),
        IntOrString::String(name) => {
            let proto = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            p.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| cp.name.as_deref() == Some(name.as_str()) && cp.protocol.clone().unwrap_or_else(|| "TCP".into()) == proto)
                .map(|cp| cp.container_port)
        }
    }
}

/// A reference to `p` as an endpoint's `targetRef`.
pub fn target_ref(p: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        ..Default::default()
    }
}

fn address(svc: &Service, p: &Pod) -> Option<EndpointAddress> {
    let spec = p.spec.as_ref();
    let svc_name = svc.metadata.name.as_deref();
    let hostname = spec.and_then(|s| s.hostname.clone()).filter(|_| spec.and_then(|s| s.subdomain.as_deref()) == svc_name);
    Some(EndpointAddress { ip: pod_ip(p)?, hostname, node_name: spec.and_then(|s| s.node_name.clone()), target_ref: Some(target_ref(p)) })
}

/// A port's identity: (name, number, protocol).
pub type PortKey = (String, i32, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (p.name.clone().unwrap_or_default(), p.port, p.protocol.clone().unwrap_or_default())
}

/// One endpoint of a Service: a pod address, whether it counts as ready, and its ports.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// The pod's address.
    pub address: EndpointAddress,
    /// Ready (or published although not ready).
    pub ready: bool,
    /// Serving (the pod's own readiness, regardless of termination).
    pub serving: bool,
    /// Being deleted.
    pub terminating: bool,
    /// The Service ports resolved for this pod.
    pub ports: Vec<EndpointPort>,
}

/// The Service's endpoints among `pods` (its selector's matches).
pub fn endpoints(svc: &Service, pods: &[&Pod]) -> Vec<Endpoint> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let mut out = Vec::new();
    for p in pods {
        if !in_endpoints(p, publish) {
            continue;
        }
        let Some(address) = address(svc, p) else { continue };
        let ports: Vec<EndpointPort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone(),
                    port: find_port(p, sp)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !(spec.ports.as_ref().is_none_or(|p| p.is_empty()) && headless) {
            continue;
        }
        let serving = pod::is_ready(p);
        out.push(Endpoint {
            address,
            ready: publish || (serving && p.metadata.deletion_timestamp.is_none()),
            serving,
            terminating: p.metadata.deletion_timestamp.is_some(),
            ports,
        });
    }
    out
}

/// `RepackSubsets`: the Endpoints object's subsets, one per distinct port set.
pub fn subsets(eps: &[Endpoint]) -> Vec<EndpointSubset> {
    type Group = (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<PortKey>, Group> = BTreeMap::new();
    for e in eps {
        let mut ports = e.ports.clone();
        ports.sort_by_key(port_key);
        let key: Vec<_> = ports.iter().map(port_key).collect();
        let g = groups.entry(key).or_insert_with(|| (ports, vec![], vec![]));
        if e.ready { g.1.push(e.address.clone()) } else { g.2.push(e.address.clone()) }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            let by_ip = |a: &EndpointAddress| (a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()));
            ready.sort_by_key(by_ip);
            not_ready.sort_by_key(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn svc(ports: Vec<ServicePort>, publish: bool) -> Service {
        Service {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("ns".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(ports),
                publish_not_ready_addresses: Some(publish),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn sp(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort { name: Some(name.into()), port, target_port: Some(target), ..Default::default() }
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, phase: &str, named_port: Option<(&str, i32)>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("u-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: named_port.map(|(n, p)| vec![ContainerPort { name: Some(n.into()), container_port: p, ..Default::default() }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(String::from),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    // After kubernetes/pkg/controller/endpoint/endpoints_controller_test.go
    // (TestSyncEndpointsItemsPreserveNoSelector, ...WithLabels, TestSyncEndpointsProtocolTCP,
    // TestSyncEndpointsItemsWithNotReadyAddresses, TestPodToEndpointAddressForService).
    #[test]
    fn ready_pods_are_addresses_others_not_ready_and_ipless_or_terminal_ones_absent() {
        let s = svc(vec![sp("http", 80, IntOrString::Int(8080))], false);
        let pods = [
            pod("a", Some("10.0.0.2"), true, "Running", None),
            pod("b", Some("10.0.0.1"), false, "Running", None),
            pod("c", None, true, "Pending", None),
            pod("d", Some("10.0.0.9"), true, "Succeeded", None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let subs = subsets(&endpoints(&s, &refs));
        assert_eq!(subs.len(), 1);
        let ips = |a: &Option<Vec<EndpointAddress>>| a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(ips(&subs[0].addresses), ["10.0.0.2"]);
        assert_eq!(ips(&subs[0].not_ready_addresses), ["10.0.0.1"]);
        let port = subs[0].ports.clone().unwrap_or_default();
        assert_eq!((port[0].port, port[0].protocol.as_deref(), port[0].name.as_deref()), (8080, Some("TCP"), Some("http")));
        assert_eq!(subs[0].addresses.as_ref().and_then(|a| a[0].target_ref.as_ref()).and_then(|r| r.name.as_deref()), Some("a"));
        let published = subsets(&endpoints(&svc(vec![sp("http", 80, IntOrString::Int(80))], true), &refs));
        assert_eq!(ips(&published[0].addresses), ["10.0.0.1", "10.0.0.2"], "publishNotReadyAddresses");
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_split_subsets() {
        let s = svc(vec![sp("http", 80, IntOrString::String("web".into()))], false);
        let pods = [
            pod("a", Some("10.0.0.1"), true, "Running", Some(("web", 8080))),
            pod("b", Some("10.0.0.2"), true, "Running", Some(("web", 9090))),
            pod("c", Some("10.0.0.3"), true, "Running", None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let subs = subsets(&endpoints(&s, &refs));
        let got: Vec<(i32, usize)> =
            subs.iter().map(|s| (s.ports.clone().unwrap_or_default()[0].port, s.addresses.clone().unwrap_or_default().len())).collect();
        assert_eq!(got, [(8080, 1), (9090, 1)], "a pod without the named port is left out");
    }

    #[test]
    fn terminating_pods_leave_unless_published() {
        let mut p = pod("a", Some("10.0.0.1"), true, "Running", None);
        p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let s = svc(vec![sp("http", 80, IntOrString::Int(80))], false);
        assert!(endpoints(&s, &[&p]).is_empty());
        let e = endpoints(&svc(vec![sp("http", 80, IntOrString::Int(80))], true), &[&p]);
        assert!(e[0].terminating && e[0].serving);
        let mut no_sel = svc(vec![], false);
        if let Some(sp) = no_sel.spec.as_mut() {
            sp.selector = None;
        }
        assert!(!managed(&no_sel), "without a selector the Endpoints are the user's");
    }
}
