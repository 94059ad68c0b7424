//! Services (`core/v1`): a create resets status; type `ClusterIP`, session affinity `None`, port protocol `TCP` and
//! `targetPort` = `port` by default; ports must be valid; kubectl's columns.

use crate::registry::strategy::{Column, Strategy, age, name, or_none, pairs};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::core::v1::{Service, ServiceStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

/// The services strategy.
pub struct Services;

const COLUMNS: &[Column] = &[("Name", 0), ("Type", 0), ("Cluster-IP", 0), ("External-IP", 0), ("Port(s)", 0), ("Age", 0), ("Selector", 1)];

impl Strategy for Services {
    type Object = Service;

    fn prepare_create(&self, s: &mut Service) {
        s.status = Some(ServiceStatus { load_balancer: Some(Default::default()), ..Default::default() });
    }

    fn default(&self, s: &mut Service) {
        let Some(spec) = s.spec.as_mut() else { return };
        spec.type_.get_or_insert_with(|| "ClusterIP".into());
        spec.session_affinity.get_or_insert_with(|| "None".into());
        for p in spec.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
            p.target_port.get_or_insert(IntOrString::Int(p.port));
        }
    }

    fn validate(&self, s: &Service) -> Vec<Cause> {
        let mut out = Vec::new();
        for (i, p) in s.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten().enumerate() {
            validation::port(p.port, format!("spec.ports[{i}].port"), &mut out);
        }
        out
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, s: &Service, now: i64) -> Vec<Value> {
        let spec = s.spec.clone().unwrap_or_default();
        let ports: Vec<String> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let node = p.node_port.map(|n| format!(":{n}")).unwrap_or_default();
                format!("{}{node}/{}", p.port, p.protocol.as_deref().unwrap_or(""))
            })
            .collect();
        let external = spec.external_ips.unwrap_or_default().join(",");
        vec![
            json!(name(&s.metadata)),
            json!(spec.type_.unwrap_or_default()),
            json!(or_none(spec.cluster_ip.unwrap_or_default())),
            json!(or_none(external)),
            json!(or_none(ports.join(","))),
            json!(age(&s.metadata, now)),
            json!(or_none(pairs(spec.selector.as_ref()))),
        ]
    }
}
