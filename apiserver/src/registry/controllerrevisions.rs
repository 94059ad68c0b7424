//! ControllerRevisions (`apps/v1`): the history DaemonSet (and StatefulSet) controllers keep of
//! their templates. `revision` must not be negative and `data` is required and immutable, as
//! kube's ValidateControllerRevision(Update); kubectl's columns.

use crate::registry::strategy::{Column, Strategy, age, name};
use crate::registry::validation::{Cause, immutable};
use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::{Value, json};

/// The controllerrevisions strategy.
pub struct ControllerRevisions;

impl Strategy for ControllerRevisions {
    type Object = ControllerRevision;

    fn validate(&self, r: &ControllerRevision) -> Vec<Cause> {
        let mut out = Vec::new();
        if r.data.is_none() {
            out.push(("data".into(), "Required value: data is mandatory".into()));
        }
        if r.revision < 0 {
            out.push(("revision".into(), format!("Invalid value: {}: must be greater than or equal to 0", r.revision)));
        }
        out
    }

    fn validate_update(&self, new: &ControllerRevision, old: &ControllerRevision, _status: bool) -> Vec<Cause> {
        if new.data != old.data { vec![immutable("data", "{...}")] } else { Vec::new() }
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Controller", 0), ("Revision", 0), ("Age", 0)]
    }

    fn cells(&self, r: &ControllerRevision, now: i64) -> Vec<Value> {
        let owner = r.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        let controller = owner.map_or("<none>".into(), |o| {
            let group = o.api_version.split_once('/').map_or("", |(g, _)| g);
            let kind = if group.is_empty() { o.kind.to_lowercase() } else { format!("{}.{group}", o.kind.to_lowercase()) };
            format!("{kind}/{}", o.name)
        });
        vec![json!(name(&r.metadata)), json!(controller), json!(r.revision), json!(age(&r.metadata, now))]
    }
}
