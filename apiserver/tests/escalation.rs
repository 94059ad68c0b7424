//! RBAC escalation prevention through a real apiserver and kubectl: a namespace admin may write
//! roles and bindings there, but only with rules she holds herself; granting more is refused
//! with kube's message, unless she is allowed `escalate` (roles) or `bind` (bindings).

mod secured;

use keel_testkit::{Cluster, eventually};
use secured::Pki;
use std::time::Duration;

fn jane(c: &Cluster, args: &[&str]) -> std::process::Output {
    let all: Vec<&str> = ["--token", "jane-token"].iter().chain(args).copied().collect();
    c.kubectl(&all)
}

#[test]
fn nobody_grants_rbac_permissions_they_do_not_hold() {
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &[]));
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "rolebinding", "jane-admin", "--clusterrole=admin", "--user=jane", "-n", "dev"]);
    let ready = eventually(Duration::from_secs(20), || {
        jane(&c, &["create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "dev"]).status.success().then_some(())
    });
    assert!(ready.is_some(), "a namespace admin writes roles with rules she holds");

    // A rule she does not hold (nodes are cluster-scoped; admin grants none of them).
    let out = jane(&c, &["create", "role", "node-reader", "--verb=get", "--resource=nodes", "-n", "dev"]);
    let err = keel_testkit::text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(r#"roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "jane" (groups=["devs" "qa" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
        "{err}"
    );
    assert!(err.contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}"#), "{err}");
    assert!(jane(&c, &["get", "role", "node-reader", "-n", "dev"]).status.code() != Some(0), "not written");

    // Bindings: to a role whose rules she holds (view), yes; to cluster-admin, no.
    let ok = jane(&c, &["create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob", "-n", "dev"]);
    assert!(ok.status.success(), "{}", keel_testkit::text(&ok.stderr));
    let out = jane(&c, &["create", "rolebinding", "bob-root", "--clusterrole=cluster-admin", "--user=bob", "-n", "dev"]);
    let err = keel_testkit::text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(r#"rolebindings.rbac.authorization.k8s.io "bob-root" is forbidden: user "jane" (groups=["devs" "qa" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
        "{err}"
    );
    // Raising her own role is an escalation too.
    let out = jane(
        &c,
        &[
            "patch",
            "role",
            "pod-reader",
            "-n",
            "dev",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes"],"verbs":["list"]}}]"#,
        ],
    );
    assert!(
        !out.status.success() && keel_testkit::text(&out.stderr).contains("is attempting to grant RBAC permissions not currently held")
    );

    // `bind` on cluster-admin lets her bind it without holding it (kube's BindingAuthorized).
    c.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: bind-root, namespace: dev}
rules: [{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind], resourceNames: [cluster-admin]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: jane-bind-root, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: bind-root}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}]
"#,
        &[],
    );
    let bound = eventually(Duration::from_secs(20), || {
        jane(&c, &["create", "rolebinding", "bob-root", "--clusterrole=cluster-admin", "--user=bob", "-n", "dev"])
            .status
            .success()
            .then_some(())
    });
    assert!(bound.is_some(), "bind on the role is enough");
    // The admin (system:masters) may grant anything.
    c.ok(&["create", "clusterrole", "everything", "--verb=*", "--resource=*.*"]);
}
