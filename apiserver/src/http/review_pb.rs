//! Protobuf bodies of the access reviews, of SelfSubjectReview and of TokenRequest: kubectl's
//! typed client sends `kubectl auth can-i`'s reviews, `kubectl auth whoami`'s review and
//! `kubectl create token`'s request as
//! `application/vnd.kubernetes.protobuf` (the `k8s\0` + `runtime.Unknown` envelope
//! of [`crate::http::protobuf`]), which this turns into the review's JSON.
//!
//! Invariant: every field of a review's spec is carried over; of its metadata only the name
//! (a review is not stored, and kube answers with what was sent; kubectl sends none) and the
//! status (which the server computes) are dropped.

use crate::error::ApiError;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use prost::Message;
use serde_json::{Map, Value, json};

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("protobuf body: {e}"))
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<String>) {
    if let Some(v) = v {
        m.insert(k.into(), json!(v));
    }
}

fn requirements<'a>(reqs: impl Iterator<Item = (&'a Option<String>, &'a Option<String>, &'a Vec<String>)>) -> Vec<Value> {
    reqs.map(|(k, op, values)| json!({"key": k.clone().unwrap_or_default(), "operator": op.clone().unwrap_or_default(), "values": values}))
        .collect()
}

fn selector(raw: Option<String>, reqs: Vec<Value>) -> Value {
    let mut m = Map::new();
    put(&mut m, "rawSelector", raw);
    if !reqs.is_empty() {
        m.insert("requirements".into(), Value::Array(reqs));
    }
    Value::Object(m)
}

fn resource_attributes(ra: authz::ResourceAttributes) -> Value {
    let mut m = Map::new();
    for (k, v) in [
        ("namespace", ra.namespace),
        ("verb", ra.verb),
        ("group", ra.group),
        ("version", ra.version),
        ("resource", ra.resource),
        ("subresource", ra.subresource),
        ("name", ra.name),
    ] {
        put(&mut m, k, v);
    }
    if let Some(fs) = ra.field_selector {
        let reqs = requirements(fs.requirements.iter().map(|r: &meta::FieldSelectorRequirement| (&r.key, &r.operator, &r.values)));
        m.insert("fieldSelector".into(), selector(fs.raw_selector, reqs));
    }
    if let Some(ls) = ra.label_selector {
        let reqs = requirements(ls.requirements.iter().map(|r: &meta::LabelSelectorRequirement| (&r.key, &r.operator, &r.values)));
        m.insert("labelSelector".into(), selector(ls.raw_selector, reqs));
    }
    Value::Object(m)
}

fn attributes(m: &mut Map<String, Value>, ra: Option<authz::ResourceAttributes>, na: Option<authz::NonResourceAttributes>) {
    if let Some(ra) = ra {
        m.insert("resourceAttributes".into(), resource_attributes(ra));
    }
    if let Some(na) = na {
        let mut n = Map::new();
        put(&mut n, "path", na.path);
        put(&mut n, "verb", na.verb);
        m.insert("nonResourceAttributes".into(), Value::Object(n));
    }
}

fn subject_spec(s: authz::SubjectAccessReviewSpec) -> Value {
    let mut m = Map::new();
    attributes(&mut m, s.resource_attributes, s.non_resource_attributes);
    put(&mut m, "user", s.user);
    put(&mut m, "uid", s.uid);
    if !s.groups.is_empty() {
        m.insert("groups".into(), json!(s.groups));
    }
    if !s.extra.is_empty() {
        let extra: Map<String, Value> = s.extra.into_iter().map(|(k, v)| (k, json!(v.items))).collect();
        m.insert("extra".into(), Value::Object(extra));
    }
    Value::Object(m)
}

fn review(kind: &str, name: Option<String>, spec: Value) -> Value {
    let mut md = Map::new();
    put(&mut md, "name", name);
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": kind, "metadata": md, "spec": spec})
}

/// The JSON review a protobuf body holds.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let (api_version, kind, raw) = crate::http::protobuf::envelope(body)?;
    let raw = raw.as_slice();
    let name = |m: Option<meta::ObjectMeta>| m.and_then(|m| m.name);
    Ok(match (api_version.as_str(), kind.as_str()) {
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            let r = authz::SelfSubjectAccessReview::decode(raw).map_err(bad)?;
            let mut spec = Map::new();
            if let Some(s) = r.spec {
                attributes(&mut spec, s.resource_attributes, s.non_resource_attributes);
            }
            review(&kind, name(r.metadata), Value::Object(spec))
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            let r = authz::SelfSubjectRulesReview::decode(raw).map_err(bad)?;
            let mut spec = Map::new();
            put(&mut spec, "namespace", r.spec.and_then(|s| s.namespace));
            review(&kind, name(r.metadata), Value::Object(spec))
        }
        ("authorization.k8s.io/v1", "SubjectAccessReview") => {
            let r = authz::SubjectAccessReview::decode(raw).map_err(bad)?;
            review(&kind, name(r.metadata), r.spec.map_or_else(|| json!({}), subject_spec))
        }
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview") => {
            let r = authz::LocalSubjectAccessReview::decode(raw).map_err(bad)?;
            review(&kind, name(r.metadata), r.spec.map_or_else(|| json!({}), subject_spec))
        }
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {
            let r = authn::SelfSubjectReview::decode(raw).map_err(bad)?;
            let mut md = Map::new();
            put(&mut md, "name", name(r.metadata).filter(|n| !n.is_empty()));
            json!({"apiVersion": api_version, "kind": kind, "metadata": md})
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            let r = authn::TokenRequest::decode(raw).map_err(bad)?;
            let mut md = Map::new();
            if let Some(m) = r.metadata {
                put(&mut md, "name", m.name.filter(|n| !n.is_empty()));
                put(&mut md, "namespace", m.namespace.filter(|n| !n.is_empty()));
            }
            let mut spec = Map::new();
            if let Some(s) = r.spec {
                spec.insert("audiences".into(), json!(s.audiences));
                if let Some(e) = s.expiration_seconds {
                    spec.insert("expirationSeconds".into(), json!(e));
                }
                if let Some(b) = s.bound_object_ref {
                    let mut r = Map::new();
                    for (k, v) in [("kind", b.kind), ("apiVersion", b.api_version), ("name", b.name), ("uid", b.u_id)] {
                        put(&mut r, k, v.filter(|v| !v.is_empty()));
                    }
                    spec.insert("boundObjectRef".into(), Value::Object(r));
                }
            }
            json!({"apiVersion": api_version, "kind": kind, "metadata": md, "spec": spec})
        }
        _ => return Err(ApiError::Unsupported(format!("protobuf bodies of {api_version}, Kind={kind} are not served here; send JSON"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(TypeMeta { api_version: Some("authorization.k8s.io/v1".into()), kind: Some(kind.into()) }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = b"k8s\0".to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn reviews_in_protobuf_read_as_their_json() {
        let ssar = authz::SelfSubjectAccessReview {
            spec: Some(authz::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(authz::ResourceAttributes {
                    namespace: Some("dev".into()),
                    verb: Some("create".into()),
                    group: Some("apps".into()),
                    resource: Some("deployments".into()),
                    field_selector: Some(authz::FieldSelectorAttributes {
                        raw_selector: Some("spec.nodeName=n1".into()),
                        requirements: vec![],
                    }),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
            ..Default::default()
        };
        let v = decode(&envelope("SelfSubjectAccessReview", ssar.encode_to_vec())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v["spec"],
            json!({"resourceAttributes": {"namespace": "dev", "verb": "create", "group": "apps", "resource": "deployments",
                "fieldSelector": {"rawSelector": "spec.nodeName=n1"}}})
        );
        let sar = authz::SubjectAccessReview {
            spec: Some(authz::SubjectAccessReviewSpec {
                non_resource_attributes: Some(authz::NonResourceAttributes { path: Some("/healthz".into()), verb: Some("get".into()) }),
                user: Some("jane".into()),
                groups: vec!["devs".into()],
                extra: [("k".to_string(), authz::ExtraValue { items: vec!["v".into()] })].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("SubjectAccessReview", sar.encode_to_vec())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v["spec"],
            json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}, "user": "jane", "groups": ["devs"], "extra": {"k": ["v"]}})
        );
        let rules = authz::SelfSubjectRulesReview {
            spec: Some(authz::SelfSubjectRulesReviewSpec { namespace: Some("dev".into()) }),
            ..Default::default()
        };
        let v = decode(&envelope("SelfSubjectRulesReview", rules.encode_to_vec())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((v["kind"].clone(), v["spec"].clone()), (json!("SelfSubjectRulesReview"), json!({"namespace": "dev"})));
        assert!(decode(&envelope("TokenReview", vec![])).is_err());
    }
}
