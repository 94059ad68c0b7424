//! The pure part of fencing: which requests are writes, what an acknowledged write was (object,
//! owner, replicas, resourceVersion), and the one line that reports it. No I/O.
//!
//! Paths are read as kube-apiserver's `RequestInfoFactory` reads them: `/api/v1/...` (core) or
//! `/apis/<group>/<version>/...`, then `namespaces/<ns>/<resource>[/<name>[/<subresource>]]` or
//! `<resource>[/<name>[/<subresource>]]`, with `namespaces/<name>/status|finalize` being a
//! namespace's own subresource.

use http::Method;
use serde_json::Value;
use std::fmt;

/// What a mutating request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// POST: a new object (or a subresource action such as `eviction`).
    Create,
    /// PUT or PATCH of one object.
    Update,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection (`deletecollection`).
    DeleteCollection,
}

impl Verb {
    fn past(self) -> &'static str {
        match self {
            Verb::Create => "created",
            Verb::Update => "updated",
            Verb::Delete => "deleted",
            Verb::DeleteCollection => "deletedcollection",
        }
    }
}

/// A write request, read from its method and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// What it does.
    pub verb: Verb,
    /// API group (`""` for core).
    pub group: String,
    /// Resource (plural, as in the path).
    pub resource: String,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Object name (absent for a create or a collection delete).
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `binding`, `eviction`, `finalize`).
    pub subresource: Option<String>,
}

/// The write `method path` makes, or `None` for a read (GET, HEAD, OPTIONS, watches).
pub fn classify(method: &Method, path: &str) -> Option<Write> {
    let write = match *method {
        Method::POST => Verb::Create,
        Method::PUT | Method::PATCH => Verb::Update,
        Method::DELETE => Verb::Delete,
        _ => return None,
    };
    let path = path.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, more @ ..] if *resource != "status" && *resource != "finalize" => (Some(*ns), {
            let mut v = vec![*resource];
            v.extend_from_slice(more);
            v
        }),
        _ => (None, rest.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    let verb = match (write, name, subresource) {
        (Verb::Delete, None, _) => Verb::DeleteCollection,
        // A POST to a subresource of an object (binding, eviction) acts on that object.
        (v, _, _) => v,
    };
    Some(Write {
        verb,
        group: group.to_string(),
        resource: resource.to_string(),
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        subresource: subresource.map(String::from),
    })
}

impl Write {
    /// Whether an acknowledged write of this kind is reported (logged and counted): every write
    /// except status updates and Events, which say what happened rather than make it happen.
    pub fn reported(&self) -> bool {
        self.subresource.as_deref() != Some("status") && self.resource != "events"
    }
}

/// An acknowledged write, as reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Act {
    /// What was done.
    pub verb: Verb,
    /// The resource, singular (`pod`, `replicaset`), or the plural for a collection.
    pub kind: String,
    /// `namespace/name` (or `name` for cluster-scoped objects) as the apiserver gave it.
    pub key: String,
    /// The subresource written, if any.
    pub subresource: Option<String>,
    /// The controller owner, `Kind/namespace/name`.
    pub owner: Option<String>,
    /// `spec.replicas` after the write (ReplicaSets, Deployments, StatefulSets).
    pub replicas: Option<i64>,
    /// `metadata.resourceVersion` of the response: where the act sits in the store's history.
    pub rv: Option<String>,
}

/// kube's singular of a plural resource name (`endpoints` stays, `*ies` → `*y`, else drop `s`).
pub fn singular(resource: &str) -> String {
    match resource {
        "endpoints" => resource.to_string(),
        r if r.ends_with("ies") => format!("{}y", &r[..r.len() - 3]),
        r => r.strip_suffix('s').unwrap_or(r).to_string(),
    }
}

/// What `write` did, from the apiserver's answer `body` (the object written, or a `Status`).
/// The name is the one the apiserver gave (a `generateName` is resolved).
pub fn describe(write: &Write, body: &Value) -> Act {
    let is_object = body.get("kind").and_then(Value::as_str) != Some("Status");
    let meta = body.get("metadata").filter(|_| is_object);
    let field = |v: Option<&Value>, k: &str| v.and_then(|m| m.get(k)).and_then(Value::as_str).map(String::from);
    let name = field(meta, "name").or_else(|| write.name.clone()).unwrap_or_default();
    let namespace = field(meta, "namespace").or_else(|| write.namespace.clone());
    if write.verb == Verb::DeleteCollection {
        return Act {
            verb: write.verb,
            kind: write.resource.clone(),
            key: namespace.unwrap_or_default(),
            subresource: None,
            owner: None,
            replicas: None,
            rv: None,
        };
    }
    let key = match &namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name,
    };
    let owner = meta.and_then(|m| m.get("ownerReferences")).and_then(Value::as_array).and_then(|refs| {
        let r = refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
        let kind = r.get("kind").and_then(Value::as_str)?;
        let owner = r.get("name").and_then(Value::as_str)?;
        Some(match &namespace {
            Some(ns) if !ns.is_empty() => format!("{kind}/{ns}/{owner}"),
            _ => format!("{kind}/{owner}"),
        })
    });
    // A delete answers with the object as it was last stored (or a Status): its
    // resourceVersion is not the deletion's revision, so none is reported (a checker finds
    // the delete by key).
    let rv = field(meta, "resourceVersion").filter(|_| write.verb != Verb::Delete);
    let replicas = body.pointer("/spec/replicas").filter(|_| is_object && write.subresource.is_none()).and_then(Value::as_i64);
    Act { verb: write.verb, kind: singular(&write.resource), key, subresource: write.subresource.clone(), owner, replicas, rv }
}

/// `created pod=ns/name owner=ReplicaSet/ns/rs rv=42` — `key=value` fields after the verb (no
/// `rv` on deletes), so
/// one parser reads these and the scheduler's `bound` lines (the holder fields are appended by
/// the caller).
impl fmt::Display for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.verb == Verb::DeleteCollection {
            write!(f, "{} resource={} namespace={}", self.verb.past(), self.kind, self.key)?;
        } else {
            write!(f, "{} {}={}", self.verb.past(), self.kind, self.key)?;
        }
        if let Some(s) = &self.subresource {
            write!(f, " subresource={s}")?;
        }
        if let Some(o) = &self.owner {
            write!(f, " owner={o}")?;
        }
        if let Some(r) = self.replicas {
            write!(f, " replicas={r}")?;
        }
        if let Some(rv) = &self.rv {
            write!(f, " rv={rv}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(verb: Verb, group: &str, resource: &str, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> Option<Write> {
        Some(Write {
            verb,
            group: group.into(),
            resource: resource.into(),
            namespace: ns.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        })
    }

    #[test]
    fn requests_are_read_as_kube_apiservers_request_info() {
        use Verb::*;
        let table: Vec<(Method, &str, Option<Write>)> = vec![
            (Method::GET, "/api/v1/namespaces/default/pods?watch=true", None),
            (Method::GET, "/apis/apps/v1/replicasets", None),
            (Method::POST, "/api/v1/namespaces/default/pods", w(Create, "", "pods", Some("default"), None, None)),
            (Method::DELETE, "/api/v1/namespaces/d/pods/p", w(Delete, "", "pods", Some("d"), Some("p"), None)),
            (Method::DELETE, "/api/v1/namespaces/d/pods", w(DeleteCollection, "", "pods", Some("d"), None, None)),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/d/replicasets/r/status",
                w(Update, "apps", "replicasets", Some("d"), Some("r"), Some("status")),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/x?fieldManager=m",
                w(Update, "apps", "deployments", Some("d"), Some("x"), None),
            ),
            (Method::POST, "/api/v1/namespaces/d/pods/p/eviction", w(Create, "", "pods", Some("d"), Some("p"), Some("eviction"))),
            (Method::PATCH, "/api/v1/nodes/n1", w(Update, "", "nodes", None, Some("n1"), None)),
            (Method::PUT, "/api/v1/namespaces/ns1/finalize", w(Update, "", "namespaces", None, Some("ns1"), Some("finalize"))),
            (Method::PUT, "/api/v1/namespaces/ns1/status", w(Update, "", "namespaces", None, Some("ns1"), Some("status"))),
            (Method::DELETE, "/api/v1/namespaces/ns1", w(Delete, "", "namespaces", None, Some("ns1"), None)),
            (
                Method::POST,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                w(Create, "rbac.authorization.k8s.io", "clusterroles", None, None, None),
            ),
            (Method::POST, "/version", None),
        ];
        for (method, path, want) in table {
            assert_eq!(classify(&method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn status_writes_and_events_are_not_reported() {
        let status = classify(&Method::PUT, "/apis/apps/v1/namespaces/d/replicasets/r/status");
        let event = classify(&Method::POST, "/api/v1/namespaces/d/events");
        let pod = classify(&Method::POST, "/api/v1/namespaces/d/pods");
        assert_eq!([status, event, pod].map(|w| w.map(|w| w.reported())), [Some(false), Some(false), Some(true)]);
    }

    #[test]
    fn acts_read_like_the_fault_checker_expects() {
        let create = classify(&Method::POST, "/api/v1/namespaces/d/pods").expect("a write");
        let pod = json!({"kind": "Pod", "metadata": {"name": "web-abc-x1", "namespace": "d", "resourceVersion": "42",
            "ownerReferences": [{"kind": "Node", "name": "n", "controller": false}, {"kind": "ReplicaSet", "name": "web-abc", "controller": true}]}});
        assert_eq!(describe(&create, &pod).to_string(), "created pod=d/web-abc-x1 owner=ReplicaSet/d/web-abc rv=42");

        let scale = classify(&Method::PATCH, "/apis/apps/v1/namespaces/d/replicasets/web-abc").expect("a write");
        let rs = json!({"kind": "ReplicaSet", "metadata": {"name": "web-abc", "namespace": "d", "resourceVersion": "50"}, "spec": {"replicas": 3}});
        assert_eq!(describe(&scale, &rs).to_string(), "updated replicaset=d/web-abc replicas=3 rv=50");

        // An immediate delete may answer with a Status: the name comes from the path.
        let delete = classify(&Method::DELETE, "/api/v1/namespaces/d/pods/p").expect("a write");
        let status = json!({"kind": "Status", "status": "Success", "metadata": {}});
        assert_eq!(describe(&delete, &status).to_string(), "deleted pod=d/p");
        // Or with the object as last stored: its resourceVersion is not the deletion's.
        let last = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "d", "resourceVersion": "12"}});
        assert_eq!(describe(&delete, &last).to_string(), "deleted pod=d/p");

        let node = classify(&Method::PATCH, "/api/v1/nodes/n1").expect("a write");
        assert_eq!(describe(&node, &json!({"metadata": {"name": "n1", "resourceVersion": "7"}})).to_string(), "updated node=n1 rv=7");

        let all = classify(&Method::DELETE, "/api/v1/namespaces/gone/configmaps").expect("a write");
        assert_eq!(
            describe(&all, &json!({"kind": "ConfigMapList", "metadata": {"resourceVersion": "9"}})).to_string(),
            "deletedcollection resource=configmaps namespace=gone"
        );
    }

    #[test]
    fn singulars_follow_kube() {
        let table = [
            ("pods", "pod"),
            ("endpoints", "endpoints"),
            ("endpointslices", "endpointslice"),
            ("resourcequotas", "resourcequota"),
            ("policies", "policy"),
        ];
        for (plural, want) in table {
            assert_eq!(singular(plural), want);
        }
    }
}
