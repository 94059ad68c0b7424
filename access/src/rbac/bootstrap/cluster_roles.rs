//! kube's `ClusterRoles()` and `NodeRules()` (bootstrappolicy/policy.go), 1.33.

use super::{cluster_role, events_rule, meta, new_rule};
use k8s_openapi::api::rbac::v1::{AggregationRule, ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

const AGG_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGG_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGG_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

fn aggregating(name: &str, selects: &str, labels: &[(&str, &str)]) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([(selects.to_string(), "true".to_string())].into()),
                match_expressions: None,
            }]),
        }),
    }
}

fn labelled(name: &str, label: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: meta(None, name, &[(label, "true")]), rules: Some(rules), aggregation_rule: None }
}

/// What the Node authorizer allows every kubelet outside the objects it checks per node
/// (kube's `NodeRules()`); also the rules of the `system:node` ClusterRole.
pub fn node_rules() -> Vec<PolicyRule> {
    vec![
        new_rule(&["create"]).groups(&["authentication.k8s.io"]).resources(&["tokenreviews"]).rule(),
        new_rule(&["create"]).groups(&["authorization.k8s.io"]).resources(&["subjectaccessreviews", "localsubjectaccessreviews"]).rule(),
        new_rule(READ).groups(&[""]).resources(&["services"]).rule(),
        new_rule(&["create", "get", "list", "watch"]).groups(&[""]).resources(&["nodes"]).rule(),
        new_rule(&["update", "patch"]).groups(&[""]).resources(&["nodes/status"]).rule(),
        new_rule(&["update", "patch"]).groups(&[""]).resources(&["nodes"]).rule(),
        new_rule(&["create", "update", "patch"]).groups(&[""]).resources(&["events"]).rule(),
        new_rule(READ).groups(&[""]).resources(&["pods"]).rule(),
        new_rule(&["create", "delete"]).groups(&[""]).resources(&["pods"]).rule(),
        new_rule(&["update", "patch"]).groups(&[""]).resources(&["pods/status"]).rule(),
        new_rule(&["create"]).groups(&[""]).resources(&["pods/eviction"]).rule(),
        new_rule(READ).groups(&[""]).resources(&["secrets", "configmaps"]).rule(),
        new_rule(&["get"]).groups(&[""]).resources(&["persistentvolumeclaims", "persistentvolumes"]).rule(),
        new_rule(&["get"]).groups(&[""]).resources(&["endpoints"]).rule(),
        new_rule(&["create", "get", "list", "watch"]).groups(&["certificates.k8s.io"]).resources(&["certificatesigningrequests"]).rule(),
        new_rule(&["get", "create", "update", "patch", "delete"]).groups(&["coordination.k8s.io"]).resources(&["leases"]).rule(),
        new_rule(&["get"]).groups(&["storage.k8s.io"]).resources(&["volumeattachments"]).rule(),
        new_rule(&["create"]).groups(&[""]).resources(&["serviceaccounts/token"]).rule(),
        new_rule(&["get", "update", "patch"]).groups(&[""]).resources(&["persistentvolumeclaims/status"]).rule(),
        new_rule(READ).groups(&["storage.k8s.io"]).resources(&["csidrivers"]).rule(),
        new_rule(&["get", "create", "update", "patch", "delete"]).groups(&["storage.k8s.io"]).resources(&["csinodes"]).rule(),
        new_rule(READ).groups(&["node.k8s.io"]).resources(&["runtimeclasses"]).rule(),
    ]
}

fn aggregate_to_view() -> Vec<PolicyRule> {
    vec![
        new_rule(READ)
            .groups(&[""])
            .resources(&[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ])
            .rule(),
        new_rule(READ)
            .groups(&[""])
            .resources(&[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ])
            .rule(),
        // view can see the namespace it is bound in, but not read objects across namespaces.
        new_rule(READ).groups(&[""]).resources(&["namespaces"]).rule(),
        new_rule(READ).groups(&["discovery.k8s.io"]).resources(&["endpointslices"]).rule(),
        new_rule(READ)
            .groups(&["apps"])
            .resources(&[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
            ])
            .rule(),
        new_rule(READ).groups(&["autoscaling"]).resources(&["horizontalpodautoscalers", "horizontalpodautoscalers/status"]).rule(),
        new_rule(READ).groups(&["batch"]).resources(&["jobs", "cronjobs", "cronjobs/status", "jobs/status"]).rule(),
        new_rule(READ)
            .groups(&["extensions"])
            .resources(&[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ])
            .rule(),
        new_rule(READ).groups(&["policy"]).resources(&["poddisruptionbudgets", "poddisruptionbudgets/status"]).rule(),
        new_rule(READ).groups(&["networking.k8s.io"]).resources(&["ingresses", "ingresses/status", "networkpolicies"]).rule(),
    ]
}

fn aggregate_to_edit() -> Vec<PolicyRule> {
    vec![
        // Things that can read secrets or run as a service account need secrets access.
        new_rule(READ)
            .groups(&[""])
            .resources(&["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"])
            .rule(),
        new_rule(&["impersonate"]).groups(&[""]).resources(&["serviceaccounts"]).rule(),
        new_rule(WRITE).groups(&[""]).resources(&["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]).rule(),
        new_rule(&["create"]).groups(&[""]).resources(&["pods/eviction"]).rule(),
        new_rule(WRITE)
            .groups(&[""])
            .resources(&[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ])
            .rule(),
        new_rule(&["create"]).groups(&[""]).resources(&["serviceaccounts/token"]).rule(),
        new_rule(WRITE)
            .groups(&["apps"])
            .resources(&[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ])
            .rule(),
        new_rule(WRITE).groups(&["autoscaling"]).resources(&["horizontalpodautoscalers"]).rule(),
        new_rule(WRITE).groups(&["batch"]).resources(&["jobs", "cronjobs"]).rule(),
        new_rule(WRITE)
            .groups(&["extensions"])
            .resources(&[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ])
            .rule(),
        new_rule(WRITE).groups(&["policy"]).resources(&["poddisruptionbudgets"]).rule(),
        new_rule(WRITE).groups(&["networking.k8s.io"]).resources(&["ingresses", "networkpolicies"]).rule(),
        new_rule(READ_WRITE).groups(&["coordination.k8s.io"]).resources(&["leases"]).rule(),
    ]
}

fn aggregate_to_admin() -> Vec<PolicyRule> {
    vec![
        new_rule(&["create"]).groups(&["authorization.k8s.io"]).resources(&["localsubjectaccessreviews"]).rule(),
        new_rule(READ_WRITE).groups(&["rbac.authorization.k8s.io"]).resources(&["roles", "rolebindings"]).rule(),
    ]
}

fn signer_approver(name: &str, signer: &str) -> ClusterRole {
    cluster_role(name, vec![new_rule(&["approve"]).groups(&["certificates.k8s.io"]).resources(&["signers"]).names(&[signer]).rule()])
}

fn kube_scheduler_rules() -> Vec<PolicyRule> {
    vec![
        events_rule(),
        new_rule(&["create"]).groups(&["coordination.k8s.io"]).resources(&["leases"]).rule(),
        new_rule(&["get", "update"]).groups(&["coordination.k8s.io"]).resources(&["leases"]).names(&["kube-scheduler"]).rule(),
        new_rule(READ).groups(&[""]).resources(&["nodes"]).rule(),
        new_rule(&["get", "list", "watch", "delete"]).groups(&[""]).resources(&["pods"]).rule(),
        new_rule(&["create"]).groups(&[""]).resources(&["pods/binding", "bindings"]).rule(),
        new_rule(&["patch", "update"]).groups(&[""]).resources(&["pods/status"]).rule(),
        new_rule(READ).groups(&[""]).resources(&["services", "replicationcontrollers"]).rule(),
        new_rule(READ).groups(&["apps", "extensions"]).resources(&["replicasets"]).rule(),
        new_rule(READ).groups(&["apps"]).resources(&["statefulsets"]).rule(),
        new_rule(READ).groups(&["policy"]).resources(&["poddisruptionbudgets"]).rule(),
        new_rule(READ).groups(&[""]).resources(&["persistentvolumeclaims", "persistentvolumes"]).rule(),
        new_rule(&["create"]).groups(&["authentication.k8s.io"]).resources(&["tokenreviews"]).rule(),
        new_rule(&["create"]).groups(&["authorization.k8s.io"]).resources(&["subjectaccessreviews"]).rule(),
        new_rule(READ).groups(&["storage.k8s.io"]).resources(&["csinodes"]).rule(),
        new_rule(READ).groups(&[""]).resources(&["namespaces"]).rule(),
        new_rule(READ).groups(&["storage.k8s.io"]).resources(&["csidrivers"]).rule(),
        new_rule(READ).groups(&["storage.k8s.io"]).resources(&["csistoragecapacities"]).rule(),
    ]
}

fn kube_controller_manager_rules() -> Vec<PolicyRule> {
    vec![
        events_rule(),
        // Leader election.
        new_rule(&["create"]).groups(&["coordination.k8s.io"]).resources(&["leases"]).rule(),
        new_rule(&["get", "update"]).groups(&["coordination.k8s.io"]).resources(&["leases"]).names(&["kube-controller-manager"]).rule(),
        // Fundamental resources.
        new_rule(&["create"]).groups(&[""]).resources(&["secrets", "serviceaccounts"]).rule(),
        new_rule(&["delete"]).groups(&[""]).resources(&["secrets"]).rule(),
        new_rule(&["get"]).groups(&[""]).resources(&["configmaps", "namespaces", "secrets", "serviceaccounts"]).rule(),
        new_rule(&["update"]).groups(&[""]).resources(&["secrets", "serviceaccounts"]).rule(),
        // Checking API access (non-mutating creates).
        new_rule(&["create"]).groups(&["authentication.k8s.io"]).resources(&["tokenreviews"]).rule(),
        new_rule(&["create"]).groups(&["authorization.k8s.io"]).resources(&["subjectaccessreviews"]).rule(),
        // Every shared informer.
        new_rule(&["list", "watch"]).groups(&["*"]).resources(&["*"]).rule(),
        new_rule(&["create"]).groups(&[""]).resources(&["serviceaccounts/token"]).rule(),
    ]
}

/// kube's default ClusterRoles (the `system:controller:*` ones are in `controller_roles`).
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        cluster_role("cluster-admin", vec![new_rule(&["*"]).groups(&["*"]).resources(&["*"]).rule(), new_rule(&["*"]).urls(&["*"]).rule()]),
        cluster_role(
            "system:discovery",
            vec![
                new_rule(&["get"])
                    .urls(&[
                        "/healthz",
                        "/livez",
                        "/readyz",
                        "/version",
                        "/version/",
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/openapi",
                        "/openapi/*",
                    ])
                    .rule(),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![
                new_rule(&["get"])
                    .urls(&["/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz", "/livez/*", "/readyz/*", "/healthz/*"])
                    .rule(),
            ],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                new_rule(&["create"])
                    .groups(&["authorization.k8s.io"])
                    .resources(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"])
                    .rule(),
                new_rule(&["create"]).groups(&["authentication.k8s.io"]).resources(&["selfsubjectreviews"]).rule(),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![new_rule(&["get"]).urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"]).rule()],
        ),
        aggregating("admin", AGG_ADMIN, &[]),
        aggregating("edit", AGG_EDIT, &[(AGG_ADMIN, "true")]),
        aggregating("view", AGG_VIEW, &[(AGG_EDIT, "true")]),
        labelled("system:aggregate-to-admin", AGG_ADMIN, aggregate_to_admin()),
        labelled("system:aggregate-to-edit", AGG_EDIT, aggregate_to_edit()),
        labelled("system:aggregate-to-view", AGG_VIEW, aggregate_to_view()),
        cluster_role(
            "system:heapster",
            vec![
                new_rule(READ).groups(&[""]).resources(&["events", "pods", "nodes", "namespaces"]).rule(),
                new_rule(READ).groups(&["extensions"]).resources(&["deployments"]).rule(),
            ],
        ),
        cluster_role("system:node", node_rules()),
        cluster_role(
            "system:node-problem-detector",
            vec![
                new_rule(&["get"]).groups(&[""]).resources(&["nodes"]).rule(),
                new_rule(&["patch"]).groups(&[""]).resources(&["nodes/status"]).rule(),
                events_rule(),
            ],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                new_rule(READ).groups(&[""]).resources(&["nodes"]).rule(),
                new_rule(&["proxy"]).groups(&[""]).resources(&["nodes"]).rule(),
                new_rule(&["*"]).groups(&[""]).resources(&["nodes/proxy", "nodes/metrics", "nodes/stats", "nodes/log"]).rule(),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![
                new_rule(&["create", "get", "list", "watch"])
                    .groups(&["certificates.k8s.io"])
                    .resources(&["certificatesigningrequests"])
                    .rule(),
            ],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                new_rule(&["create"]).groups(&["authentication.k8s.io"]).resources(&["tokenreviews"]).rule(),
                new_rule(&["create"]).groups(&["authorization.k8s.io"]).resources(&["subjectaccessreviews"]).rule(),
            ],
        ),
        cluster_role("system:kube-aggregator", vec![new_rule(READ).groups(&[""]).resources(&["services", "endpoints"]).rule()]),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                new_rule(&["get", "list", "watch", "create", "delete"]).groups(&[""]).resources(&["persistentvolumes"]).rule(),
                new_rule(&["get", "list", "watch", "update"]).groups(&[""]).resources(&["persistentvolumeclaims"]).rule(),
                new_rule(READ).groups(&["storage.k8s.io"]).resources(&["storageclasses"]).rule(),
                new_rule(&["watch"]).groups(&[""]).resources(&["events"]).rule(),
                events_rule(),
            ],
        ),
        cluster_role("system:kube-controller-manager", kube_controller_manager_rules()),
        cluster_role("system:kube-dns", vec![new_rule(&["list", "watch"]).groups(&[""]).resources(&["endpoints", "services"]).rule()]),
        cluster_role(
            "system:volume-scheduler",
            vec![
                new_rule(&["get", "list", "watch", "patch", "update"]).groups(&[""]).resources(&["persistentvolumes"]).rule(),
                new_rule(READ).groups(&["storage.k8s.io"]).resources(&["storageclasses"]).rule(),
                new_rule(&["get", "list", "watch", "patch", "update"]).groups(&[""]).resources(&["persistentvolumeclaims"]).rule(),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![new_rule(&["create"]).groups(&["certificates.k8s.io"]).resources(&["certificatesigningrequests/nodeclient"]).rule()],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![new_rule(&["create"]).groups(&["certificates.k8s.io"]).resources(&["certificatesigningrequests/selfnodeclient"]).rule()],
        ),
        signer_approver("system:certificates.k8s.io:legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
        signer_approver("system:certificates.k8s.io:kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        signer_approver("system:certificates.k8s.io:kube-apiserver-client-approver", "kubernetes.io/kube-apiserver-client"),
        signer_approver("system:certificates.k8s.io:kube-apiserver-client-kubelet-approver", "kubernetes.io/kube-apiserver-client-kubelet"),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![new_rule(&["get"]).urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"]).rule()],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                new_rule(&["list", "watch"]).groups(&[""]).resources(&["services", "endpoints"]).rule(),
                new_rule(READ).groups(&[""]).resources(&["nodes"]).rule(),
                events_rule(),
                new_rule(&["list", "watch"]).groups(&["discovery.k8s.io"]).resources(&["endpointslices"]).rule(),
            ],
        ),
        cluster_role("system:kube-scheduler", kube_scheduler_rules()),
    ]
}
