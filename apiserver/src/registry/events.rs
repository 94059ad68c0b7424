//! Events (`core/v1`): they expire (the storage layer writes them with a lease of
//! `--event-ttl`), kubectl's columns, and the field selectors `kubectl describe` uses
//! (`involvedObject.name=…,involvedObject.uid=…`).

use crate::registry::strategy::{Column, Strategy, human_duration};
use k8s_openapi::api::core::v1::Event;
use serde_json::{Value, json};

/// The events strategy.
pub struct Events;

const FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

impl Strategy for Events {
    type Object = Event;

    fn columns(&self) -> &'static [Column] {
        &[("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Message", 0)]
    }

    fn cells(&self, e: &Event, now: i64) -> Vec<Value> {
        let last = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .map_or("<unknown>".into(), |t| human_duration(now - t.as_second()));
        let o = &e.involved_object;
        let object = format!("{}/{}", o.kind.as_deref().unwrap_or("").to_lowercase(), o.name.as_deref().unwrap_or(""));
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![json!(last), json!(s(&e.type_)), json!(s(&e.reason)), json!(object), json!(s(&e.message))]
    }

    fn selectable(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn field(&self, e: &Event, field: &str) -> Option<String> {
        let o = &e.involved_object;
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        Some(match field {
            "involvedObject.kind" => s(&o.kind),
            "involvedObject.namespace" => s(&o.namespace),
            "involvedObject.name" => s(&o.name),
            "involvedObject.uid" => s(&o.uid),
            "involvedObject.apiVersion" => s(&o.api_version),
            "involvedObject.resourceVersion" => s(&o.resource_version),
            "involvedObject.fieldPath" => s(&o.field_path),
            "reason" => s(&e.reason),
            "reportingComponent" => s(&e.reporting_component),
            "source" => e.source.as_ref().and_then(|x| x.component.clone()).unwrap_or_default(),
            "type" => s(&e.type_),
            _ => return None,
        })
    }
}
