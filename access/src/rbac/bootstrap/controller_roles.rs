//! kube's controller roles (bootstrappolicy/controller_policy.go, `system:controller:<sa>`) for
//! the controllers Keel's controller-manager runs or will run, and the namespaced roles
//! (namespace_policy.go).

use super::{cluster_role, events_rule, new_rule, role};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};

const READ: &[&str] = &["get", "list", "watch"];

/// The controllers with a `system:controller:<name>` role, by ServiceAccount name.
pub const CONTROLLERS: &[&str] = &[
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemon-set-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "job-controller",
    "namespace-controller",
    "node-controller",
    "pod-garbage-collector",
    "replicaset-controller",
    "replication-controller",
    "resourcequota-controller",
    "root-ca-cert-publisher",
    "service-account-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
    "ttl-controller",
];

fn rules(name: &str) -> Vec<PolicyRule> {
    let r = new_rule;
    let mut rules = match name {
        "clusterrole-aggregation-controller" => {
            // escalate lets it write rules it does not hold; it never writes events.
            return vec![
                r(&["escalate", "get", "list", "watch", "update", "patch"])
                    .groups(&["rbac.authorization.k8s.io"])
                    .resources(&["clusterroles"])
                    .rule(),
            ];
        }
        "cronjob-controller" => vec![
            r(&["get", "list", "watch", "update"]).groups(&["batch"]).resources(&["cronjobs"]).rule(),
            r(&["get", "list", "watch", "create", "update", "delete", "patch"]).groups(&["batch"]).resources(&["jobs"]).rule(),
            r(&["update"]).groups(&["batch"]).resources(&["cronjobs/status"]).rule(),
            r(&["update"]).groups(&["batch"]).resources(&["cronjobs/finalizers"]).rule(),
            r(&["list", "watch", "delete"]).groups(&[""]).resources(&["pods"]).rule(),
        ],
        "daemon-set-controller" => vec![
            r(READ).groups(&["apps", "extensions"]).resources(&["daemonsets"]).rule(),
            r(&["update"]).groups(&["apps", "extensions"]).resources(&["daemonsets/status"]).rule(),
            r(&["update"]).groups(&["apps", "extensions"]).resources(&["daemonsets/finalizers"]).rule(),
            r(&["list", "watch"]).groups(&[""]).resources(&["nodes"]).rule(),
            r(&["list", "watch", "create", "delete", "patch"]).groups(&[""]).resources(&["pods"]).rule(),
            r(&["create"]).groups(&[""]).resources(&["pods/binding"]).rule(),
            r(&["get", "list", "watch", "create", "delete", "update", "patch"])
                .groups(&["apps"])
                .resources(&["controllerrevisions"])
                .rule(),
        ],
        "deployment-controller" => vec![
            r(&["get", "list", "watch", "update"]).groups(&["apps", "extensions"]).resources(&["deployments"]).rule(),
            r(&["update"]).groups(&["apps", "extensions"]).resources(&["deployments/status"]).rule(),
            r(&["update"]).groups(&["apps", "extensions"]).resources(&["deployments/finalizers"]).rule(),
            r(&["get", "list", "watch", "create", "update", "patch", "delete"])
                .groups(&["apps", "extensions"])
                .resources(&["replicasets"])
                .rule(),
            // Pods are read to tell whether a Recreate rollout may proceed.
            r(&["get", "list", "watch", "update"]).groups(&[""]).resources(&["pods"]).rule(),
        ],
        "disruption-controller" => vec![
            r(READ).groups(&["apps", "extensions"]).resources(&["deployments"]).rule(),
            r(READ).groups(&["apps", "extensions"]).resources(&["replicasets"]).rule(),
            r(READ).groups(&[""]).resources(&["replicationcontrollers"]).rule(),
            r(READ).groups(&["policy"]).resources(&["poddisruptionbudgets"]).rule(),
            r(READ).groups(&["apps"]).resources(&["statefulsets"]).rule(),
            r(&["update"]).groups(&["policy"]).resources(&["poddisruptionbudgets/status"]).rule(),
            r(&["patch", "update"]).groups(&[""]).resources(&["pods/status"]).rule(),
            r(&["get"]).groups(&["*"]).resources(&["*/scale"]).rule(),
        ],
        "endpoint-controller" => vec![
            r(READ).groups(&[""]).resources(&["services", "pods"]).rule(),
            r(&["get", "list", "watch", "create", "update", "delete"]).groups(&[""]).resources(&["endpoints"]).rule(),
            r(&["create"]).groups(&[""]).resources(&["endpoints/restricted"]).rule(),
        ],
        "endpointslice-controller" => vec![
            r(READ).groups(&[""]).resources(&["services", "pods", "nodes"]).rule(),
            r(&["update"]).groups(&[""]).resources(&["services/finalizers"]).rule(),
            r(&["get", "list", "watch", "create", "update", "delete"]).groups(&["discovery.k8s.io"]).resources(&["endpointslices"]).rule(),
        ],
        "generic-garbage-collector" => {
            vec![r(&["get", "list", "watch", "patch", "update", "delete"]).groups(&["*"]).resources(&["*"]).rule()]
        }
        "horizontal-pod-autoscaler" => vec![
            r(READ).groups(&["autoscaling"]).resources(&["horizontalpodautoscalers"]).rule(),
            r(&["update"]).groups(&["autoscaling"]).resources(&["horizontalpodautoscalers/status"]).rule(),
            r(&["get", "update"]).groups(&["*"]).resources(&["*/scale"]).rule(),
            r(&["list", "watch"]).groups(&[""]).resources(&["pods"]).rule(),
            r(&["list", "watch"]).groups(&["metrics.k8s.io"]).resources(&["pods"]).rule(),
            r(READ).groups(&["custom.metrics.k8s.io"]).resources(&["*"]).rule(),
            r(READ).groups(&["external.metrics.k8s.io"]).resources(&["*"]).rule(),
        ],
        "job-controller" => vec![
            r(&["get", "list", "watch", "update", "patch"]).groups(&["batch"]).resources(&["jobs"]).rule(),
            r(&["update"]).groups(&["batch"]).resources(&["jobs/status"]).rule(),
            r(&["update"]).groups(&["batch"]).resources(&["jobs/finalizers"]).rule(),
            r(&["list", "watch", "create", "delete", "patch"]).groups(&[""]).resources(&["pods"]).rule(),
        ],
        "namespace-controller" => {
            return vec![
                r(&["get", "list", "watch", "delete"]).groups(&[""]).resources(&["namespaces"]).rule(),
                r(&["update"]).groups(&[""]).resources(&["namespaces/finalize", "namespaces/status"]).rule(),
                r(&["get", "list", "watch", "delete", "deletecollection"]).groups(&["*"]).resources(&["*"]).rule(),
            ];
        }
        "node-controller" => vec![
            r(&["get", "list", "watch", "update", "delete", "patch"]).groups(&[""]).resources(&["nodes"]).rule(),
            r(&["patch", "update"]).groups(&[""]).resources(&["nodes/status"]).rule(),
            r(&["patch", "update"]).groups(&[""]).resources(&["pods/status"]).rule(),
            r(&["list", "watch", "delete", "get"]).groups(&[""]).resources(&["pods"]).rule(),
        ],
        "pod-garbage-collector" => {
            return vec![
                r(&["list", "watch", "delete"]).groups(&[""]).resources(&["pods"]).rule(),
                r(READ).groups(&[""]).resources(&["nodes"]).rule(),
                r(&["patch"]).groups(&[""]).resources(&["pods/status"]).rule(),
            ];
        }
        "replicaset-controller" => vec![
            r(&["get", "list", "watch", "update"]).groups(&["apps", "extensions"]).resources(&["replicasets"]).rule(),
            r(&["update"]).groups(&["apps", "extensions"]).resources(&["replicasets/status"]).rule(),
            r(&["update"]).groups(&["apps", "extensions"]).resources(&["replicasets/finalizers"]).rule(),
            r(&["list", "watch", "patch", "create", "delete"]).groups(&[""]).resources(&["pods"]).rule(),
        ],
        "replication-controller" => vec![
            r(&["get", "list", "watch", "update"]).groups(&[""]).resources(&["replicationcontrollers"]).rule(),
            r(&["update"]).groups(&[""]).resources(&["replicationcontrollers/status"]).rule(),
            r(&["update"]).groups(&[""]).resources(&["replicationcontrollers/finalizers"]).rule(),
            r(&["list", "watch", "patch", "create", "delete"]).groups(&[""]).resources(&["pods"]).rule(),
        ],
        "resourcequota-controller" => vec![
            // Quota can count quota on anything for reconciliation, so it needs full viewing powers.
            r(&["list", "watch"]).groups(&["*"]).resources(&["*"]).rule(),
            r(&["update"]).groups(&[""]).resources(&["resourcequotas/status"]).rule(),
        ],
        "root-ca-cert-publisher" => vec![r(&["create", "update"]).groups(&[""]).resources(&["configmaps"]).rule()],
        "service-account-controller" => vec![r(&["create"]).groups(&[""]).resources(&["serviceaccounts"]).rule()],
        "statefulset-controller" => vec![
            r(&["list", "watch"]).groups(&[""]).resources(&["pods"]).rule(),
            r(READ).groups(&["apps"]).resources(&["statefulsets"]).rule(),
            r(&["update"]).groups(&["apps"]).resources(&["statefulsets/status"]).rule(),
            r(&["update"]).groups(&["apps"]).resources(&["statefulsets/finalizers"]).rule(),
            r(&["get", "create", "delete", "update", "patch"]).groups(&[""]).resources(&["pods"]).rule(),
            r(&["get", "create", "delete", "update", "patch", "list", "watch"])
                .groups(&["apps"])
                .resources(&["controllerrevisions"])
                .rule(),
            r(&["get", "create", "list", "watch"]).groups(&[""]).resources(&["persistentvolumeclaims"]).rule(),
            r(&["update", "delete"]).groups(&[""]).resources(&["persistentvolumeclaims"]).rule(),
            r(&["update"]).groups(&[""]).resources(&["pods/finalizers"]).rule(),
        ],
        "ttl-after-finished-controller" => vec![r(&["get", "list", "watch", "delete"]).groups(&["batch"]).resources(&["jobs"]).rule()],
        "ttl-controller" => vec![r(&["update", "patch", "list", "watch"]).groups(&[""]).resources(&["nodes"]).rule()],
        _ => Vec::new(),
    };
    rules.push(events_rule());
    rules
}

/// kube's `ControllerRoles()` for [`CONTROLLERS`].
pub fn controller_roles() -> Vec<ClusterRole> {
    CONTROLLERS.iter().map(|c| cluster_role(&format!("system:controller:{c}"), rules(c))).collect()
}

/// kube's `NamespaceRoles()`: roles in `kube-system` and `kube-public`.
pub fn namespace_roles() -> Vec<Role> {
    let ks = "kube-system";
    vec![
        role(
            ks,
            "extension-apiserver-authentication-reader",
            vec![new_rule(READ).groups(&[""]).resources(&["configmaps"]).names(&["extension-apiserver-authentication"]).rule()],
        ),
        role(
            ks,
            "system::leader-locking-kube-controller-manager",
            vec![
                new_rule(&["watch"]).groups(&[""]).resources(&["configmaps"]).rule(),
                new_rule(&["get", "update"]).groups(&[""]).resources(&["configmaps"]).names(&["kube-controller-manager"]).rule(),
            ],
        ),
        role(
            ks,
            "system::leader-locking-kube-scheduler",
            vec![
                new_rule(&["watch"]).groups(&[""]).resources(&["configmaps"]).rule(),
                new_rule(&["get", "update"]).groups(&[""]).resources(&["configmaps"]).names(&["kube-scheduler"]).rule(),
            ],
        ),
        role(ks, "system:controller:bootstrap-signer", vec![new_rule(READ).groups(&[""]).resources(&["secrets"]).rule()]),
        role(
            ks,
            "system:controller:cloud-provider",
            vec![new_rule(&["create", "get", "list", "watch"]).groups(&[""]).resources(&["configmaps"]).rule()],
        ),
        role(
            ks,
            "system:controller:token-cleaner",
            vec![new_rule(&["delete", "get", "list", "watch"]).groups(&[""]).resources(&["secrets"]).rule(), events_rule()],
        ),
        role(
            "kube-public",
            "system:controller:bootstrap-signer",
            vec![
                new_rule(READ).groups(&[""]).resources(&["configmaps"]).rule(),
                new_rule(&["update"]).groups(&[""]).resources(&["configmaps"]).names(&["cluster-info"]).rule(),
                events_rule(),
            ],
        ),
    ]
}
