//! Authentication and authorization through keel-access (issue 19's first wiring), with real
//! kubectl and curl: `--token-auth-file` users, x509 client certificates against
//! `--client-ca-file`, anonymous requests, and `--authorization-mode RBAC` over the default
//! policy and the RoleBindings users write. 401 and 403 carry kube's Status.

mod secured;

use keel_access::pki::ClientIdentity;
use keel_testkit::{Cluster, eventually, text};
use secured::{Pki, curl};
use std::time::Duration;

#[test]
fn tokens_and_client_certificates_authenticate_and_rbac_refuses_with_kubes_messages() {
    let pki = Pki::new();
    let admin = pki.identity("admin", ClientIdentity::admin());
    let bob = pki.identity("bob", ClientIdentity::new("bob", &["devs"]));
    let c = Cluster::start_with(&pki.flags("RBAC", &[]));

    // The admin token (system:masters) may do anything.
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["get", "pods", "-n", "dev"]);

    // jane authenticates by token and is refused with kube's 403.
    let err = c.fails(&["--token", "jane-token", "get", "pods", "-n", "dev"]);
    assert!(
        err.contains("Error from server (Forbidden): pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"dev\""),
        "{err}"
    );
    let err = c.fails(&["--token", "jane-token", "get", "nodes"]);
    assert!(err.contains("User \"jane\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"), "{err}");

    // A RoleBinding to the default `edit` ClusterRole lets jane work in dev, and only there.
    c.ok(&["create", "rolebinding", "jane-edit", "--clusterrole=edit", "--user=jane", "-n", "dev"]);
    let created = eventually(Duration::from_secs(20), || {
        c.kubectl(&["--token", "jane-token", "create", "deployment", "web", "--image=nginx", "-n", "dev"]).status.success().then_some(())
    });
    assert!(created.is_some(), "jane may create deployments in dev once her binding is seen");
    assert!(c.ok(&["--token", "jane-token", "get", "deployments", "-n", "dev"]).contains("web"));
    let err = c.fails(&["--token", "jane-token", "create", "deployment", "web", "--image=nginx", "-n", "default"]);
    assert!(
        err.contains("deployments.apps is forbidden: User \"jane\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"default\""),
        "{err}"
    );
    // Group subjects count: bob (O=devs) gets view through a binding to his group.
    c.ok(&["create", "rolebinding", "devs-view", "--clusterrole=view", "--group=devs", "-n", "dev"]);
    let seen =
        eventually(Duration::from_secs(20), || (curl(&c, &bob.args(), "/apis/apps/v1/namespaces/dev/deployments").0 == 200).then_some(()));
    assert!(seen.is_some(), "bob reads deployments in dev through his group");
    c.ok(&["delete", "rolebinding", "jane-edit", "-n", "dev"]);
    // jane is in devs too: she keeps view, and loses what only her binding gave.
    let revoked = eventually(Duration::from_secs(20), || {
        let out = c.kubectl(&["--token", "jane-token", "create", "deployment", "web2", "--image=nginx", "-n", "dev", "--dry-run=server"]);
        text(&out.stderr).contains("User \"jane\" cannot create resource \"deployments\"").then_some(())
    });
    assert!(revoked.is_some(), "a deleted binding grants nothing");
    assert!(c.ok(&["--token", "jane-token", "get", "deployments", "-n", "dev"]).contains("web"), "view through her group stays");

    // A wrong token is 401; no credentials are system:anonymous, also refused.
    let (code, body) = curl(&c, &["-H", "Authorization: Bearer nope"], "/api/v1/namespaces/dev/pods");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    let (code, body) = curl(&c, &[], "/api/v1/namespaces/dev/pods");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("User \\\"system:anonymous\\\" cannot list resource \\\"pods\\\""), "{body}");

    // Client certificates: CN is the user, O the groups.
    let (code, body) = curl(&c, &admin.args(), "/api/v1/namespaces/dev/pods");
    assert_eq!(code, 200, "{body}");
    // bob (O=devs) has view in dev through his group's binding, nothing in default.
    let (code, body) = curl(&c, &bob.args(), "/api/v1/namespaces/dev/pods");
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&c, &bob.args(), "/api/v1/namespaces/default/pods");
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("User \\\"bob\\\" cannot list resource \\\"pods\\\" in API group \\\"\\\" in the namespace \\\"default\\\""),
        "{body}"
    );
}
