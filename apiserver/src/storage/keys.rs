//! Where objects live in the store, as kube-apiserver lays them out:
//! `/registry/<plural>/<namespace>/<name>`, cluster-scoped `/registry/<plural>/<name>`.

use crate::registry::Resource;

/// The store key of an object.
pub fn key(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if res.namespaced => format!("/registry/{}/{ns}/{name}", res.plural),
        _ => format!("/registry/{}/{name}", res.plural),
    }
}

/// The store prefix of a collection (every namespace when `namespace` is None).
pub fn prefix(res: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if res.namespaced => format!("/registry/{}/{ns}/", res.plural),
        _ => format!("/registry/{}/", res.plural),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes_layout() {
        let Some(pods) = crate::registry::find("", "v1", "pods") else { panic!("served") };
        let Some(nodes) = crate::registry::find("", "v1", "nodes") else { panic!("served") };
        assert_eq!(key(pods, Some("default"), "p"), "/registry/pods/default/p");
        assert_eq!(key(nodes, None, "n"), "/registry/nodes/n");
        assert_eq!(prefix(pods, None), "/registry/pods/");
        assert_eq!(prefix(nodes, Some("ignored")), "/registry/nodes/");
    }
}
