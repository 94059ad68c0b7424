//! A secured test cluster holds users to RBAC: the admin kubeconfig may do anything, a user from
//! `kubeconfig_for` gets kube's Forbidden until a RoleBinding grants them something.

use keel_testkit::{Cluster, text};

#[test]
fn a_secured_cluster_admits_its_admin_and_holds_other_users_to_rbac() {
    let c = Cluster::builder().secure(true).start();
    c.ok(&["create", "namespace", "dev"]);
    let jane = c.kubeconfig_for("jane", &["devs"]);
    let out = c.kubectl_with(&jane, &["get", "pods", "-n", "dev"]);
    assert!(!out.status.success(), "jane has no role yet: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "dev""#),
        "kube's Forbidden message: {err}\n{}",
        c.logs()
    );
    c.ok(&["create", "rolebinding", "devs-view", "--clusterrole=view", "--group=devs", "-n", "dev"]);
    let granted = keel_testkit::eventually(std::time::Duration::from_secs(10), || {
        let out = c.kubectl_with(&jane, &["get", "pods", "-n", "dev"]);
        out.status.success().then_some(())
    });
    assert!(granted.is_some(), "the group's RoleBinding lets jane list pods in dev\n{}", c.logs());
    let other = c.kubectl_with(&jane, &["get", "pods", "-n", "default"]);
    assert!(!other.status.success(), "the binding is only for dev");
}
