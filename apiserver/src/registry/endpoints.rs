//! Endpoints (`core/v1`): kubectl's `ENDPOINTS` column (`ip:port` of every address and port).

use crate::registry::strategy::{Column, Strategy, age, name, or_none};
use k8s_openapi::api::core::v1::Endpoints as Object;
use serde_json::{Value, json};

/// The endpoints strategy.
pub struct Endpoints;

impl Strategy for Endpoints {
    type Object = Object;

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Endpoints", 0), ("Age", 0)]
    }

    fn cells(&self, e: &Object, now: i64) -> Vec<Value> {
        let mut eps = Vec::new();
        for sub in e.subsets.iter().flatten() {
            let ports: Vec<i32> = sub.ports.iter().flatten().map(|p| p.port).collect();
            for addr in sub.addresses.iter().flatten() {
                for p in &ports {
                    eps.push(format!("{}:{p}", addr.ip));
                }
            }
        }
        vec![json!(name(&e.metadata)), json!(or_none(eps.join(","))), json!(age(&e.metadata, now))]
    }
}
