//! The authorization benchmark (issue 19): the same list-heavy workload through keel-apiserver
//! with `--authorization-mode AlwaysAllow` and with `Node,RBAC`, over one store holding kube's
//! default policy plus `user_bindings` RoleBindings (a user with `edit` in its namespace) and
//! `group_bindings` ClusterRoleBindings (a group with `view` everywhere).
//!
//! ```text
//!   plan (this file, pure)                 run (async shell)                    summary (pure)
//!   Plan → seed objects, workers'      →   seed once, then per round:        →  medians per mode,
//!   identities, each worker's request      start the apiserver in one mode,      RBAC's cost
//!   sequence (the mix)                     drive the workers, stop it
//! ```
//!
//! - [`run`]: seeding, starting an apiserver per mode, the closed-loop workers.
//! - [`summary`]: medians over the interleaved rounds and the cost of RBAC against AlwaysAllow.
//!
//! Invariants of the plan: both modes see the same objects and the same request sequence (the
//! mix is a fixed cycle, each worker offset by its index, no randomness); every request of a
//! worker is one its identity is allowed under RBAC (a user lists in the namespace of its
//! RoleBinding, a viewer through its group's ClusterRoleBinding), so a refusal in the measured
//! phase is a harness or server bug and is counted, never hidden; a WATCH start always follows
//! a LIST of the same resource, whose resourceVersion it starts from (no initial events).

pub mod run;
pub mod summary;

use serde_json::{Value, json};

/// The two authorization modes compared.
pub const MODES: [&str; 2] = ["AlwaysAllow", "Node,RBAC"];

/// The order round `round` runs the modes in: A B, then B A, then A B, … (A B B A A B …), so
/// neither mode always runs later in a ramp of the shared machine's load.
pub fn round_order(round: usize) -> [&'static str; 2] {
    if round.is_multiple_of(2) { MODES } else { [MODES[1], MODES[0]] }
}

/// What one benchmark seeds and runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Namespaces the bindings and objects are spread over.
    pub namespaces: usize,
    /// RoleBindings of user `i` to `edit` in namespace `i % namespaces`.
    pub user_bindings: usize,
    /// ClusterRoleBindings of group `i` to `view`.
    pub group_bindings: usize,
    /// Pods per namespace.
    pub pods: usize,
    /// ConfigMaps per namespace.
    pub configmaps: usize,
    /// Deployments per namespace.
    pub deployments: usize,
    /// Concurrent clients, each its own identity and connection.
    pub workers: usize,
}

/// One kind of request of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// LIST pods in the worker's namespace.
    ListPods,
    /// LIST configmaps there.
    ListConfigMaps,
    /// LIST deployments there.
    ListDeployments,
    /// GET one pod.
    GetPod,
    /// GET one configmap.
    GetConfigMap,
    /// GET one deployment.
    GetDeployment,
    /// WATCH pods from the last list's resourceVersion, timed to the response head.
    WatchPods,
}

impl Kind {
    /// The report's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ListPods => "LIST pods",
            Kind::ListConfigMaps => "LIST configmaps",
            Kind::ListDeployments => "LIST deployments",
            Kind::GetPod => "GET pod",
            Kind::GetConfigMap => "GET configmap",
            Kind::GetDeployment => "GET deployment",
            Kind::WatchPods => "WATCH pods",
        }
    }
}

/// The mix, one cycle: 12 lists, 7 GETs and one WATCH start in 20 requests. The WATCH comes
/// right after a LIST of pods (the invariant above).
pub const MIX: [Kind; 20] = [
    Kind::ListPods,
    Kind::WatchPods,
    Kind::ListConfigMaps,
    Kind::GetPod,
    Kind::ListDeployments,
    Kind::ListPods,
    Kind::GetConfigMap,
    Kind::ListConfigMaps,
    Kind::ListPods,
    Kind::GetPod,
    Kind::ListDeployments,
    Kind::ListPods,
    Kind::GetDeployment,
    Kind::ListConfigMaps,
    Kind::ListPods,
    Kind::GetPod,
    Kind::ListDeployments,
    Kind::ListConfigMaps,
    Kind::GetConfigMap,
    Kind::GetPod,
];

/// Namespace `i`.
pub fn namespace(i: usize) -> String {
    format!("authz-{i:03}")
}

/// User `i` (bound to `edit` in namespace `i % namespaces`).
pub fn user(i: usize) -> String {
    format!("user-{i:04}")
}

/// Group `i` (bound to `view` cluster-wide).
pub fn group(i: usize) -> String {
    format!("group-{i:03}")
}

/// Who a worker is and where it works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    /// The client certificate's CN.
    pub user: String,
    /// Its O entries.
    pub groups: Vec<String>,
    /// The namespace it reads.
    pub namespace: String,
}

impl Plan {
    /// Worker `w`: every fourth one a viewer (in a `view` group, no binding of its own), the
    /// others user `w`, reading the namespace of its `edit` RoleBinding.
    pub fn worker(&self, w: usize) -> Worker {
        let ns = namespace(w % self.namespaces.max(1));
        if (w % 4 == 3 && self.group_bindings > 0) || w >= self.user_bindings {
            return Worker { user: format!("viewer-{w:04}"), groups: vec![group(w % self.group_bindings.max(1))], namespace: ns };
        }
        Worker { user: user(w), groups: Vec::new(), namespace: ns }
    }

    /// Every object to create, in an order that creates each one's namespace first: (the
    /// collection's path, the object).
    pub fn seed(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for n in 0..self.namespaces {
            out.push((
                "/api/v1/namespaces".to_string(),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace(n)}}),
            ));
        }
        out.extend(self.bindings());
        out.extend(self.objects());
        out
    }

    /// The RoleBindings and ClusterRoleBindings beyond kube's defaults.
    pub fn bindings(&self) -> Vec<(String, Value)> {
        let rbac = "rbac.authorization.k8s.io/v1";
        let mut out = Vec::new();
        for u in 0..self.user_bindings {
            let ns = namespace(u % self.namespaces.max(1));
            out.push((
                format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
                json!({"apiVersion": rbac, "kind": "RoleBinding",
                    "metadata": {"name": format!("{}-edit", user(u)), "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user(u)}]}),
            ));
        }
        for g in 0..self.group_bindings {
            out.push((
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_string(),
                json!({"apiVersion": rbac, "kind": "ClusterRoleBinding",
                    "metadata": {"name": format!("{}-view", group(g))},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group(g)}]}),
            ));
        }
        out
    }

    fn objects(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for n in 0..self.namespaces {
            let ns = namespace(n);
            for i in 0..self.pods {
                out.push((format!("/api/v1/namespaces/{ns}/pods"), pod(&ns, i)));
            }
            for i in 0..self.configmaps {
                out.push((format!("/api/v1/namespaces/{ns}/configmaps"), configmap(&ns, i)));
            }
            for i in 0..self.deployments {
                out.push((format!("/apis/apps/v1/namespaces/{ns}/deployments"), deployment(&ns, i)));
            }
        }
        out
    }

    /// Request `i` of worker `w`: its kind and path (a WATCH's path without its
    /// resourceVersion, which the shell appends).
    pub fn request(&self, w: usize, i: usize) -> (Kind, String) {
        let kind = MIX[(i + w) % MIX.len()];
        let ns = self.worker(w).namespace;
        // The object a GET reads walks through the namespace's objects.
        let pick = |n: usize| (i * 7 + w) % n.max(1);
        let path = match kind {
            Kind::ListPods => format!("/api/v1/namespaces/{ns}/pods"),
            Kind::ListConfigMaps => format!("/api/v1/namespaces/{ns}/configmaps"),
            Kind::ListDeployments => format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            Kind::GetPod => format!("/api/v1/namespaces/{ns}/pods/{}", pod_name(pick(self.pods))),
            Kind::GetConfigMap => format!("/api/v1/namespaces/{ns}/configmaps/cm-{:03}", pick(self.configmaps)),
            Kind::GetDeployment => format!("/apis/apps/v1/namespaces/{ns}/deployments/deploy-{:03}", pick(self.deployments)),
            Kind::WatchPods => format!("/api/v1/namespaces/{ns}/pods?watch=1&timeoutSeconds=30&resourceVersion="),
        };
        (kind, path)
    }

    /// A request the worker's identity is NOT allowed under RBAC: a user LISTs pods in the
    /// next namespace (no binding there), a viewer LISTs secrets (`view` does not grant them).
    /// The shell's check that the mode it started is the mode it measures; a read, so
    /// AlwaysAllow changes nothing by answering it.
    pub fn forbidden_probe(&self, w: usize) -> String {
        let me = self.worker(w);
        if me.groups.is_empty() && self.namespaces > 1 {
            return format!("/api/v1/namespaces/{}/pods", namespace((w + 1) % self.namespaces));
        }
        format!("/api/v1/namespaces/{}/secrets", me.namespace)
    }
}

fn pod_name(i: usize) -> String {
    format!("pod-{i:03}")
}

/// A pod of the size kube's workloads have (labels, one container with requests, env, a
/// volume), never scheduled (no scheduler runs).
pub fn pod(ns: &str, i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(i), "namespace": ns, "labels": {"app": format!("app-{}", i % 10), "tier": "web"},
            "annotations": {"bench/owner": "keel-authz-bench"}},
        "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.27",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "env": [{"name": "MODE", "value": "bench"}, {"name": "INDEX", "value": i.to_string()}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}}]}})
}

/// A ConfigMap with a few keys.
pub fn configmap(ns: &str, i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:03}"), "namespace": ns},
        "data": {"app.properties": format!("index={i}\nmode=bench\n"), "level": "info"}})
}

/// A Deployment (no controller-manager runs, so it makes no pods).
pub fn deployment(ns: &str, i: usize) -> Value {
    let name = format!("deploy-{i:03}");
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.example/web:1.27"}]}}}})
}

/// The resourceVersion of a List body (`metadata.resourceVersion`), read without building the
/// items.
pub fn list_resource_version(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct List {
        metadata: Option<Meta>,
    }
    serde_json::from_str::<List>(body).ok()?.metadata?.resource_version
}

#[cfg(test)]
mod tests {

    #[test]
    fn rounds_alternate_abba() {
        let seq: Vec<&str> = (0..4).flat_map(round_order).collect();
        assert_eq!(seq, ["AlwaysAllow", "Node,RBAC", "Node,RBAC", "AlwaysAllow", "AlwaysAllow", "Node,RBAC", "Node,RBAC", "AlwaysAllow"]);
    }

    use super::*;

    fn plan() -> Plan {
        Plan { namespaces: 10, user_bindings: 900, group_bindings: 100, pods: 50, configmaps: 30, deployments: 20, workers: 32 }
    }

    #[test]
    fn seeds_namespaces_first_then_a_thousand_bindings_then_the_objects() {
        let p = plan();
        let s = p.seed();
        assert_eq!(s.len(), 10 + 1000 + 10 * 100);
        assert!(s[..10].iter().all(|(path, _)| path == "/api/v1/namespaces"));
        let bindings = &s[10..1010];
        assert_eq!(bindings.iter().filter(|(_, o)| o["kind"] == "RoleBinding").count(), 900);
        assert_eq!(bindings.iter().filter(|(_, o)| o["kind"] == "ClusterRoleBinding").count(), 100);
        // User 13 is bound in namespace 3, in that namespace's collection.
        let (path, rb) = &bindings[13];
        assert_eq!(path, "/apis/rbac.authorization.k8s.io/v1/namespaces/authz-003/rolebindings");
        assert_eq!((rb["metadata"]["namespace"].as_str(), rb["subjects"][0]["name"].as_str()), (Some("authz-003"), Some("user-0013")));
        assert_eq!(rb["roleRef"]["name"], "edit");
        assert_eq!(bindings[900].1["roleRef"]["name"], "view");
    }

    #[test]
    fn workers_read_where_their_binding_allows() {
        let p = plan();
        let table = [
            (0, "user-0000", vec![], "authz-000"),
            (13, "user-0013", vec![], "authz-003"),
            (3, "viewer-0003", vec!["group-003".to_string()], "authz-003"),
            (27, "viewer-0027", vec!["group-027".to_string()], "authz-007"),
        ];
        for (w, user, groups, ns) in table {
            assert_eq!(p.worker(w), Worker { user: user.into(), groups, namespace: ns.into() }, "worker {w}");
        }
        // Fewer user bindings than workers: the rest are viewers.
        let small = Plan { user_bindings: 2, group_bindings: 1, ..plan() };
        assert_eq!(small.worker(2).groups, vec!["group-000".to_string()]);
        // A user's namespace is the one of its RoleBinding.
        for w in [0, 1, 2, 13, 30] {
            let me = p.worker(w);
            assert_eq!(me.namespace, namespace(w % p.namespaces), "{w}");
        }
    }

    #[test]
    fn the_mix_is_list_heavy_and_every_watch_follows_a_pod_list() {
        let lists = MIX.iter().filter(|k| matches!(k, Kind::ListPods | Kind::ListConfigMaps | Kind::ListDeployments)).count();
        assert_eq!((lists, MIX.iter().filter(|k| **k == Kind::WatchPods).count()), (12, 1));
        for (i, k) in MIX.iter().enumerate() {
            if *k == Kind::WatchPods {
                assert_eq!(MIX[(i + MIX.len() - 1) % MIX.len()], Kind::ListPods);
            }
        }
        let p = plan();
        assert_eq!(p.request(0, 0), (Kind::ListPods, "/api/v1/namespaces/authz-000/pods".to_string()));
        assert_eq!(p.request(0, 3), (Kind::GetPod, "/api/v1/namespaces/authz-000/pods/pod-021".to_string()));
        assert_eq!(p.request(1, 0).0, Kind::WatchPods);
        assert!(p.request(1, 0).1.ends_with("resourceVersion="));
        // Worker 5 starts five requests into the cycle, the same sequence shifted.
        assert_eq!(p.request(5, 0).0, MIX[5]);
    }

    #[test]
    fn probes_are_outside_the_identity_grant() {
        let p = plan();
        assert_eq!(p.forbidden_probe(0), "/api/v1/namespaces/authz-001/pods");
        assert_eq!(p.forbidden_probe(3), "/api/v1/namespaces/authz-003/secrets");
    }

    #[test]
    fn the_list_resource_version_is_the_lists_not_an_items() {
        let table = [
            (
                r#"{"apiVersion":"v1","items":[{"metadata":{"resourceVersion":"5"}}],"kind":"PodList","metadata":{"resourceVersion":"42"}}"#,
                Some("42"),
            ),
            (r#"{"kind":"PodList","metadata":{"resourceVersion":"7"},"items":[]}"#, Some("7")),
            (r#"{"kind":"PodList","items":[]}"#, None),
            ("not json", None),
        ];
        for (body, want) in table {
            assert_eq!(list_resource_version(body).as_deref(), want, "{body}");
        }
    }
}
