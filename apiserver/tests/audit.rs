//! The audit log (`--audit-log-path`) through a real apiserver, kubectl and curl: one JSON line
//! per request in kube's audit.k8s.io/v1 Event shape at the Metadata level, saying who (an x509
//! user, a token user, anonymous) did what (verb, objectRef) and how it ended (the code, the
//! decision), with the `Audit-Id` the client saw.

mod secured;

use keel_testkit::{Cluster, eventually, text};
use secured::{Pki, curl};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Every line of the log, each of which must be a JSON object.
fn events(log: &Path) -> Vec<Value> {
    let raw = std::fs::read_to_string(log).unwrap_or_default();
    // The writer appends whole lines; a line still being written has no newline yet.
    let complete = &raw[..raw.rfind('\n').map_or(0, |i| i + 1)];
    complete.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect()
}

/// Waits until some event satisfies `pick`.
fn find(log: &Path, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(20), || events(log).into_iter().find(|e| pick(e)))
        .unwrap_or_else(|| panic!("no audit event for {what} in:\n{}", std::fs::read_to_string(log).unwrap_or_default()))
}

fn is(e: &Value, verb: &str, resource: &str, namespace: &str, code: u64) -> bool {
    e["verb"] == verb
        && e["objectRef"]["resource"] == resource
        && e["objectRef"]["namespace"] == namespace
        && e["responseStatus"]["code"] == code
}

#[test]
fn the_audit_log_says_who_did_what() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("audit.log");
    let log_flag = log.to_string_lossy().into_owned();
    let c = Cluster::builder().secure(true).apiserver_flags(&["--token-auth-file", &pki.tokens, "--audit-log-path", &log_flag]).start();
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "-n", "dev"]);
    let alice = c.kubeconfig_for("alice", &["devs"]);
    let created = eventually(Duration::from_secs(20), || {
        c.kubectl_with(&alice, &["create", "configmap", "x", "-n", "dev"]).status.success().then_some(())
    });
    assert!(created.is_some(), "alice creates a configmap in dev");
    let out = c.kubectl_with(&alice, &["create", "configmap", "y", "-n", "default"]);
    assert!(!out.status.success(), "alice may not write in default: {}", text(&out.stdout));

    // The create: alice (her certificate's CN and O), verb create, objectRef configmaps/x, 201.
    let e = find(&log, "alice's create", |e| is(e, "create", "configmaps", "dev", 201));
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(e["level"], "Metadata");
    assert_eq!(e["stage"], "ResponseComplete");
    assert_eq!(e["user"], json!({"username": "alice", "groups": ["devs", "system:authenticated"]}));
    assert_eq!(e["objectRef"], json!({"resource": "configmaps", "namespace": "dev", "name": "x", "apiVersion": "v1"}));
    assert_eq!(e["requestURI"], "/api/v1/namespaces/dev/configmaps?fieldManager=kubectl-create&fieldValidation=Strict");
    assert_eq!(e["sourceIPs"], json!(["127.0.0.1"]));
    assert!(e["userAgent"].as_str().is_some_and(|a| a.starts_with("kubectl")), "{e}");
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(e["annotations"]["authorization.k8s.io/reason"].as_str().is_some_and(|r| r.contains("alice-edit")), "{e}");
    assert!(e.get("impersonatedUser").is_none());
    assert!(e["auditID"].as_str().is_some_and(|id| id.len() == 36), "a UUID: {e}");
    let (received, stage) = (e["requestReceivedTimestamp"].as_str().unwrap_or(""), e["stageTimestamp"].as_str().unwrap_or(""));
    assert!(received.len() == 27 && received.ends_with('Z') && stage >= received, "MicroTime: {received} {stage}");

    // The refusal: 403 with kube's Status, the decision forbid, no object name (never read).
    let e = find(&log, "alice's refused create", |e| is(e, "create", "configmaps", "default", 403));
    assert_eq!(e["user"]["username"], "alice");
    assert_eq!(e["responseStatus"]["reason"], "Forbidden");
    assert_eq!(
        e["responseStatus"]["message"],
        r#"configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "default""#
    );
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "forbid");
    assert!(e["objectRef"].get("name").is_none(), "{e}");

    // The client's Audit-ID is kept and sent back; anonymous reads /version.
    let out = std::process::Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null", "-H", "Audit-ID: test-audit-1"])
        .arg(format!("https://{}/version", c.https))
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    assert!(text(&out.stdout).to_ascii_lowercase().contains("audit-id: test-audit-1"), "{}", text(&out.stdout));
    let e = find(&log, "the anonymous /version", |e| e["auditID"] == "test-audit-1");
    assert_eq!(e["user"], json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}));
    assert_eq!(
        (e["verb"].clone(), e["requestURI"].clone(), e["responseStatus"].clone()),
        (json!("get"), json!("/version"), json!({"metadata": {}, "code": 200}))
    );
    assert!(e.get("objectRef").is_none());

    // A bad token: 401, nobody authenticated.
    let (code, _) = curl(&c, &["-H", "Authorization: Bearer nope", "-H", "Audit-ID: test-audit-2"], "/api/v1/namespaces");
    assert_eq!(code, 401);
    let e = find(&log, "the 401", |e| e["auditID"] == "test-audit-2");
    assert_eq!((e["user"].clone(), e["responseStatus"]["code"].clone()), (json!({}), json!(401)));

    // Impersonation: the admin token acting as alice.
    let args = ["-H", "Authorization: Bearer keel-admin", "-H", "Impersonate-User: alice", "-H", "Audit-ID: test-audit-3"];
    let (code, _) = curl(&c, &args, "/api/v1/namespaces/dev/configmaps/x");
    assert_eq!(code, 200);
    let e = find(&log, "the impersonated get", |e| e["auditID"] == "test-audit-3");
    assert_eq!(e["user"]["username"], "keel-admin");
    assert_eq!(e["impersonatedUser"]["username"], "alice");
    assert_eq!(e["objectRef"]["name"], "x");

    // A watch: ResponseStarted when it starts streaming, ResponseComplete when it ends.
    let args = ["-H", "Authorization: Bearer keel-admin", "-H", "Audit-ID: test-audit-4"];
    let (code, _) = curl(&c, &args, "/api/v1/namespaces/dev/configmaps?watch=1&timeoutSeconds=1");
    assert_eq!(code, 200);
    find(&log, "the watch's end", |e| e["auditID"] == "test-audit-4" && e["stage"] == "ResponseComplete");
    let stages: Vec<Value> = events(&log).into_iter().filter(|e| e["auditID"] == "test-audit-4").map(|e| e["stage"].clone()).collect();
    assert_eq!(stages, [json!("ResponseStarted"), json!("ResponseComplete")]);

    // Every line is an Event with an id; kube's counters say how many and that none was lost.
    let all = events(&log);
    assert!(all.iter().all(|e| e["kind"] == "Event" && e["auditID"].as_str().is_some_and(|s| !s.is_empty())));
    let (code, metrics) = curl(&c, &["-H", "Authorization: Bearer keel-admin"], "/metrics");
    assert_eq!(code, 200);
    let generated = metrics.lines().find(|l| l.starts_with("apiserver_audit_event_total ")).unwrap_or_else(|| panic!("{metrics}"));
    let n: f64 = generated.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(n >= all.len() as f64, "{generated} for {} lines", all.len());
    assert!(!metrics.lines().any(|l| l.starts_with("apiserver_audit_error_total{") && !l.ends_with(" 0")), "{metrics}");
}

#[test]
fn no_flag_no_log_but_every_answer_has_an_audit_id() {
    let c = Cluster::start_with(&[]);
    let out = std::process::Command::new("curl")
        .args(["-skS", "-D", "-", "-o", "/dev/null", "--max-time", "20"])
        .arg(format!("https://{}/api/v1/namespaces", c.https))
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let head = text(&out.stdout).to_ascii_lowercase();
    assert!(
        head.lines().any(|l| l.starts_with("audit-id: ") && l.trim_end().len() == "audit-id: ".len() + 36),
        "{head}{}",
        text(&out.stderr)
    );
    let (_, metrics) = curl(&c, &[], "/metrics");
    assert!(!metrics.contains("apiserver_audit_event_total"), "no audit counters without a log");
}
