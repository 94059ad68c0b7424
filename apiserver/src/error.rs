//! The crate's one error type, and its one mapping to what Kubernetes clients understand: a
//! `Status` object (`kind: Status`, `status: Failure`, `reason`, `code`, `details`) with the
//! HTTP code of the same number. kubectl prints `Error from server (<reason>): <message>`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A field another manager owns with a different value (a server-side apply conflict).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    /// The other manager.
    pub manager: String,
    /// The API version it wrote through.
    pub api_version: String,
    /// The field, printed as Kubernetes prints it.
    pub field: String,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object does not exist (404 NotFound).
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Plural resource name, with its group (`deployments.apps`) as Kubernetes prints it.
        resource: String,
        /// Object name.
        name: String,
    },
    /// A create found an object of that name (409 AlreadyExists).
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The object changed since the client read it (409 Conflict).
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// A server-side apply sets fields other managers own to other values (409 Conflict).
    #[error("Apply failed with {} conflict{}: {}", conflicts.len(), if conflicts.len() == 1 { "" } else { "s" }, conflicts.iter().map(|c| format!("conflict with {:?} using {}: {}", c.manager, c.api_version, c.field)).collect::<Vec<_>>().join(", "))]
    ApplyConflict {
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// The conflicting fields.
        conflicts: Vec<FieldConflict>,
    },
    /// A Binding for a pod that already has a node (409 Conflict).
    #[error("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{node}\"")]
    AlreadyBound {
        /// Pod name.
        name: String,
        /// Its node.
        node: String,
    },
    /// The object's state does not allow the request (409 Conflict), with why: a precondition
    /// that failed, a pod being deleted that cannot be bound.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {why}")]
    Refused {
        /// Plural resource name (`pods`, `pods/binding`).
        resource: String,
        /// Object name.
        name: String,
        /// Why.
        why: String,
    },
    /// An admission check refused the request (403 Forbidden), with why.
    #[error("{}", if name.is_empty() { format!("{resource} is forbidden: {why}") } else { format!("{resource} \"{name}\" is forbidden: {why}") })]
    Forbidden {
        /// Plural resource name.
        resource: String,
        /// Object name (empty when it has none yet).
        name: String,
        /// Why.
        why: String,
    },
    /// A create in a namespace being deleted (403 Forbidden, kube's NamespaceLifecycle, with the
    /// `NamespaceTerminating` cause controllers match on).
    #[error("{resource} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated")]
    NamespaceTerminating {
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The object fails validation (422 Invalid), with one cause per field.
    #[error("{kind} \"{name}\" is invalid: {}", causes.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join(", "))]
    Invalid {
        /// Kind (`Pod`).
        kind: String,
        /// Object name.
        name: String,
        /// (field path, message).
        causes: Vec<(String, String)>,
    },
    /// The request cannot be understood (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// A namespaced object in a namespace that does not exist (404 NotFound, as Kubernetes).
    #[error("namespaces \"{0}\" not found")]
    NamespaceNotFound(String),
    /// A resourceVersion or continue token older than what is kept (410 Expired / Gone).
    #[error("{0}")]
    Gone(String),
    /// A list asked for a resourceVersion newer than the store's (504 Timeout, with the
    /// `ResourceVersionTooLarge` cause clients retry on).
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// The resourceVersion asked for.
        requested: i64,
        /// The store's revision.
        current: i64,
    },
    /// The body's media type is not one this server decodes (415).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    )]
    UnsupportedMediaType,
    /// A media type this server knows but does not serve yet, or a request it cannot apply
    /// (415), with why.
    #[error("{0}")]
    Unsupported(String),
    /// The verb is not served on this path (405).
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// The path names no resource (404 NotFound, reason NotFound with no details).
    #[error("the server could not find the requested resource")]
    NoSuchPath,
    /// The body is larger than the 3 MiB Kubernetes accepts (413).
    #[error("the request is too large: limit is {limit} bytes")]
    TooLarge {
        /// Bytes accepted.
        limit: usize,
    },
    /// The store failed or is unreachable (503 ServiceUnavailable / 500 InternalError).
    #[error("storage: {0}")]
    Store(String),
    /// A kubelet could not be reached, or answered a proxied `log`/`exec` with an error: its
    /// status code (400 for a waiting container, 404 for a pod it does not run, 500 when
    /// unreachable) and its text, as kube's `GenericHttpResponseChecker` reports it.
    #[error("{message}")]
    Kubelet {
        /// The HTTP code answered.
        code: u16,
        /// The kubelet's text (or why it could not be reached).
        message: String,
    },
    /// keel-access refused (an admission core: NodeRestriction; a review's validation), with
    /// its own code and Status, which are kube's.
    #[error("{0}")]
    Access(keel_access::Error),
    /// A value read from the store is not an object this server wrote (500).
    #[error("stored object at {key} is corrupt: {reason}")]
    Corrupt {
        /// Store key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl ApiError {
    /// The HTTP code and the Status `reason`.
    pub fn code_reason(&self) -> (u16, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NamespaceNotFound(_) | ApiError::NoSuchPath => (404, "NotFound"),
            ApiError::AlreadyExists { .. } => (409, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } | ApiError::AlreadyBound { .. } | ApiError::Refused { .. } => {
                (409, "Conflict")
            }
            ApiError::Invalid { .. } => (422, "Invalid"),
            ApiError::Forbidden { .. } | ApiError::NamespaceTerminating { .. } => (403, "Forbidden"),
            ApiError::BadRequest(_) => (400, "BadRequest"),
            ApiError::Gone(_) => (410, "Expired"),
            ApiError::TooLargeResourceVersion { .. } => (504, "Timeout"),
            ApiError::UnsupportedMediaType | ApiError::Unsupported(_) => (415, "UnsupportedMediaType"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::TooLarge { .. } => (413, "RequestEntityTooLarge"),
            ApiError::Store(_) => (503, "ServiceUnavailable"),
            ApiError::Corrupt { .. } => (500, "InternalError"),
            ApiError::Kubelet { code, .. } => (*code, reason_of(*code)),
            ApiError::Access(e) => (e.code(), reason_of(e.code())),
        }
    }

    /// The `Status` object Kubernetes answers with.
    pub fn status(&self) -> Value {
        if let ApiError::Access(e) = self {
            return serde_json::from_str(&e.status_json()).unwrap_or_else(|_| json!({"kind": "Status", "message": e.to_string()}));
        }
        let (code, reason) = self.code_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code,
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name }
            | ApiError::Refused { resource, name, .. }
            | ApiError::Forbidden { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                Some(json!({ "name": name, "group": group, "kind": kind }))
            }
            ApiError::NamespaceNotFound(name) => Some(json!({ "name": name, "kind": "namespaces" })),
            ApiError::ApplyConflict { resource, name, conflicts } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?} using {}", c.manager, c.api_version), "field": c.field}))
                    .collect();
                Some(json!({ "name": name, "group": group, "kind": kind, "causes": causes }))
            }
            ApiError::NamespaceTerminating { resource, name, namespace } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                Some(json!({"name": name, "group": group, "kind": kind, "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {namespace} is being terminated"),
                    "field": "metadata.namespace",
                }]}))
            }
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            ApiError::Invalid { kind, name, causes } => Some(json!({
                "name": name,
                "kind": kind,
                "causes": causes.iter().map(|(f, m)| json!({ "reason": "FieldValueInvalid", "message": m, "field": f })).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// The `Status` reason Kubernetes gives an HTTP code (apimachinery's
/// `NewGenericServerResponse`).
pub fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

impl ApiError {
    /// A kubelet's error answer (`code`, `body`) as kube-apiserver passes it on: a 500 becomes
    /// `Internal error occurred: …`, anything else keeps its code with the kubelet's text.
    pub fn from_kubelet(code: u16, body: &str) -> ApiError {
        let text = body.trim_end().to_string();
        match code {
            500 => ApiError::Kubelet { code, message: format!("Internal error occurred: {text}") },
            _ => ApiError::Kubelet { code, message: text },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_reason();
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let status = self.status();
        let body = status.to_string();
        let mut response = (code, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
        // For the audit line's responseStatus.
        response.extensions_mut().insert(crate::http::audit::Failure(std::sync::Arc::new(status)));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_kubernetes() {
        let e = ApiError::NotFound { resource: "deployments.apps".into(), name: "web".into() };
        let s = e.status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_its_causes() {
        let e = ApiError::Invalid { kind: "Pod".into(), name: "p".into(), causes: vec![("metadata.name".into(), "bad".into())] };
        let s = e.status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["message"], "Pod \"p\" is invalid: metadata.name: bad");
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    }
}
