//! Secrets (`core/v1`): type `Opaque` by default; `stringData` is write-only and lands in
//! `data`, base64 encoded, over what was there; keys must be config keys; the `type` field
//! selector. (Encryption at rest is the storage layer's: [`crate::storage::encryption`].)

use crate::registry::strategy::{Column, Strategy, age, name};
use crate::registry::validation::{self, Cause};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

/// The secrets strategy.
pub struct Secrets;

impl Strategy for Secrets {
    type Object = Secret;

    fn default(&self, s: &mut Secret) {
        if s.type_.as_deref().is_none_or(str::is_empty) {
            s.type_ = Some("Opaque".into());
        }
        if let Some(plain) = s.string_data.take() {
            let data = s.data.get_or_insert_with(Default::default);
            for (k, v) in plain {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(&self, s: &Secret) -> Vec<Cause> {
        let mut out = Vec::new();
        validation::data_keys("data", s.data.iter().flat_map(|d| d.keys()), &mut out);
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)]
    }

    fn cells(&self, s: &Secret, now: i64) -> Vec<Value> {
        vec![
            json!(name(&s.metadata)),
            json!(s.type_.clone().unwrap_or_default()),
            json!(s.data.as_ref().map_or(0, |d| d.len())),
            json!(age(&s.metadata, now)),
        ]
    }

    fn selectable(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn field(&self, s: &Secret, field: &str) -> Option<String> {
        (field == "type").then(|| s.type_.clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::strategy::Behaviour;

    #[test]
    fn secret_string_data_becomes_data() {
        let s = Secrets.finish("Secret", json!({"data": {"a": "eA=="}, "stringData": {"b": "s3cret"}}), Default::default(), false);
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "eA==", "b": "czNjcmV0"}));
        assert!(s.get("stringData").is_none());
    }
}
