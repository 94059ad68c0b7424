//! The crate's one error type, and the one place that turns it into the Kubernetes `Status` the
//! apiserver writes back (kube's `apierrors.New*` constructors, with their exact messages).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use std::path::PathBuf;

/// Everything that can go wrong in keel-access, including the refusals it decides.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file named by a flag could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--token-auth-file` is not kube's CSV (the message is kube's).
    #[error("{0}")]
    TokenFile(String),
    /// A PEM key file (`--service-account-*-file`) holds no usable key.
    #[error("{0}")]
    Key(String),
    /// A certificate (client CA, client certificate) could not be parsed or built.
    #[error("{0}")]
    Certificate(String),
    /// Signing a token failed.
    #[error("signing: {0}")]
    Signing(String),
    /// The request carried credentials that do not authenticate anyone: 401 `Unauthorized`.
    /// The reason is for logs and the audit line; the client only ever sees "Unauthorized".
    #[error("Unauthorized: {0}")]
    Unauthenticated(String),
    /// 403: `<resource>[.<group>] ["<name>"] is forbidden: <detail>` (kube's `NewForbidden`).
    #[error("{}", forbidden_message(group, resource, name, detail))]
    Forbidden {
        /// API group of the resource ("" for core).
        group: String,
        /// Resource (plural), e.g. `pods`; empty when there is none.
        resource: String,
        /// Object name, empty for collections.
        name: String,
        /// What was refused and why.
        detail: String,
        /// Extra causes (NamespaceLifecycle adds `NamespaceTerminating`).
        causes: Vec<Cause>,
    },
    /// 404: `<resource>[.<group>] "<name>" not found`.
    #[error("{}", not_found_message(group, resource, name))]
    NotFound {
        /// API group.
        group: String,
        /// Resource (plural).
        resource: String,
        /// Object name.
        name: String,
    },
    /// 422: `<Kind>[.<group>] "<name>" is invalid: <field>: <message>, ...`.
    #[error("{}", invalid_message(group, kind, name, causes))]
    Invalid {
        /// API group of the kind.
        group: String,
        /// Kind, e.g. `TokenRequest`.
        kind: String,
        /// Object name.
        name: String,
        /// One per invalid field.
        causes: Vec<Cause>,
    },
    /// 400 with this message.
    #[error("{0}")]
    BadRequest(String),
    /// 500 with this message.
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

/// One `details.causes[]` entry of a Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// The field path, e.g. `spec.expirationSeconds`.
    pub field: String,
}

/// `resource.group` as kube's `GroupResource.String()`.
pub(crate) fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}

fn forbidden_message(group: &str, resource: &str, name: &str, detail: &str) -> String {
    if resource.is_empty() && group.is_empty() {
        format!("forbidden: {detail}")
    } else if name.is_empty() {
        format!("{} is forbidden: {detail}", group_resource(group, resource))
    } else {
        format!("{} {} is forbidden: {detail}", group_resource(group, resource), crate::gostr::quote(name))
    }
}

fn not_found_message(group: &str, resource: &str, name: &str) -> String {
    if name.is_empty() {
        format!("{} not found", group_resource(group, resource))
    } else {
        format!("{} {} not found", group_resource(group, resource), crate::gostr::quote(name))
    }
}

fn invalid_message(group: &str, kind: &str, name: &str, causes: &[Cause]) -> String {
    let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let mut msg = format!("{qualified} {} is invalid", crate::gostr::quote(name));
    let parts: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
    match parts.len() {
        0 => {}
        1 => msg = format!("{msg}: {}", parts[0]),
        _ => msg = format!("{msg}: [{}]", parts.join(", ")),
    }
    msg
}

fn some(s: &str) -> Option<String> {
    if s.is_empty() { None } else { Some(s.to_string()) }
}

impl Error {
    /// A 403 for a resource, with kube's message shape.
    pub fn forbidden(group: &str, resource: &str, name: &str, detail: impl Into<String>) -> Error {
        Error::Forbidden {
            group: group.to_string(),
            resource: resource.to_string(),
            name: name.to_string(),
            detail: detail.into(),
            causes: Vec::new(),
        }
    }

    /// The HTTP status code the apiserver answers with.
    pub fn code(&self) -> u16 {
        match self {
            Error::Unauthenticated(_) => 401,
            Error::Forbidden { .. } => 403,
            Error::NotFound { .. } => 404,
            Error::Invalid { .. } => 422,
            Error::BadRequest(_) => 400,
            _ => 500,
        }
    }

    /// The Kubernetes `Status` object for this error, exactly as kube-apiserver builds it.
    pub fn status(&self) -> Status {
        let (reason, details) = match self {
            Error::Unauthenticated(_) => ("Unauthorized", None),
            Error::Forbidden { group, resource, name, causes, .. } => (
                "Forbidden",
                Some(StatusDetails {
                    group: some(group),
                    kind: some(resource),
                    name: some(name),
                    causes: (!causes.is_empty()).then(|| causes.iter().map(to_cause).collect()),
                    ..Default::default()
                }),
            ),
            Error::NotFound { group, resource, name } => {
                ("NotFound", Some(StatusDetails { group: some(group), kind: some(resource), name: some(name), ..Default::default() }))
            }
            Error::Invalid { group, kind, name, causes } => (
                "Invalid",
                Some(StatusDetails {
                    group: some(group),
                    kind: some(kind),
                    name: some(name),
                    causes: Some(causes.iter().map(to_cause).collect()),
                    ..Default::default()
                }),
            ),
            Error::BadRequest(_) => ("BadRequest", None),
            _ => ("InternalError", None),
        };
        let message = match self {
            // kube never tells a client why its credentials failed.
            Error::Unauthenticated(_) => "Unauthorized".to_string(),
            other => other.to_string(),
        };
        Status {
            code: Some(i32::from(self.code())),
            details,
            message: Some(message),
            metadata: Default::default(),
            reason: Some(reason.to_string()),
            status: Some("Failure".to_string()),
        }
    }

    /// The Status as the JSON body kube writes (`{"kind":"Status","apiVersion":"v1",...}`).
    pub fn status_json(&self) -> String {
        status_json(&self.status())
    }
}

/// Serialises a Status with its `kind` and `apiVersion`, as kube writes it.
pub fn status_json(status: &Status) -> String {
    // k8s-openapi writes kind/apiVersion for top-level resources; a Status cannot fail to serialise.
    serde_json::to_string(status).unwrap_or_else(|_| String::from(r#"{"kind":"Status","apiVersion":"v1"}"#))
}

fn to_cause(c: &Cause) -> StatusCause {
    StatusCause { field: some(&c.field), message: some(&c.message), reason: some(&c.reason) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_body_is_kubes() {
        let e = Error::Unauthenticated("token expired".into());
        assert_eq!(e.code(), 401);
        let v: serde_json::Value = serde_json::from_str(&e.status_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Unauthorized","reason":"Unauthorized","code":401})
        );
    }

    #[test]
    fn forbidden_messages_follow_new_forbidden() {
        let cases = [
            ("", "pods", "", "x", "pods is forbidden: x"),
            ("apps", "deployments", "web", "x", r#"deployments.apps "web" is forbidden: x"#),
            ("", "", "", "x", "forbidden: x"),
        ];
        for (g, r, n, d, want) in cases {
            assert_eq!(Error::forbidden(g, r, n, d).to_string(), want);
        }
        let s = Error::forbidden("", "pods", "", "x").status();
        assert_eq!(s.details.unwrap().kind.as_deref(), Some("pods"));
    }

    #[test]
    fn invalid_lists_causes() {
        let c = |f: &str| Cause { reason: "FieldValueInvalid".into(), message: "bad".into(), field: f.into() };
        let one = Error::Invalid {
            group: "authentication.k8s.io".into(),
            kind: "TokenRequest".into(),
            name: "default".into(),
            causes: vec![c("a")],
        };
        assert_eq!(one.to_string(), r#"TokenRequest.authentication.k8s.io "default" is invalid: a: bad"#);
        let two = Error::Invalid { group: String::new(), kind: "Pod".into(), name: "p".into(), causes: vec![c("a"), c("b")] };
        assert_eq!(two.to_string(), r#"Pod "p" is invalid: [a: bad, b: bad]"#);
    }
}
