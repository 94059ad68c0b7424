//! The resources this server serves: one row per resource with what discovery, storage and
//! validation need. Discovery is generated from this table, so it lists exactly what is served.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A subresource served on `<object>/<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: PUT/PATCH change only `.status`; the main resource ignores `.status` changes.
    Status,
    /// `scale`: `spec.replicas` seen and set as an `autoscaling/v1` Scale.
    Scale,
    /// `binding` (pods): POST a Binding to assign the pod to a node, once.
    Binding,
    /// `eviction` (pods): POST an Eviction to delete the pod.
    Eviction,
}

impl Subresource {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
        }
    }

    /// The (group, version, kind) this subresource answers with, when not the resource's own.
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Status => None,
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
        }
    }

    /// The verbs served on the subresource.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction => &["create"],
        }
    }
}

/// One served resource.
#[derive(Clone, Copy, Debug)]
pub struct Resource {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Version (`v1`).
    pub version: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Plural, the URL segment and the store folder (`pods`).
    pub plural: &'static str,
    /// Singular (`pod`).
    pub singular: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl's short names (`po`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// True when the kind has a `spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
    /// Decodes an object into its `k8s-openapi` type and encodes it again: the schema check,
    /// and with [`crate::strict`] the unknown-field check.
    pub decode: fn(&Value) -> Result<Value, String>,
    /// Adds the kind's OpenAPI schema (and those it refers to) to a generator; its name.
    pub schema: fn(&mut schemars::SchemaGenerator) -> String,
}

fn schema<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> String {
    g.subschema_for::<T>();
    T::schema_name().into_owned()
}

fn decode<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed = T::deserialize(v).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;

const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const POD: &[Subresource] = &[Subresource::Status, Subresource::Binding, Subresource::Eviction];

/// Every served resource.
pub const RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: STATUS,
        has_spec: false,
        decode: decode::<core::Namespace>,
        schema: schema::<core::Namespace>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: STATUS,
        has_spec: false,
        decode: decode::<core::Node>,
        schema: schema::<core::Node>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: POD,
        has_spec: false,
        decode: decode::<core::Pod>,
        schema: schema::<core::Pod>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: STATUS,
        has_spec: false,
        decode: decode::<core::Service>,
        schema: schema::<core::Service>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        has_spec: false,
        decode: decode::<core::Endpoints>,
        schema: schema::<core::Endpoints>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        has_spec: false,
        decode: decode::<core::ConfigMap>,
        schema: schema::<core::ConfigMap>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_spec: false,
        decode: decode::<core::Secret>,
        schema: schema::<core::Secret>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        has_spec: false,
        decode: decode::<core::Event>,
        schema: schema::<core::Event>,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &[],
        has_spec: false,
        decode: decode::<core::ServiceAccount>,
        schema: schema::<core::ServiceAccount>,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: STATUS_SCALE,
        has_spec: true,
        decode: decode::<apps::Deployment>,
        schema: schema::<apps::Deployment>,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: STATUS_SCALE,
        has_spec: true,
        decode: decode::<apps::ReplicaSet>,
        schema: schema::<apps::ReplicaSet>,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short_names: &["ds"],
        categories: &["all"],
        subresources: STATUS,
        has_spec: true,
        decode: decode::<apps::DaemonSet>,
        schema: schema::<apps::DaemonSet>,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_spec: false,
        decode: decode::<coordination::Lease>,
        schema: schema::<coordination::Lease>,
    },
];

impl Resource {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The name Kubernetes uses in messages: `pods`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// The verbs served on the collection and its objects.
    pub fn verbs(&self) -> &'static [&'static str] {
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }

    /// Whether `sub` is served.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
}

/// The resource served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups served, core (`""`) first, each with its versions (one each here).
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_found_by_its_path() {
        for r in RESOURCES {
            let found = find(r.group, r.version, r.plural).map(|f| f.kind);
            assert_eq!(found, Some(r.kind));
        }
        assert!(find("", "v1", "deployments").is_none(), "deployments live in apps");
    }

    #[test]
    fn the_schema_check_rejects_wrong_types() {
        let pods = find("", "v1", "pods").map(|r| r.decode);
        let Some(decode) = pods else { panic!("pods served") };
        assert!(decode(&serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).is_ok());
        let err = decode(&serde_json::json!({"spec": {"containers": "nginx"}}));
        assert!(err.is_err(), "{err:?}");
    }
}
