//! NamespaceLifecycle admission (kube's `apiserver/pkg/admission/plugin/namespace/lifecycle`):
//! nothing is created in a namespace that does not exist (404) or is terminating (403 with the
//! `NamespaceTerminating` cause), and `default`, `kube-system` and `kube-public` cannot be
//! deleted. Deletes, cluster-scoped objects, namespaces themselves and access reviews always
//! pass.

use crate::error::{Cause, Error};

/// Namespaces that may not be deleted.
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// A mutating request, as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST.
    Create,
    /// PUT/PATCH.
    Update,
    /// DELETE.
    Delete,
    /// exec, attach, proxy, ….
    Connect,
}

/// What the apiserver knows of the request's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceState {
    /// No such namespace (after a live lookup, as kube retries its cache).
    Missing,
    /// Phase Active.
    Active,
    /// Phase Terminating.
    Terminating,
}

/// Decides one request. `resource` is (group, resource) of the request, `name` the object
/// (the namespace's own name for namespace deletes).
pub fn admit(op: Operation, resource: (&str, &str), namespace: &str, name: &str, state: NamespaceState) -> Result<(), Error> {
    let (group, res) = resource;
    if group.is_empty() && res == "namespaces" {
        if op == Operation::Delete && IMMORTAL_NAMESPACES.contains(&name) {
            return Err(Error::forbidden("", "namespaces", name, "this namespace may not be deleted"));
        }
        return Ok(());
    }
    if namespace.is_empty() || op == Operation::Delete {
        return Ok(());
    }
    if group == "authorization.k8s.io" && res == "localsubjectaccessreviews" {
        return Ok(());
    }
    match state {
        NamespaceState::Missing => Err(Error::NotFound { group: String::new(), resource: "namespaces".into(), name: namespace.into() }),
        NamespaceState::Terminating if op == Operation::Create => Err(Error::Forbidden {
            group: group.into(),
            resource: res.into(),
            name: name.into(),
            detail: format!("unable to create new content in namespace {namespace} because it is being terminated"),
            causes: vec![Cause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {namespace} is being terminated"),
                field: "metadata.namespace".into(),
            }],
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_decisions_are_kubes() {
        use NamespaceState::*;
        use Operation::*;
        let pods = ("", "pods");
        assert!(admit(Create, pods, "dev", "p", Active).is_ok());
        assert_eq!(admit(Create, pods, "gone", "p", Missing).unwrap_err().to_string(), r#"namespaces "gone" not found"#);
        assert_eq!(admit(Update, pods, "gone", "p", Missing).unwrap_err().code(), 404);
        let err = admit(Create, ("apps", "deployments"), "old", "web", Terminating).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"deployments.apps "web" is forbidden: unable to create new content in namespace old because it is being terminated"#
        );
        assert_eq!(err.status().details.unwrap().causes.unwrap()[0].reason.as_deref(), Some("NamespaceTerminating"));
        assert!(admit(Update, pods, "old", "p", Terminating).is_ok());
        assert!(admit(Delete, pods, "gone", "p", Missing).is_ok());
        assert!(admit(Create, ("", "nodes"), "", "n", Missing).is_ok());
        assert!(admit(Create, ("authorization.k8s.io", "localsubjectaccessreviews"), "gone", "", Missing).is_ok());
        assert_eq!(
            admit(Delete, ("", "namespaces"), "kube-system", "kube-system", Active).unwrap_err().to_string(),
            r#"namespaces "kube-system" is forbidden: this namespace may not be deleted"#
        );
        assert!(admit(Delete, ("", "namespaces"), "dev", "dev", Active).is_ok());
        assert!(admit(Create, ("", "namespaces"), "", "new", Missing).is_ok());
    }
}
