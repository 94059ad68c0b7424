//! ResourceQuotas (`core/v1`, `quota`, with `status`): kube's printer columns (`REQUEST` and
//! `LIMIT` as `used/hard` per resource) and quantity checks. Their `status` is kept by the
//! apiserver itself: set when a quota is written and charged in the same Txn as every object it
//! counts ([`crate::rest::quota`]).

use crate::registry::strategy::{Column, Strategy, age, name};
use crate::registry::validation::Cause;
use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::{Value, json};

/// The resourcequotas strategy.
pub struct ResourceQuotas;

impl Strategy for ResourceQuotas {
    type Object = ResourceQuota;

    fn prepare_create(&self, q: &mut ResourceQuota) {
        q.status = None;
    }

    fn prepare_update(&self, new: &mut ResourceQuota, old: &ResourceQuota, status: bool) {
        if !status {
            new.status = old.status.clone();
        }
    }

    fn validate(&self, q: &ResourceQuota) -> Vec<Cause> {
        let mut out = Vec::new();
        for (k, v) in q.spec.iter().flat_map(|s| s.hard.iter().flatten()) {
            match keel_access::admission::quantity::Quantity::parse(&v.0) {
                Ok(n) if n < keel_access::admission::quantity::Quantity::ZERO => {
                    out.push((format!("spec.hard[{k}]"), format!("Invalid value: {:?}: must be greater than or equal to 0", v.0)));
                }
                Ok(_) => {}
                Err(_) => out.push((format!("spec.hard[{k}]"), format!("Invalid value: {:?}: must be a quantity", v.0))),
            }
        }
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Age", 0), ("Request", 0), ("Limit", 0)]
    }

    /// kube's `printResourceQuota`: `resource: used/hard` for each hard resource, sorted,
    /// `limits.*` in the Limit column.
    fn cells(&self, q: &ResourceQuota, now: i64) -> Vec<Value> {
        let (mut request, mut limit) = (Vec::new(), Vec::new());
        let status = q.status.as_ref();
        for (k, hard) in status.and_then(|s| s.hard.as_ref()).into_iter().flatten() {
            let used = status.and_then(|s| s.used.as_ref()).and_then(|u| u.get(k)).map_or("0", |q| q.0.as_str());
            let cell = format!("{k}: {used}/{}", hard.0);
            if k.split('.').next() == Some("limits") && k.contains('.') { limit.push(cell) } else { request.push(cell) }
        }
        vec![json!(name(&q.metadata)), json!(age(&q.metadata, now)), json!(request.join(", ")), json!(limit.join(", "))]
    }
}
