//! Leases (`coordination.k8s.io/v1`): node heartbeats and leader election; the `HOLDER` column.

use crate::registry::strategy::{Column, Strategy, age, name, or_none};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};

/// The leases strategy.
pub struct Leases;

impl Strategy for Leases {
    type Object = Lease;

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Holder", 0), ("Age", 0)]
    }

    fn cells(&self, l: &Lease, now: i64) -> Vec<Value> {
        let holder = l.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        vec![json!(name(&l.metadata)), json!(or_none(holder)), json!(age(&l.metadata, now))]
    }
}
