//! ConfigMaps (`core/v1`): keys must be config keys; kubectl's `DATA` column counts them.

use crate::registry::strategy::{Column, Strategy, age, name};
use crate::registry::validation::{self, Cause};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

/// The configmaps strategy.
pub struct ConfigMaps;

impl Strategy for ConfigMaps {
    type Object = ConfigMap;

    fn validate(&self, c: &ConfigMap) -> Vec<Cause> {
        let mut out = Vec::new();
        validation::data_keys("data", c.data.iter().flat_map(|d| d.keys()), &mut out);
        validation::data_keys("binaryData", c.binary_data.iter().flat_map(|d| d.keys()), &mut out);
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Data", 0), ("Age", 0)]
    }

    fn cells(&self, c: &ConfigMap, now: i64) -> Vec<Value> {
        let n = c.data.as_ref().map_or(0, |d| d.len()) + c.binary_data.as_ref().map_or(0, |d| d.len());
        vec![json!(name(&c.metadata)), json!(n), json!(age(&c.metadata, now))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::strategy::Behaviour;

    fn fields(obj: Value) -> Vec<String> {
        match ConfigMaps.finish("ConfigMap", obj, Default::default(), false) {
            Ok(_) => vec![],
            Err(crate::error::ApiError::Invalid { causes, .. }) => causes.into_iter().map(|(f, _)| f).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn keys_and_labels_are_checked() {
        let bad = json!({"metadata": {"labels": {"bad key": "v"}}, "data": {"ok.key": "v", "bad/key": "v"}});
        assert_eq!(fields(bad), vec!["metadata.labels", "data[bad/key]"]);
        assert!(fields(json!({"metadata": {"labels": {"example.com/app": "web-1", "x": ""}}})).is_empty());
    }
}
