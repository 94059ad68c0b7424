//! `kubectl auth can-i` against a real apiserver process: the access reviews of
//! `authorization.k8s.io/v1` (SelfSubjectAccessReview, SelfSubjectRulesReview,
//! SubjectAccessReview, LocalSubjectAccessReview) answered over RBAC, with impersonation
//! (`--as`) and the `--list` table.

mod secured;

use keel_testkit::{Cluster, eventually, text};
use secured::{Pki, curl, message};
use std::time::Duration;

fn can_i(c: &Cluster, args: &[&str]) -> (bool, String) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = c.kubectl(&all);
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn kubectl_auth_can_i_answers_from_rbac() {
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &[]));
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "rolebinding", "jane-edit", "--clusterrole=edit", "--user=jane", "-n", "dev"]);

    assert_eq!(can_i(&c, &["create", "deployments", "-n", "dev"]), (true, "yes\n".into()), "the admin may");
    let seen = eventually(Duration::from_secs(20), || can_i(&c, &["create", "deployments", "-n", "dev", "--as", "jane"]).0.then_some(()));
    assert!(seen.is_some(), "jane may create deployments in dev once her binding is seen");
    assert_eq!(can_i(&c, &["create", "deployments", "-n", "dev", "--as", "jane"]), (true, "yes\n".into()));
    assert_eq!(can_i(&c, &["create", "deployments", "-n", "default", "--as", "jane"]), (false, "no\n".into()));
    assert_eq!(can_i(&c, &["--token", "jane-token", "get", "secrets", "-n", "dev"]), (true, "yes\n".into()), "as herself");
    let (ok, out) = can_i(&c, &["--token", "jane-token", "list", "nodes"]);
    assert!(!ok && out.starts_with("no\n"), "{out}");
    // The --list table: kube's columns, edit's rules (verbs sorted as kube's rule builder
    // sorts them), the self reviews every user has, system:discovery's URLs; nothing of nodes.
    let (ok, out) = can_i(&c, &["--list", "-n", "dev", "--as", "jane"]);
    assert!(ok, "{out}");
    let rows: Vec<String> = out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    for want in [
        "Resources Non-Resource URLs Resource Names Verbs",
        "deployments.apps [] [] [create delete deletecollection patch update get list watch]",
        "secrets [] [] [get list watch create delete deletecollection patch update]",
        "serviceaccounts [] [] [impersonate create delete deletecollection patch update get list watch]",
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
        "selfsubjectrulesreviews.authorization.k8s.io [] [] [create]",
        "[/api/*] [] [get]",
        "[/healthz] [] [get]",
    ] {
        assert!(rows.iter().any(|r| r == want), "missing {want:?} in\n{out}");
    }
    assert!(!rows.iter().any(|r| r.starts_with("nodes") || r.starts_with("rolebindings")), "edit grants neither: {out}");
    let (ok, out) = can_i(&c, &["--list", "-n", "default", "--as", "jane"]);
    assert!(ok && !out.contains("deployments.apps"), "nothing of edit outside dev: {out}");

    // SubjectAccessReview and LocalSubjectAccessReview name the subject in the spec.
    let admin = ["-H", "Authorization: Bearer keel-admin", "-H", "Content-Type: application/json", "-d"];
    let sar = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"jane","groups":["system:authenticated"],"resourceAttributes":{"namespace":"dev","verb":"create","group":"apps","resource":"deployments"}}}"#;
    let (code, body) = curl(&c, &[&admin[..], &[sar]].concat(), "/apis/authorization.k8s.io/v1/subjectaccessreviews");
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["status"]["allowed"], true, "{body}");
    assert_eq!(v["status"]["reason"], r#"RBAC: allowed by RoleBinding "jane-edit/dev" of ClusterRole "edit" to User "jane""#, "{body}");
    let lsar = sar.replace("\"SubjectAccessReview\"", "\"LocalSubjectAccessReview\"").replace("\"dev\"", "\"default\"");
    let (code, body) =
        curl(&c, &[&admin[..], &[lsar.as_str()]].concat(), "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews");
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        (v["kind"].clone(), v["status"]["allowed"].clone()),
        (serde_json::json!("LocalSubjectAccessReview"), serde_json::json!(false))
    );
    let (code, body) =
        curl(&c, &[&admin[..], &[lsar.as_str()]].concat(), "/apis/authorization.k8s.io/v1/namespaces/dev/localsubjectaccessreviews");
    assert_eq!((code, message(&body)), (400, "spec.resourceAttributes.namespace must match namespace: dev".to_string()), "{body}");
    // jane may review herself but not others (system:basic-user grants only the self reviews).
    let (code, body) = curl(
        &c,
        &["-H", "Authorization: Bearer jane-token", "-H", "Content-Type: application/json", "-d", sar],
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
    );
    assert_eq!(code, 403, "{body}");
    assert!(message(&body).starts_with("subjectaccessreviews.authorization.k8s.io is forbidden: User \"jane\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope"), "{body}");
    // Reviews are create-only, and discovery lists them so.
    let (code, _) = curl(&c, &["-H", "Authorization: Bearer keel-admin"], "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews");
    assert_eq!(code, 405);
    let listed = c.ok(&["api-resources", "--api-group=authorization.k8s.io", "-o", "wide"]);
    for r in ["localsubjectaccessreviews", "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews"] {
        assert!(listed.lines().any(|l| l.starts_with(r) && l.split_whitespace().last() == Some("create")), "{r} in {listed}");
    }
}

#[test]
fn without_authorization_every_review_is_allowed() {
    let c = Cluster::start();
    assert_eq!(can_i(&c, &["delete", "pods", "-n", "kube-system"]), (true, "yes\n".into()), "AlwaysAllow");
    let (ok, out) = can_i(&c, &["--list", "-n", "default"]);
    let rows: Vec<String> = out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert!(ok && rows.iter().any(|r| r == "*.* [] [] [*]") && rows.iter().any(|r| r == "[*] [] [*]"), "{out}");
}

/// `kubectl auth whoami` (a SelfSubjectReview, kubectl's protobuf body): who the apiserver
/// authenticated — the token's user with its uid and groups, the impersonated user with
/// `--as`, and anonymous is refused it (kube's system:basic-user grants it to the
/// authenticated only).
#[test]
fn kubectl_auth_whoami_names_the_authenticated_user() {
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &[]));
    let whoami = |args: &[&str]| {
        let mut all = vec!["auth", "whoami"];
        all.extend_from_slice(args);
        let out = c.kubectl(&all);
        (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };
    let rows = |out: &str| -> Vec<String> { out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect() };

    let (ok, out) = whoami(&["--token", "jane-token"]);
    assert!(ok, "{out}");
    assert_eq!(rows(&out), ["ATTRIBUTE VALUE", "Username jane", "UID uid-1", "Groups [devs qa system:authenticated]"], "{out}");

    let (ok, out) = whoami(&["-o", "json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(v["kind"], "SelfSubjectReview", "{out}");
    assert_eq!(v["status"]["userInfo"]["username"], "keel-admin", "{out}");
    assert_eq!(v["status"]["userInfo"]["groups"], serde_json::json!(["system:masters", "system:authenticated"]), "{out}");
    assert!(v["metadata"]["creationTimestamp"].is_string(), "{out}");

    let (ok, out) = whoami(&["--as", "jane", "--as-group", "devs"]);
    assert!(ok, "{out}");
    assert_eq!(rows(&out)[1..], ["Username jane", "Groups [devs system:authenticated]"], "{out}");

    // Without credentials: anonymous may not create the review (403, as kube with RBAC).
    let (code, body) = curl(
        &c,
        &["-H", "Content-Type: application/json", "-d", r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#],
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    );
    assert_eq!(code, 403, "{body}");
}
