//! Discovery, generated from [`crate::registry::RESOURCES`] and the [`VIRTUAL`] resources
//! (served, not stored): `/version`, the legacy documents
//! (`/api`, `/apis`, `/api/v1`, `/apis/<group>`, `/apis/<group>/<version>`) and aggregated
//! discovery (`apidiscovery.k8s.io/v2`, which kubectl 1.32 asks for on `/api` and `/apis` and
//! recognises only by the response's Content-Type).

use crate::registry::{self, RESOURCES, Resource};
use serde_json::{Value, json};

/// The Kubernetes version whose types this server serves (`k8s-openapi`'s `v1_33`). The kubectl
/// dispatcher picks the kubectl binary of this minor version.
pub const KUBERNETES_MINOR: &str = "33";

/// The Content-Type of an aggregated discovery answer.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the Accept header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList")
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0"),
        "gitCommit": concat!("keel-", env!("CARGO_PKG_VERSION")),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

fn of_group<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

fn scope(r: &Resource) -> &'static str {
    if r.namespaced { "Namespaced" } else { "Cluster" }
}

fn aggregated_resource(r: &Resource) -> Value {
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let kind = s.response_kind().map_or(kind.clone(), |(g, v, k)| json!({"group": g, "version": v, "kind": k}));
            json!({"subresource": s.name(), "responseKind": kind, "verbs": s.verbs()})
        })
        .collect();
    let mut v = json!({
        "resource": r.plural,
        "responseKind": kind,
        "scope": scope(r),
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

/// A resource served but not stored (so not in the registry): metrics.k8s.io, from the
/// kubelets' summaries, and the access reviews of authorization.k8s.io, answered by the
/// authorizer.
pub struct Virtual {
    /// Plural name.
    pub plural: &'static str,
    /// Singular name (metrics-server registers none).
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Verbs.
    pub verbs: &'static [&'static str],
}

/// metrics.k8s.io.
pub const METRICS_GROUP: &str = "metrics.k8s.io";
/// Its one version.
pub const METRICS_VERSION: &str = "v1beta1";
/// authorization.k8s.io.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
/// authentication.k8s.io (of its resources only `selfsubjectreviews`, what `kubectl auth
/// whoami` sends; TokenRequest is the core `serviceaccounts/token` subresource).
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

const fn virt(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
) -> Virtual {
    Virtual { plural, singular, kind, namespaced, verbs }
}

/// The groups of [`Virtual`] resources, as metrics-server and kube-apiserver register them.
pub const VIRTUAL: &[(&str, &str, &[Virtual])] = &[
    (AUTHENTICATION_GROUP, "v1", &[virt("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", false, &["create"])]),
    (
        AUTHORIZATION_GROUP,
        "v1",
        &[
            virt("localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", true, &["create"]),
            virt("selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview", false, &["create"]),
            virt("selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview", false, &["create"]),
            virt("subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", false, &["create"]),
        ],
    ),
    (
        METRICS_GROUP,
        METRICS_VERSION,
        &[virt("nodes", "", "NodeMetrics", false, &["get", "list"]), virt("pods", "", "PodMetrics", true, &["get", "list"])],
    ),
];

fn virtual_aggregated((group, version, resources): &(&str, &str, &[Virtual])) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|r| {
            json!({
                "resource": r.plural,
                "responseKind": {"group": group, "version": version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            })
        })
        .collect();
    json!({
        "metadata": {"name": group, "creationTimestamp": null},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

/// Every served group and version: the registry's, then the virtual ones.
fn all_groups() -> Vec<(&'static str, &'static str)> {
    registry::groups().into_iter().chain(VIRTUAL.iter().map(|(g, v, _)| (*g, *v))).collect()
}

/// The aggregated document for the core group (`core: true`, `/api`) or every other group (`/apis`).
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, v)| {
            let resources: Vec<Value> = of_group(g, v).map(aggregated_resource).collect();
            json!({
                "metadata": {"name": g, "creationTimestamp": null},
                "versions": [{"version": v, "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    let items: Vec<Value> = items.into_iter().chain(VIRTUAL.iter().filter(|_| !core).map(virtual_aggregated)).collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(g: &str, v: &str) -> Value {
    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
    json!({"name": g, "versions": [gv], "preferredVersion": gv})
}

/// Legacy `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = all_groups().into_iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/<group>`, if served.
pub fn group(g: &str) -> Option<Value> {
    let (g, v) = all_groups().into_iter().find(|(name, _)| *name == g && !g.is_empty())?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// Legacy `/api/v1` and `/apis/<group>/<version>`, if served.
pub fn resource_list(g: &str, v: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for (_, _, list) in VIRTUAL.iter().filter(|(vg, vv, _)| (*vg, *vv) == (g, v)) {
        for r in *list {
            resources
                .push(json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs}));
        }
    }
    for r in of_group(g, v) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in r.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, s.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": s.verbs(),
            });
            if let Some((g, v, k)) = s.response_kind() {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
                entry["kind"] = json!(k);
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if g.is_empty() { v.to_string() } else { format!("{g}/{v}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_lists_every_served_resource_once() {
        let core = aggregated(true);
        let others = aggregated(false);
        let count = |d: &Value| -> usize {
            d["items"].as_array().into_iter().flatten().map(|i| i["versions"][0]["resources"].as_array().map_or(0, Vec::len)).sum()
        };
        let virtual_count: usize = VIRTUAL.iter().map(|(_, _, r)| r.len()).sum();
        assert_eq!(count(&core) + count(&others), RESOURCES.len() + virtual_count);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let apps = others["items"].as_array().into_iter().flatten().find(|i| i["metadata"]["name"] == "apps");
        let Some(apps) = apps else { panic!("apps served: {others}") };
        let deploy = &apps["versions"][0]["resources"].as_array().into_iter().flatten().find(|r| r["resource"] == "deployments");
        assert_eq!(deploy.map(|d| d["shortNames"].clone()), Some(json!(["deploy"])));
    }

    #[test]
    fn legacy_lists_name_subresources() {
        let Some(v1) = resource_list("", "v1") else { panic!("core served") };
        let names: Vec<&str> = v1["resources"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"namespaces"));
        assert!(resource_list("batch", "v1").is_none());
        assert_eq!(group("apps").map(|g| g["preferredVersion"]["groupVersion"].clone()), Some(json!("apps/v1")));
        let Some(authz) = resource_list(AUTHORIZATION_GROUP, "v1") else { panic!("authorization.k8s.io served") };
        let ssar = authz["resources"].as_array().into_iter().flatten().find(|r| r["name"] == "selfsubjectaccessreviews");
        assert_eq!(ssar.map(|r| (r["verbs"].clone(), r["namespaced"].clone())), Some((json!(["create"]), json!(false))));
    }
}
