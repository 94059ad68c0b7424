//! Events of `events.k8s.io/v1` (what kube-runtime's `Recorder` and the components write),
//! served over the same storage as `core/v1` Events, as kube-apiserver does: stored as core/v1
//! Events at `/registry/events/…`, converted on the way in and out ([`to_core`], [`from_core`],
//! kube's `pkg/apis/events/v1` conversion), so `kubectl describe` and `kubectl get events`
//! show events written through either API, and a watch of either sees both.
//!
//! Validation is kube's for events.k8s.io/v1 creates: `eventTime`, `reportingController`,
//! `reportingInstance`, `action` and `reason` are required, `type` is Normal or Warning, and
//! the deprecated core fields must be unset.

use crate::registry::strategy::{Column, Strategy, human_duration};
use crate::registry::validation::Cause;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSeries as CoreSeries};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use serde_json::{Value, json};

/// The events.k8s.io/v1 events strategy.
pub struct EventsV1;

/// The core/v1 form of an events.k8s.io/v1 Event.
pub fn to_core(e: Event) -> CoreEvent {
    CoreEvent {
        metadata: e.metadata,
        involved_object: e.regarding.unwrap_or_default(),
        related: e.related,
        message: e.note,
        reason: e.reason,
        type_: e.type_,
        action: e.action,
        event_time: e.event_time,
        series: e.series.map(|s| CoreSeries { count: Some(s.count), last_observed_time: Some(s.last_observed_time) }),
        reporting_component: e.reporting_controller,
        reporting_instance: e.reporting_instance,
        source: e.deprecated_source,
        first_timestamp: e.deprecated_first_timestamp,
        last_timestamp: e.deprecated_last_timestamp,
        count: e.deprecated_count,
    }
}

/// The events.k8s.io/v1 form of a core/v1 Event.
pub fn from_core(e: CoreEvent) -> Event {
    Event {
        metadata: e.metadata,
        regarding: Some(e.involved_object),
        related: e.related,
        note: e.message,
        reason: e.reason,
        type_: e.type_,
        action: e.action,
        event_time: e.event_time,
        series: e.series.and_then(|s| Some(EventSeries { count: s.count.unwrap_or(0), last_observed_time: s.last_observed_time? })),
        reporting_controller: e.reporting_component,
        reporting_instance: e.reporting_instance,
        deprecated_source: e.source,
        deprecated_first_timestamp: e.first_timestamp,
        deprecated_last_timestamp: e.last_timestamp,
        deprecated_count: e.count,
    }
}

const FIELDS: &[&str] =
    &["regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "reason", "reportingController", "type"];

impl Strategy for EventsV1 {
    type Object = Event;

    const CONVERTS: bool = true;

    fn validate(&self, e: &Event) -> Vec<Cause> {
        let mut out = Vec::new();
        let required = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        if e.event_time.is_none() {
            out.push(("eventTime".into(), "Required value".into()));
        }
        for (field, v) in [
            ("reportingController", &e.reporting_controller),
            ("reportingInstance", &e.reporting_instance),
            ("action", &e.action),
            ("reason", &e.reason),
        ] {
            if required(v) {
                out.push((field.into(), "Required value".into()));
            }
        }
        let t = e.type_.as_deref().unwrap_or("");
        if t != "Normal" && t != "Warning" {
            out.push(("type".into(), format!("Invalid value: {t:?}: has invalid value: {t}")));
        }
        for (field, set) in [
            ("deprecatedSource", e.deprecated_source.is_some()),
            ("deprecatedFirstTimestamp", e.deprecated_first_timestamp.is_some()),
            ("deprecatedLastTimestamp", e.deprecated_last_timestamp.is_some()),
            ("deprecatedCount", e.deprecated_count.is_some_and(|c| c != 0)),
        ] {
            if set {
                out.push((field.into(), "Invalid value: \"\": needs to be unset".into()));
            }
        }
        if let Some(s) = &e.series
            && s.count < 2
        {
            out.push(("series.count".into(), format!("Invalid value: {}: should be at least 2", s.count)));
        }
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Message", 0)]
    }

    fn cells(&self, e: &Event, now: i64) -> Vec<Value> {
        let last = e
            .series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .map_or("<unknown>".into(), |t| human_duration(now - t.as_second()));
        let r = e.regarding.clone().unwrap_or_default();
        let object = format!("{}/{}", r.kind.unwrap_or_default().to_lowercase(), r.name.unwrap_or_default());
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![json!(last), json!(s(&e.type_)), json!(s(&e.reason)), json!(object), json!(s(&e.note))]
    }

    fn selectable(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn field(&self, e: &Event, field: &str) -> Option<String> {
        let r = e.regarding.clone().unwrap_or_default();
        let s = |v: Option<String>| v.unwrap_or_default();
        Some(match field {
            "regarding.kind" => s(r.kind),
            "regarding.namespace" => s(r.namespace),
            "regarding.name" => s(r.name),
            "regarding.uid" => s(r.uid),
            "reason" => s(e.reason.clone()),
            "reportingController" => s(e.reporting_controller.clone()),
            "type" => s(e.type_.clone()),
            _ => return None,
        })
    }

    fn to_storage(&self, obj: Value) -> Result<Value, String> {
        let e: Event = serde_json::from_value(obj).map_err(|e| e.to_string())?;
        serde_json::to_value(to_core(e)).map_err(|e| e.to_string())
    }

    fn from_storage(&self, stored: Value) -> Value {
        match serde_json::from_value::<CoreEvent>(stored.clone()) {
            Ok(core) => serde_json::to_value(from_core(core)).unwrap_or(stored),
            Err(_) => stored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_converts_to_core_and_back_without_loss() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "p.1", "namespace": "default", "resourceVersion": "9"},
            "eventTime": "2030-01-01T00:00:00.000000Z",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u"},
            "note": "pulled", "reason": "Pulled", "type": "Normal", "action": "Pull",
            "reportingController": "keel-kubelet", "reportingInstance": "node-a",
            "series": {"count": 2, "lastObservedTime": "2030-01-01T00:00:05.000000Z"}
        });
        let core = EventsV1.to_storage(v1.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "pulled");
        assert_eq!(core["reportingComponent"], "keel-kubelet");
        assert_eq!(core["series"]["count"], 2);
        assert_eq!(core["metadata"]["resourceVersion"], "9");
        assert_eq!(EventsV1.from_storage(core), v1);
    }

    #[test]
    fn a_recorder_event_is_valid_and_a_bare_one_names_what_is_missing() {
        let bare = Event { type_: Some("Sometimes".into()), ..Default::default() };
        let fields: Vec<String> = EventsV1.validate(&bare).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["eventTime", "reportingController", "reportingInstance", "action", "reason", "type"]);
    }
}
