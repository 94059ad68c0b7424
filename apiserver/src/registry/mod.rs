//! The registry: what this server serves and how each kind behaves, without I/O. One row per
//! resource in [`RESOURCES`] (what discovery, storage and the handlers need) and one strategy
//! module per kind ([`strategy::Strategy`], against the kind's `k8s-openapi` type), as
//! kube-apiserver's `pkg/registry`. Discovery is generated from the table, so it lists exactly
//! what is served.
//!
//! Adding a kind: a module with its strategy and its `RESOURCE` row, and the row in [`RESOURCES`].
//!
//! Shared rules: [`meta`] (what create and update do to metadata), [`validation`],
//! [`selector`] (label and field selectors), [`strict`] (unknown fields).

pub mod meta;
pub mod quantity;
pub mod selector;
pub mod strategy;
pub mod strict;
pub mod validation;

pub mod configmaps;
pub mod controllerrevisions;
pub mod daemonsets;
pub mod deployments;
pub mod endpoints;
pub mod endpointslices;
pub mod events;
pub mod events_v1;
pub mod leases;
pub mod limitranges;
pub mod namespaces;
pub mod nodes;
pub mod pods;
pub mod priorityclasses;
pub mod rbac;
pub mod replicasets;
pub mod resourcequotas;
pub mod secrets;
pub mod service_alloc;
pub mod serviceaccounts;
pub mod services;

use strategy::Behaviour;

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
    /// `finalize` (namespaces): PUT the namespace to change its `spec.finalizers`.
    Finalize,
    /// `log` (pods): the container's log, from its kubelet.
    Log,
    /// `exec` (pods): a command in the container, over a WebSocket to its kubelet.
    Exec,
    /// `proxy` (nodes): any request to the node's kubelet (`proxy/<path>`).
    Proxy,
    /// `token` (serviceaccounts): POST a TokenRequest to get a signed token.
    Token,
}

impl Subresource {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Finalize => "finalize",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Proxy => "proxy",
            Subresource::Token => "token",
        }
    }

    /// The (group, version, kind) this subresource answers with, when not the resource's own.
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Status => None,
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
            Subresource::Finalize => None,
            Subresource::Log => Some(("", "v1", "Pod")),
            Subresource::Exec => Some(("", "v1", "PodExecOptions")),
            Subresource::Proxy => Some(("", "v1", "NodeProxyOptions")),
            Subresource::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
        }
    }

    /// The verbs served on the subresource.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
            Subresource::Finalize => &["update"],
            Subresource::Log => &["get"],
            Subresource::Exec => &["create", "get"],
            Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
        }
    }

    /// Whether a kubelet answers it (proxied by [`crate::kubelet`], not stored).
    pub fn connects(self) -> bool {
        matches!(self, Subresource::Log | Subresource::Exec | Subresource::Proxy)
    }
}

/// One served resource.
#[derive(Clone, Copy)]
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
    /// Names are DNS labels (namespaces, services: they become DNS names), else subdomains.
    pub label_names: bool,
    /// Names are path segments only (RBAC objects: `system:discovery`; kube's
    /// `ValidatePathSegmentName`), not DNS names.
    pub segment_names: bool,
    /// The kind's rules.
    pub strategy: &'static dyn Behaviour,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resource({})", self.qualified())
    }
}

/// A row with the common values; kinds override what differs.
pub const ROW: Resource = Resource {
    group: "",
    version: "v1",
    kind: "",
    plural: "",
    singular: "",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_spec: false,
    label_names: false,
    segment_names: false,
    strategy: &leases::Leases,
};

/// `status` only.
pub const STATUS: &[Subresource] = &[Subresource::Status];
/// `status` and `scale`.
pub const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const POD: &[Subresource] = &[Subresource::Status, Subresource::Binding, Subresource::Eviction, Subresource::Log, Subresource::Exec];
const NODE: &[Subresource] = &[Subresource::Status, Subresource::Proxy];
const NAMESPACE: &[Subresource] = &[Subresource::Status, Subresource::Finalize];

/// Every served resource.
pub static RESOURCES: &[Resource] = &[
    Resource {
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        subresources: NAMESPACE,
        label_names: true,
        strategy: &namespaces::Namespaces,
        ..ROW
    },
    Resource {
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        subresources: NODE,
        strategy: &nodes::Nodes,
        ..ROW
    },
    Resource {
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        categories: &["all"],
        subresources: POD,
        strategy: &pods::Pods,
        ..ROW
    },
    Resource {
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        categories: &["all"],
        subresources: STATUS,
        label_names: true,
        strategy: &services::Services,
        ..ROW
    },
    Resource {
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        strategy: &endpoints::Endpoints,
        ..ROW
    },
    Resource {
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        strategy: &configmaps::ConfigMaps,
        ..ROW
    },
    Resource {
        kind: "LimitRange",
        plural: "limitranges",
        singular: "limitrange",
        short_names: &["limits"],
        strategy: &limitranges::LimitRanges,
        ..ROW
    },
    Resource {
        kind: "ResourceQuota",
        plural: "resourcequotas",
        singular: "resourcequota",
        short_names: &["quota"],
        subresources: STATUS,
        strategy: &resourcequotas::ResourceQuotas,
        ..ROW
    },
    Resource { kind: "Secret", plural: "secrets", singular: "secret", strategy: &secrets::Secrets, ..ROW },
    Resource { kind: "Event", plural: "events", singular: "event", short_names: &["ev"], strategy: &events::Events, ..ROW },
    Resource {
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        subresources: &[Subresource::Token],
        strategy: &serviceaccounts::ServiceAccounts,
        ..ROW
    },
    Resource {
        group: "apps",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        categories: &["all"],
        subresources: STATUS_SCALE,
        has_spec: true,
        strategy: &deployments::Deployments,
        ..ROW
    },
    Resource {
        group: "apps",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        categories: &["all"],
        subresources: STATUS_SCALE,
        has_spec: true,
        strategy: &replicasets::ReplicaSets,
        ..ROW
    },
    Resource {
        group: "apps",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        categories: &["all"],
        subresources: STATUS,
        has_spec: true,
        strategy: &daemonsets::DaemonSets,
        ..ROW
    },
    Resource {
        group: "apps",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        strategy: &controllerrevisions::ControllerRevisions,
        ..ROW
    },
    Resource {
        group: "scheduling.k8s.io",
        kind: "PriorityClass",
        plural: "priorityclasses",
        singular: "priorityclass",
        namespaced: false,
        short_names: &["pc"],
        strategy: &priorityclasses::PriorityClasses,
        ..ROW
    },
    Resource {
        group: "discovery.k8s.io",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        strategy: &endpointslices::EndpointSlices,
        ..ROW
    },
    Resource {
        group: "events.k8s.io",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        strategy: &events_v1::EventsV1,
        ..ROW
    },
    Resource { group: "coordination.k8s.io", kind: "Lease", plural: "leases", singular: "lease", strategy: &leases::Leases, ..ROW },
    Resource { group: RBAC, kind: "Role", plural: "roles", singular: "role", segment_names: true, strategy: &rbac::Roles, ..ROW },
    Resource {
        group: RBAC,
        kind: "ClusterRole",
        plural: "clusterroles",
        singular: "clusterrole",
        namespaced: false,
        segment_names: true,
        strategy: &rbac::ClusterRoles,
        ..ROW
    },
    Resource {
        group: RBAC,
        kind: "RoleBinding",
        plural: "rolebindings",
        singular: "rolebinding",
        segment_names: true,
        strategy: &rbac::RoleBindings,
        ..ROW
    },
    Resource {
        group: RBAC,
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        namespaced: false,
        segment_names: true,
        strategy: &rbac::ClusterRoleBindings,
        ..ROW
    },
];

const RBAC: &str = "rbac.authorization.k8s.io";

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
        let Some(pods) = find("", "v1", "pods") else { panic!("pods served") };
        assert!(pods.strategy.round_trip(&serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).is_ok());
        let err = pods.strategy.round_trip(&serde_json::json!({"spec": {"containers": "nginx"}}));
        assert!(err.is_err(), "{err:?}");
    }
}
