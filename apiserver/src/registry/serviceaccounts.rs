//! ServiceAccounts (`core/v1`): kubectl's `SECRETS` column.

use crate::registry::strategy::{Column, Strategy, age, name};
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{Value, json};

/// The serviceaccounts strategy.
pub struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    type Object = ServiceAccount;

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Secrets", 0), ("Age", 0)]
    }

    fn cells(&self, s: &ServiceAccount, now: i64) -> Vec<Value> {
        vec![json!(name(&s.metadata)), json!(s.secrets.as_ref().map_or(0, Vec::len)), json!(age(&s.metadata, now))]
    }
}
