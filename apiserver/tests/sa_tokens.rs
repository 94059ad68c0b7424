//! ServiceAccount tokens through the real interface: `kubectl create token` (TokenRequest, the
//! `serviceaccounts/<name>/token` subresource) against a real apiserver process with
//! `--service-account-signing-key-file`, and the token used with `kubectl --token`, authorized
//! as `system:serviceaccount:<ns>:<name>` by RBAC. A token bound to a pod dies with the pod; a
//! recreated service account (a new uid) does not accept its predecessor's tokens; a token
//! signed by another key is 401 with kube's Status. Expiry is checked in `sa_token_expiry.rs`
//! (it needs the clock seam).

mod secured;

use keel_access::authn::keys::{generate_signing_key_pem, signing_key_from_pem};
use keel_access::authn::serviceaccount::{ObjectLookup, ObjectRef, TokenIssuer};
use keel_testkit::{Cluster, eventually, text};
use secured::{Pki, curl};
use std::time::Duration;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const UNAUTHORIZED: &str =
    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;

fn key_file(dir: &tempfile::TempDir, name: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, generate_signing_key_pem().unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
    path.to_string_lossy().into_owned()
}

/// `kubectl --token <token> <args>`: success and what it printed.
fn as_token(c: &Cluster, token: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    let out = c.kubectl(&all);
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// The status code and the body as JSON (kube's key order is not ours; the fields are).
fn status(c: &Cluster, token: &str, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = curl(c, &["-H", &bearer(token)], path);
    (code, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

fn unauthorized() -> (u16, serde_json::Value) {
    (401, serde_json::from_str(UNAUTHORIZED).unwrap_or_default())
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Nothing is found: tokens signed by the test itself name objects it does not check.
struct Nothing;

impl ObjectLookup for Nothing {
    fn service_account(&self, _: &str, _: &str) -> Option<ObjectRef> {
        None
    }
    fn pod(&self, _: &str, _: &str) -> Option<ObjectRef> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<ObjectRef> {
        None
    }
    fn node(&self, _: &str) -> Option<ObjectRef> {
        None
    }
}

#[test]
fn kubectl_create_token_gives_a_token_rbac_authorizes_as_the_service_account_until_its_objects_go() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (key, other) = (key_file(&dir, "sa.key"), key_file(&dir, "other.key"));
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &["--service-account-signing-key-file", &key, "--service-account-issuer", ISSUER]));
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "serviceaccount", "robot", "-n", "dev"]);
    c.ok(&["create", "rolebinding", "robot-view", "--clusterrole=view", "--serviceaccount=dev:robot", "-n", "dev"]);

    // Discovery lists the subresource, so kubectl finds it.
    let (code, body) = curl(&c, &["-H", &bearer("keel-admin")], "/api/v1");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let token_row = v["resources"].as_array().and_then(|rs| rs.iter().find(|r| r["name"] == "serviceaccounts/token")).cloned();
    assert_eq!(
        token_row.map(|r| (r["verbs"].clone(), r["kind"].clone(), r["group"].clone())),
        Some((serde_json::json!(["create"]), serde_json::json!("TokenRequest"), serde_json::json!("authentication.k8s.io")))
    );

    let token = c.ok(&["create", "token", "robot", "-n", "dev"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let seen = eventually(Duration::from_secs(20), || as_token(&c, &token, &["get", "serviceaccounts", "-n", "dev"]).0.then_some(()));
    assert!(
        seen.is_some(),
        "the token lists dev's service accounts once the binding is seen: {:?}",
        as_token(&c, &token, &["get", "sa", "-n", "dev"])
    );
    let (ok, out) = as_token(&c, &token, &["get", "pods", "-n", "default"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"pods is forbidden: User "system:serviceaccount:dev:robot" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{out}"
    );
    let (ok, out) = as_token(&c, &token, &["auth", "can-i", "list", "pods", "-n", "dev"]);
    assert!(ok && out == "yes\n", "{out}");

    // kube's validation of the request.
    let short = c.fails(&["create", "token", "robot", "-n", "dev", "--duration", "5m"]);
    assert!(short.contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"), "{short}");
    let missing = c.fails(&["create", "token", "nobody", "-n", "dev"]);
    assert!(missing.contains(r#"serviceaccounts "nobody" not found"#), "{missing}");
    let (code, body) = curl(&c, &["-H", &bearer("keel-admin"), "-X", "GET"], "/api/v1/namespaces/dev/serviceaccounts/robot/token");
    assert_eq!(code, 405, "{body}");

    // Audience: a token for another audience is not for this apiserver.
    let elsewhere = c.ok(&["create", "token", "robot", "-n", "dev", "--audience", "vault"]).trim().to_string();
    assert_eq!(status(&c, &elsewhere, "/api/v1/namespaces/dev/serviceaccounts"), unauthorized());

    // A token signed by another key (same issuer, same claims) is 401 with kube's Status.
    let sa_json = c.ok(&["get", "serviceaccount", "robot", "-n", "dev", "-o", "json"]);
    let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_str(&sa_json).unwrap_or_else(|e| panic!("{e}"));
    let forger = TokenIssuer::new(
        signing_key_from_pem(&std::fs::read(&other).unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}")),
        ISSUER,
        &[],
    );
    let now = sa.metadata.creation_timestamp.clone().map(|t| t.0).unwrap_or_else(|| panic!("a creation time"));
    let forged = forger
        .token_request(&sa, Default::default(), &Nothing, now, "jti-1")
        .unwrap_or_else(|e| panic!("{e}"))
        .status
        .map(|s| s.token)
        .unwrap_or_default();
    assert_eq!(status(&c, &forged, "/api/v1/namespaces/dev/serviceaccounts"), unauthorized());
    let (ok, out) = as_token(&c, &forged, &["get", "sa", "-n", "dev"]);
    assert!(!ok && out.contains("You must be logged in to the server (Unauthorized)"), "{out}");

    // Bound to a pod: works while the pod lives, 401 once it is deleted.
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: dev}\nspec:\n  serviceAccountName: robot\n  containers: [{name: c, image: busybox}]\n",
        &[],
    );
    let bound =
        c.ok(&["create", "token", "robot", "-n", "dev", "--bound-object-kind", "Pod", "--bound-object-name", "p"]).trim().to_string();
    let (ok, out) = as_token(&c, &bound, &["get", "sa", "-n", "dev"]);
    assert!(ok, "{out}");
    c.ok(&["create", "serviceaccount", "other", "-n", "dev"]);
    let wrong = c.fails(&["create", "token", "other", "-n", "dev", "--bound-object-kind", "Pod", "--bound-object-name", "p"]);
    assert!(wrong.contains("cannot bind token for serviceaccount \"other\" to pod running with different serviceaccount name."), "{wrong}");
    c.ok(&["delete", "pod", "p", "-n", "dev", "--grace-period=0", "--force"]);
    let gone = eventually(Duration::from_secs(20), || {
        let answer = status(&c, &bound, "/api/v1/namespaces/dev/serviceaccounts");
        (answer.0 == 401).then_some(answer)
    });
    assert_eq!(gone, Some(unauthorized()), "the pod-bound token dies with the pod");
    let (ok, out) = as_token(&c, &token, &["get", "sa", "-n", "dev"]);
    assert!(ok, "the unbound token still works: {out}");

    // A recreated service account has a new uid: the old tokens are refused, new ones work.
    c.ok(&["delete", "serviceaccount", "robot", "-n", "dev"]);
    c.ok(&["create", "serviceaccount", "robot", "-n", "dev"]);
    let refused = eventually(Duration::from_secs(20), || {
        let answer = status(&c, &token, "/api/v1/namespaces/dev/serviceaccounts");
        (answer.0 == 401).then_some(answer)
    });
    assert_eq!(refused, Some(unauthorized()), "the old uid's token is refused");
    let fresh = c.ok(&["create", "token", "robot", "-n", "dev"]).trim().to_string();
    let (ok, out) = as_token(&c, &fresh, &["get", "sa", "-n", "dev"]);
    assert!(ok, "a token of the new service account works at once: {out}");
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: dev}\nspec:\n  containers: [{name: c, image: busybox}]\n";

#[test]
fn service_account_admission_gives_pods_the_default_account_and_its_token_volume() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = key_file(&dir, "sa.key");
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &["--service-account-signing-key-file", &key, "--service-account-issuer", ISSUER]));
    c.ok(&["create", "namespace", "dev"]);
    // No default account yet (the controller-manager creates it): kube's refusal.
    let out = c.kubectl_in(&["create", "-f", "-"], Some(POD));
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(r#"pods "p" is forbidden: error looking up service account dev/default: serviceaccount "default" not found"#),
        "{err}"
    );
    c.ok(&["create", "serviceaccount", "default", "-n", "dev"]);
    let out = c.kubectl_in(&["create", "-f", "-"], Some(POD));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p: serde_json::Value = serde_json::from_str(&c.ok(&["get", "pod", "p", "-n", "dev", "-o", "json"])).unwrap_or_default();
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let volume = &p["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{volume}");
    assert_eq!(
        volume["projected"],
        serde_json::json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]})
    );
    assert_eq!(
        p["spec"]["containers"][0]["volumeMounts"],
        serde_json::json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    );
    // Automounting off: the account, no volume.
    let off = POD.replace("name: p,", "name: q,").replace("spec:\n", "spec:\n  automountServiceAccountToken: false\n");
    c.apply(&off, &[]);
    let q: serde_json::Value = serde_json::from_str(&c.ok(&["get", "pod", "q", "-n", "dev", "-o", "json"])).unwrap_or_default();
    assert_eq!((q["spec"]["serviceAccountName"].as_str(), q["spec"].get("volumes")), (Some("default"), None));
    // A named account that does not exist.
    let named = POD.replace("name: p,", "name: r,").replace("spec:\n", "spec:\n  serviceAccountName: ghost\n");
    let out = c.kubectl_in(&["create", "-f", "-"], Some(&named));
    assert!(
        text(&out.stderr).contains(r#"error looking up service account dev/ghost: serviceaccount "ghost" not found"#),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn enabling_service_account_admission_without_a_signing_key_stops_startup() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(keel_testkit::bin("keel-apiserver"))
        .args(["--etcd-servers", "http://127.0.0.1:9", "--secure-port", "0", "--enable-admission-plugins", "ServiceAccount", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("ServiceAccount") && err.contains("--service-account-signing-key-file"), "{err}");
}

#[test]
fn without_a_signing_key_there_is_no_token_subresource() {
    let pki = Pki::new();
    let c = Cluster::start_with(&pki.flags("Node,RBAC", &[]));
    c.ok(&["create", "serviceaccount", "robot"]);
    // Nor ServiceAccount admission: pods stay as they were sent (Keel's dev mode).
    c.apply(&POD.replace("namespace: dev", "namespace: default"), &[]);
    let p: serde_json::Value = serde_json::from_str(&c.ok(&["get", "pod", "p", "-o", "json"])).unwrap_or_default();
    assert_eq!((p["spec"].get("serviceAccountName"), p["spec"].get("volumes")), (None, None), "{p}");
    let (code, body) = curl(
        &c,
        &["-H", &bearer("keel-admin"), "-H", "Content-Type: application/json", "-d", "{}"],
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
    );
    assert_eq!(code, 404, "{body}");
}
