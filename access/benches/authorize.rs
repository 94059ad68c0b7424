//! The authorization path on a list-heavy workload with 1,000 bindings: decisions per second
//! with `--authorization-mode Node,RBAC` against `AlwaysAllow`. Measured, not asserted; the
//! machine, command and numbers are in access/BENCH.md.
//!
//! Policy: kube's default roles and bindings, plus 1,000 users each with an `edit` RoleBinding
//! in one of 100 namespaces, 100 group ClusterRoleBindings to `view`, 100 ServiceAccount
//! RoleBindings. Requests are what kubectl and controllers send most: `list`/`watch` of a
//! namespaced resource, parsed from the URL as the apiserver would.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use keel_access::attributes::Attributes;
use keel_access::authz::{Authorizer, Chain, Mode};
use keel_access::node::SharedGraph;
use keel_access::rbac::SharedPolicy;
use keel_access::rbac::bootstrap::default_policy;
use keel_access::user::UserInfo;
use serde_json::json;
use std::hint::black_box;

const USERS: usize = 1_000;
const NAMESPACES: usize = 100;

fn policy() -> SharedPolicy {
    let mut p = default_policy(true).into_policy();
    for i in 0..USERS {
        let b: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("user-{i}-edit"), "namespace": format!("ns-{}", i % NAMESPACES)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("user-{i}")}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        p.upsert_role_binding(b);
    }
    for g in 0..100 {
        let b: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("team-{g}-view")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("team-{g}")}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        p.upsert_cluster_role_binding(b);
    }
    for n in 0..NAMESPACES {
        let b: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "default-view", "namespace": format!("ns-{n}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        p.upsert_role_binding(b);
    }
    SharedPolicy::new(p)
}

/// 64 requests cycling over users, namespaces and list/watch of pods and deployments.
fn workload(allowed: bool) -> Vec<Attributes> {
    (0..64)
        .map(|i| {
            let user = i * 37 % USERS;
            let ns = if allowed { user % NAMESPACES } else { (user + 1) % NAMESPACES };
            let (path, query) = match i % 4 {
                0 => (format!("/api/v1/namespaces/ns-{ns}/pods"), "limit=500"),
                1 => (format!("/apis/apps/v1/namespaces/ns-{ns}/deployments"), "limit=500"),
                2 => (format!("/api/v1/namespaces/ns-{ns}/pods"), "watch=true&resourceVersion=100"),
                _ => (format!("/api/v1/namespaces/ns-{ns}/configmaps"), ""),
            };
            let mut a = Attributes::from_request("GET", &path, query);
            a.user = UserInfo::new(format!("user-{user}"), &["system:authenticated", &format!("team-{}", user % 100)]);
            a
        })
        .collect()
}

fn run(c: &mut Criterion) {
    let policy = policy();
    let graph = SharedGraph::default();
    let always = Chain::new(&[Mode::AlwaysAllow], &policy, &graph);
    let rbac = Chain::new(&[Mode::Node, Mode::Rbac], &policy, &graph);
    let allowed = workload(true);
    let denied = workload(false);
    assert!(allowed.iter().all(|a| rbac.authorize(a).allowed()));

    let mut g = c.benchmark_group("authorize");
    g.throughput(Throughput::Elements(allowed.len() as u64));
    g.bench_function("always_allow/list", |b| b.iter(|| allowed.iter().filter(|a| always.authorize(black_box(a)).allowed()).count()));
    g.bench_function("node_rbac/list_allowed", |b| b.iter(|| allowed.iter().filter(|a| rbac.authorize(black_box(a)).allowed()).count()));
    g.bench_function("node_rbac/list_denied", |b| b.iter(|| denied.iter().filter(|a| rbac.authorize(black_box(a)).allowed()).count()));
    g.bench_function("parse_and_node_rbac/list_allowed", |b| {
        b.iter(|| {
            allowed
                .iter()
                .filter(|a| {
                    let mut parsed = Attributes::from_request("GET", black_box(&a.path), "limit=500");
                    parsed.user = a.user.clone();
                    rbac.authorize(&parsed).allowed()
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, run);
criterion_main!(benches);
