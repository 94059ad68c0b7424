//! EndpointSlices (`discovery.k8s.io/v1`): a service's endpoints in slices (the label
//! `kubernetes.io/service-name` names the service). `addressType` is IPv4, IPv6 or FQDN and
//! immutable, each endpoint has 1 to 100 addresses, ports are valid; kubectl's columns.

use crate::registry::strategy::{Column, Strategy, age, name, or_none};
use crate::registry::validation::{self, Cause, immutable};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

/// The endpointslices strategy.
pub struct EndpointSlices;

impl Strategy for EndpointSlices {
    type Object = EndpointSlice;

    fn validate(&self, e: &EndpointSlice) -> Vec<Cause> {
        let mut out = Vec::new();
        let t = e.address_type.as_str();
        if !matches!(t, "IPv4" | "IPv6" | "FQDN") {
            let why = if t.is_empty() {
                "Required value".to_string()
            } else {
                format!("Unsupported value: {t:?}: supported values: \"FQDN\", \"IPv4\", \"IPv6\"")
            };
            out.push(("addressType".into(), why));
        }
        for (i, ep) in e.endpoints.iter().enumerate() {
            let n = ep.addresses.len();
            if !(1..=100).contains(&n) {
                out.push((
                    format!("endpoints[{i}].addresses"),
                    format!("Invalid value: {n}: must have at least 1 and at most 100 addresses"),
                ));
            }
        }
        for (i, p) in e.ports.iter().flatten().enumerate() {
            if let Some(n) = p.port {
                validation::port(n, format!("ports[{i}].port"), &mut out);
            }
        }
        out
    }

    fn validate_update(&self, new: &EndpointSlice, old: &EndpointSlice, _status: bool) -> Vec<Cause> {
        if new.address_type != old.address_type { vec![immutable("addressType", format!("{:?}", new.address_type))] } else { Vec::new() }
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("AddressType", 0), ("Ports", 0), ("Endpoints", 0), ("Age", 0)]
    }

    fn cells(&self, e: &EndpointSlice, now: i64) -> Vec<Value> {
        let ports: Vec<String> = e.ports.iter().flatten().filter_map(|p| p.port.map(|n| n.to_string())).collect();
        let addrs: Vec<&str> = e.endpoints.iter().flat_map(|ep| ep.addresses.iter().map(String::as_str)).collect();
        let shown = if addrs.len() > 3 { format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3) } else { addrs.join(",") };
        vec![
            json!(name(&e.metadata)),
            json!(e.address_type),
            json!(or_none(ports.join(","))),
            json!(or_none(shown)),
            json!(age(&e.metadata, now)),
        ]
    }
}
