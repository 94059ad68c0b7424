//! Audit events in kube's `audit.k8s.io/v1` shape at the `Metadata` level (who, what, when,
//! the outcome; no bodies), one JSON object per line as `--audit-log-path` writes them.
//!
//! Invariants: fields appear in kube's order with kube's names and omit-if-empty rules;
//! timestamps are RFC 3339 with microseconds (kube's `MicroTime`); the authorization decision
//! and reason go in `annotations` (`authorization.k8s.io/decision`, `.../reason`).

use crate::attributes::Attributes;
use crate::user::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// Audit stages kube records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stage {
    /// Before any handling (only logged for long-running requests' start).
    RequestReceived,
    /// Headers sent, body still streaming (watch).
    ResponseStarted,
    /// Done.
    ResponseComplete,
    /// The handler panicked.
    Panic,
}

#[derive(Serialize)]
struct AuditUser<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: &'a BTreeMap<String, Vec<String>>,
}

impl<'a> From<&'a UserInfo> for AuditUser<'a> {
    fn from(u: &'a UserInfo) -> AuditUser<'a> {
        AuditUser { username: &u.name, uid: &u.uid, groups: &u.groups, extra: &u.extra }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    resource: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    subresource: &'a str,
}

#[derive(Serialize)]
struct ResponseStatus<'a> {
    metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
    code: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: Stage,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: AuditUser<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<AuditUser<'a>>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "<[String]>::is_empty")]
    source_ips: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<ResponseStatus<'a>>,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

/// kube's `MicroTime` JSON form: `2006-01-02T15:04:05.000000Z`.
pub fn micro_time(t: Timestamp) -> String {
    format!("{}.{:06}Z", t.strftime("%Y-%m-%dT%H:%M:%S"), t.subsec_microsecond())
}

/// One request's audit facts.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The request's audit id (kube sends it back as `Audit-Id`).
    pub audit_id: &'a str,
    /// The stage logged.
    pub stage: Stage,
    /// Path and query as received.
    pub request_uri: &'a str,
    /// The authorization question (verb, objectRef); its user is the acting user.
    pub attributes: &'a Attributes,
    /// The object's name when the path names none (a create's body), as kube completes
    /// `objectRef` from the request object.
    pub object_name: &'a str,
    /// The authenticated user (the requester when impersonating).
    pub user: &'a UserInfo,
    /// The impersonated user, when there was one.
    pub impersonated: Option<&'a UserInfo>,
    /// `X-Forwarded-For` entries, then the peer address.
    pub source_ips: &'a [String],
    /// `User-Agent`.
    pub user_agent: &'a str,
    /// HTTP status of the response (None before it is known).
    pub code: Option<u16>,
    /// The Status of a failed response.
    pub failure: Option<&'a Status>,
    /// When the request arrived.
    pub received: Timestamp,
    /// When this stage was reached.
    pub stage_time: Timestamp,
    /// The authorization decision: (`allow` | `forbid`, reason).
    pub decision: Option<(&'a str, &'a str)>,
}

/// The JSON line (with `\n`) for one record.
pub fn event_line(r: &Record<'_>) -> String {
    let a = r.attributes;
    let object_ref = a.resource_request.then(|| ObjectRef {
        resource: &a.resource,
        namespace: &a.namespace,
        name: if a.name.is_empty() { r.object_name } else { &a.name },
        api_group: &a.api_group,
        api_version: &a.api_version,
        subresource: &a.subresource,
    });
    let response_status = r.code.map(|code| ResponseStatus {
        metadata: serde_json::Map::new(),
        status: r.failure.and_then(|s| s.status.as_deref()),
        message: r.failure.and_then(|s| s.message.as_deref()),
        reason: r.failure.and_then(|s| s.reason.as_deref()),
        details: r.failure.and_then(|s| s.details.as_ref()),
        code,
    });
    let mut annotations = BTreeMap::new();
    if let Some((decision, reason)) = r.decision {
        annotations.insert("authorization.k8s.io/decision", decision.to_string());
        annotations.insert("authorization.k8s.io/reason", reason.to_string());
    }
    let event = Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level: "Metadata",
        audit_id: r.audit_id,
        stage: r.stage,
        request_uri: r.request_uri,
        verb: &a.verb,
        user: r.user.into(),
        impersonated_user: r.impersonated.map(Into::into),
        source_ips: r.source_ips,
        user_agent: r.user_agent,
        object_ref,
        response_status,
        request_received_timestamp: micro_time(r.received),
        stage_timestamp: micro_time(r.stage_time),
        annotations,
    };
    let mut line = serde_json::to_string(&event).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::forbidden;

    #[test]
    fn a_metadata_event_looks_like_kubes() {
        let jane = UserInfo::new("jane", &["system:authenticated"]);
        let mut attrs = Attributes::from_request("GET", "/api/v1/namespaces/dev/pods", "limit=500");
        attrs.user = jane.clone();
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = t0.checked_add(k8s_openapi::jiff::SignedDuration::from_micros(1500)).unwrap();
        let status = forbidden(&attrs, "").status();
        let ips = ["127.0.0.1".to_string()];
        let line = event_line(&Record {
            audit_id: "a1b2",
            stage: Stage::ResponseComplete,
            request_uri: "/api/v1/namespaces/dev/pods?limit=500",
            attributes: &attrs,
            object_name: "",
            user: &jane,
            impersonated: None,
            source_ips: &ips,
            user_agent: "kubectl/v1.32.0",
            code: Some(403),
            failure: Some(&status),
            received: t0,
            stage_time: t1,
            decision: Some(("forbid", "")),
        });
        assert!(line.ends_with('\n'));
        assert_eq!(
            line.trim_end(),
            concat!(
                r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1b2","stage":"ResponseComplete","#,
                r#""requestURI":"/api/v1/namespaces/dev/pods?limit=500","verb":"list","user":{"username":"jane","groups":["system:authenticated"]},"#,
                r#""sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.32.0","objectRef":{"resource":"pods","namespace":"dev","apiVersion":"v1"},"#,
                r#""responseStatus":{"metadata":{},"status":"Failure","message":"pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"dev\"","reason":"Forbidden","details":{"kind":"pods"},"code":403},"#,
                r#""requestReceivedTimestamp":"2023-11-14T22:13:20.000000Z","stageTimestamp":"2023-11-14T22:13:20.001500Z","#,
                r#""annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}"#
            )
        );
    }

    #[test]
    fn non_resource_requests_have_no_object_ref() {
        let anon = UserInfo::anonymous();
        let mut attrs = Attributes::from_request("GET", "/healthz", "");
        attrs.user = anon.clone();
        let t = Timestamp::UNIX_EPOCH;
        let line = event_line(&Record {
            audit_id: "x",
            stage: Stage::ResponseComplete,
            request_uri: "/healthz",
            attributes: &attrs,
            object_name: "",
            user: &anon,
            impersonated: Some(&anon),
            source_ips: &[],
            user_agent: "",
            code: Some(200),
            failure: None,
            received: t,
            stage_time: t,
            decision: None,
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("objectRef").is_none());
        assert_eq!(v["verb"], "get");
        assert_eq!(v["responseStatus"], serde_json::json!({"metadata": {}, "code": 200}));
        assert_eq!(v["impersonatedUser"]["username"], "system:anonymous");
        assert_eq!(v["requestReceivedTimestamp"], "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn a_create_names_its_object_and_an_unauthenticated_user_is_empty() {
        let nobody = UserInfo::default();
        let attrs = Attributes::from_request("POST", "/api/v1/namespaces/dev/configmaps", "");
        let t = Timestamp::UNIX_EPOCH;
        let record = |object_name| Record {
            audit_id: "x",
            stage: Stage::ResponseComplete,
            request_uri: "/api/v1/namespaces/dev/configmaps",
            attributes: &attrs,
            object_name,
            user: &nobody,
            impersonated: None,
            source_ips: &[],
            user_agent: "",
            code: Some(201),
            failure: None,
            received: t,
            stage_time: t,
            decision: None,
        };
        let v: serde_json::Value = serde_json::from_str(&event_line(&record("x"))).unwrap();
        assert_eq!(v["objectRef"], serde_json::json!({"resource": "configmaps", "namespace": "dev", "name": "x", "apiVersion": "v1"}));
        // kube's UserInfo omits an empty username (a request whose authentication failed).
        assert_eq!(v["user"], serde_json::json!({}));
        let v: serde_json::Value = serde_json::from_str(&event_line(&record(""))).unwrap();
        assert!(v["objectRef"].get("name").is_none());
    }
}
