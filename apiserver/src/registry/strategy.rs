//! The per-kind behaviour, as kube-apiserver's registry strategies: one [`Strategy`] per kind,
//! written against its `k8s-openapi` type, and [`Behaviour`], the same seen through JSON so
//! the REST layer handles every kind alike (objects are stored and served as JSON; the typed
//! decode is the schema check and what the per-kind rules read).
//!
//! A write goes: decode (the schema check; unknown fields are dropped, or refused with
//! `fieldValidation=Strict`) → [`Strategy::default`] → on create [`Strategy::prepare_create`]
//! (what a create resets, such as status) → [`Strategy::validate`] (and on update
//! [`Strategy::validate_update`] against the stored object) → encode.

use crate::error::ApiError;
use crate::registry::validation::{self, Cause};
use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A Table column: its name and priority (1: shown with `-o wide`).
pub type Column = (&'static str, u8);

/// The columns of a kind that declares none (as Kubernetes' default printer).
pub const NAME_AGE: &[Column] = &[("Name", 0), ("Age", 0)];

/// What a DELETE does with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Gone now (or, with finalizers, marked and gone when they are).
    Now,
    /// Marked with `deletionTimestamp` and `deletionGracePeriodSeconds` = this, and gone when
    /// its owner (the kubelet) deletes it again with grace 0.
    Graceful(i64),
}

/// What the REST layer tells a strategy about a write.
#[derive(Clone, Copy, Debug, Default)]
pub struct Write<'a> {
    /// The stored object the write replaces (None: a create).
    pub old: Option<&'a Value>,
    /// Whether it came through `/status`.
    pub status: bool,
    /// The API version written through (`v1`, `apps/v1`), for messages.
    pub version: &'a str,
}

/// One kind's rules.
pub trait Strategy: Send + Sync + 'static {
    /// The kind's `k8s-openapi` type.
    type Object: DeserializeOwned + Serialize + schemars::JsonSchema + k8s_openapi::Metadata<Ty = ObjectMeta> + Send + Sync;

    /// What a create resets (Kubernetes' PrepareForCreate: most kinds' status).
    fn prepare_create(&self, _obj: &mut Self::Object) {}

    /// Why the object cannot be decoded as Kubernetes decodes it, when its JSON fits the type
    /// but a value does not parse (a quantity that is not one): a 400.
    fn malformed(&self, _obj: &Self::Object) -> Option<String> {
        None
    }

    /// Fills in what Kubernetes fills in, on create and update.
    fn default(&self, _obj: &mut Self::Object) {}

    /// What an update changes beyond the client's object (kube's PrepareForUpdate): `status` is
    /// whether it came through `/status`.
    fn prepare_update(&self, _new: &mut Self::Object, _old: &Self::Object, _status: bool) {}

    /// Metadata fields a write through `/status` keeps as stored (besides the server's own).
    fn status_resets(&self) -> &'static [&'static str] {
        &[]
    }

    /// Why the (defaulted) object is invalid; empty when it is valid.
    fn validate(&self, _obj: &Self::Object) -> Vec<Cause> {
        Vec::new()
    }

    /// Why an update from `old` is not allowed (immutable fields); on top of [`Self::validate`].
    fn validate_update(&self, _new: &Self::Object, _old: &Self::Object, _status: bool) -> Vec<Cause> {
        Vec::new()
    }

    /// The Table columns `kubectl get` prints.
    fn columns(&self) -> &'static [Column] {
        NAME_AGE
    }

    /// One row's cells, one per column; `now` in seconds.
    fn cells(&self, obj: &Self::Object, now: i64) -> Vec<Value> {
        vec![json!(name(obj.metadata())), json!(age(obj.metadata(), now))]
    }

    /// Fields a field selector may name beside `metadata.name` and `metadata.namespace`.
    fn selectable(&self) -> &'static [&'static str] {
        &[]
    }

    /// The value of selectable field `field` (as a selector compares it: a string).
    fn field(&self, _obj: &Self::Object, _field: &str) -> Option<String> {
        None
    }

    /// What a DELETE does (`grace`: the request's gracePeriodSeconds).
    fn deletion(&self, _obj: &Self::Object, _grace: Option<i64>) -> Deletion {
        Deletion::Now
    }

    /// True when [`Self::to_storage`] and [`Self::from_storage`] convert (else they are the identity).
    const CONVERTS: bool = false;

    /// The stored form of an object (JSON of this kind): the same, unless the kind is stored as
    /// another version (events.k8s.io Events are stored as core/v1 Events).
    fn to_storage(&self, obj: Value) -> Result<Value, String> {
        Ok(obj)
    }

    /// The object, of this kind, that a stored form is.
    fn from_storage(&self, stored: Value) -> Value {
        stored
    }
}

/// A [`Strategy`] through JSON: what the rest of the server calls.
pub trait Behaviour: Send + Sync {
    /// The object as stored: decoded (the schema check), reset on create, defaulted, validated,
    /// encoded. With `strict`, a field the schema does not know is a 400.
    fn finish(&self, kind: &str, obj: Value, write: Write<'_>, strict: bool) -> Result<Value, ApiError>;
    /// The object decoded into its type and encoded again (the schema's form).
    fn round_trip(&self, obj: &Value) -> Result<Value, String>;
    /// Metadata fields a write through `/status` keeps as stored.
    fn status_resets(&self) -> &'static [&'static str];
    /// Table columns.
    fn columns(&self) -> &'static [Column];
    /// One row's cells.
    fn cells(&self, obj: &Value, now: i64) -> Vec<Value>;
    /// Selectable fields (beside name and namespace).
    fn selectable(&self) -> &'static [&'static str];
    /// The selectable fields' values.
    fn fields(&self, obj: &Value) -> BTreeMap<&'static str, String>;
    /// What a DELETE does.
    fn deletion(&self, obj: &Value, grace: Option<i64>) -> Deletion;
    /// Adds the kind's OpenAPI schema (and those it refers to) to `g`; its name.
    fn schema(&self, g: &mut schemars::SchemaGenerator) -> String;
    /// Whether stored forms are converted (else both conversions are the identity).
    fn converts(&self) -> bool;
    /// The stored form of an object of this resource.
    fn to_storage(&self, obj: Value) -> Result<Value, ApiError>;
    /// The object a stored form is, for this resource.
    fn from_storage(&self, stored: Value) -> Value;
}

fn decode<S: Strategy>(kind: &str, obj: &Value) -> Result<S::Object, ApiError> {
    S::Object::deserialize(obj).map_err(|e| ApiError::BadRequest(format!("{kind} in body: {e}")))
}

fn encode<T: Serialize>(obj: &T) -> Result<Value, ApiError> {
    serde_json::to_value(obj).map_err(|e| ApiError::BadRequest(format!("encoding: {e}")))
}

impl<S: Strategy> Behaviour for S {
    fn finish(&self, kind: &str, obj: Value, write: Write<'_>, strict: bool) -> Result<Value, ApiError> {
        let mut typed = decode::<S>(kind, &obj)?;
        if strict {
            let unknown = crate::registry::strict::unknown_fields(&obj, &encode(&typed)?);
            if !unknown.is_empty() {
                let list: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
                return Err(ApiError::BadRequest(format!("strict decoding error: {}", list.join(", "))));
            }
        }
        if let Some(why) = self.malformed(&typed) {
            return Err(ApiError::BadRequest(format!("{kind} in version {:?} cannot be handled as a {kind}: {why}", write.version)));
        }
        self.default(&mut typed);
        let old = write.old.map(|o| decode::<S>(kind, o)).transpose()?;
        match &old {
            None => self.prepare_create(&mut typed),
            Some(old) => self.prepare_update(&mut typed, old, write.status),
        }
        let mut causes = validation::object_meta(typed.metadata());
        causes.extend(self.validate(&typed));
        if let Some(old) = &old {
            causes.extend(self.validate_update(&typed, old, write.status));
        }
        if !causes.is_empty() {
            return Err(ApiError::Invalid { kind: kind.into(), name: name(typed.metadata()).into(), causes });
        }
        encode(&typed)
    }

    fn round_trip(&self, obj: &Value) -> Result<Value, String> {
        let typed = S::Object::deserialize(obj).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }

    fn status_resets(&self) -> &'static [&'static str] {
        Strategy::status_resets(self)
    }

    fn columns(&self) -> &'static [Column] {
        Strategy::columns(self)
    }

    fn cells(&self, obj: &Value, now: i64) -> Vec<Value> {
        match S::Object::deserialize(obj) {
            Ok(typed) => Strategy::cells(self, &typed, now),
            // Stored by this server, so it decodes; if it ever did not, the row still has its name.
            Err(_) => {
                let mut cells = vec![json!(obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""))];
                cells.resize(Strategy::columns(self).len(), json!(""));
                cells
            }
        }
    }

    fn selectable(&self) -> &'static [&'static str] {
        Strategy::selectable(self)
    }

    fn fields(&self, obj: &Value) -> BTreeMap<&'static str, String> {
        let Ok(typed) = S::Object::deserialize(obj) else { return BTreeMap::new() };
        Strategy::selectable(self).iter().filter_map(|f| Some((*f, self.field(&typed, f)?))).collect()
    }

    fn deletion(&self, obj: &Value, grace: Option<i64>) -> Deletion {
        match S::Object::deserialize(obj) {
            Ok(typed) => Strategy::deletion(self, &typed, grace),
            Err(_) => Deletion::Now,
        }
    }

    fn converts(&self) -> bool {
        S::CONVERTS
    }

    fn to_storage(&self, obj: Value) -> Result<Value, ApiError> {
        Strategy::to_storage(self, obj).map_err(|e| ApiError::BadRequest(format!("converting for storage: {e}")))
    }

    fn from_storage(&self, stored: Value) -> Value {
        Strategy::from_storage(self, stored)
    }

    fn schema(&self, g: &mut schemars::SchemaGenerator) -> String {
        g.subschema_for::<S::Object>();
        <S::Object as schemars::JsonSchema>::schema_name().into_owned()
    }
}

/// `metadata.name`.
pub fn name(m: &ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

/// The age column: how long ago the object was created, as kubectl prints it.
pub fn age(m: &ObjectMeta, now: i64) -> String {
    match &m.creation_timestamp {
        Some(t) => human_duration(now - t.0.as_second()),
        None => "<unknown>".into(),
    }
}

/// `<none>` for an empty cell, as kubectl prints one.
pub fn or_none(v: impl Into<String>) -> String {
    let v = v.into();
    if v.is_empty() { "<none>".into() } else { v }
}

/// `k=v,k2=v2` of a map (selectors, node selectors).
pub fn pairs(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// How long ago, as kubectl prints ages (`42s`, `5m3s`, `3h`, `12d`, `2y30d`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", d / 365, d % 365)
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        let table = [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ];
        for (secs, want) in table {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn every_kind_has_a_cell_per_column() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        for r in crate::registry::RESOURCES {
            assert_eq!(r.strategy.cells(&obj, 0).len(), r.strategy.columns().len(), "{}", r.kind);
        }
    }
}
