//! etcd's auth through the real interfaces: etcdctl for users, roles, permissions and
//! enforcement; gRPC with `token` metadata for what etcdctl cannot send (nested txns, reused
//! tokens); the JSON gateway's `Authorization` header; JWT tokens; and a 3-member cluster whose
//! auth survives every member restarting.
#![allow(clippy::disallowed_methods)]

mod common;

use common::cluster::Cluster;
use common::{Member, b};
use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::{AlarmRequest, AlarmType};
use keel_proto::etcdserverpb::{AuthRoleAddRequest, AuthenticateRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

/// Run etcdctl against `endpoints`; (success, stdout, stderr).
fn ctl(endpoints: &str, args: &[&str]) -> (bool, String, String) {
    ctl_stdin(endpoints, args, "")
}

fn ctl_stdin(endpoints: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoints, "--dial-timeout", "5s", "--command-timeout", "15s"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl (apt-get install etcd-client)");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let o = child.wait_with_output().expect("etcdctl");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
}

/// etcdctl must succeed; its stdout.
fn ok(endpoints: &str, args: &[&str]) -> String {
    let (ok, out, err) = ctl(endpoints, args);
    assert!(ok, "etcdctl {args:?} failed:\n{out}{err}");
    out
}

/// etcdctl must fail with `Error: <msg>` on stderr.
fn fails(endpoints: &str, args: &[&str], msg: &str) {
    let (ok, out, err) = ctl(endpoints, args);
    assert!(!ok, "etcdctl {args:?} succeeded:\n{out}");
    assert!(err.contains(msg), "etcdctl {args:?}: want {msg:?} in\n{err}");
}

/// Users root (root role), frank (read `/a/`), wo (write `/w/`); auth on.
fn set_up_users(ep: &str) {
    ok(ep, &["user", "add", "root", "--new-user-password", "rootpw"]);
    ok(ep, &["user", "add", "frank", "--new-user-password", "fpw"]);
    ok(ep, &["user", "add", "wo", "--new-user-password", "wpw"]);
    ok(ep, &["role", "add", "ro"]);
    ok(ep, &["role", "add", "worole"]);
    ok(ep, &["role", "grant-permission", "ro", "read", "/a/", "--prefix"]);
    ok(ep, &["role", "grant-permission", "worole", "write", "/w/", "--prefix"]);
    ok(ep, &["user", "grant-role", "frank", "ro"]);
    ok(ep, &["user", "grant-role", "wo", "worole"]);
    // etcdctl gives root the root role itself when enabling finds it missing.
    assert_eq!(ok(ep, &["auth", "enable"]).trim(), "Authentication Enabled");
}

async fn token(ch: Channel, name: &str, password: &str) -> Result<String, tonic::Status> {
    let req = AuthenticateRequest { name: name.into(), password: password.into() };
    Ok(AuthClient::new(ch).authenticate(req).await?.into_inner().token)
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("token", token.parse().expect("ascii token"));
    r
}

#[test]
fn users_and_roles_are_managed_like_etcd_and_refuse_bad_input() {
    let m = Member::start(&["--bcrypt-cost", "4"]);
    let ep = &m.endpoint();
    assert_eq!(ok(ep, &["user", "add", "alice", "--new-user-password", "pw"]).trim(), "User alice created");
    fails(ep, &["user", "add", "alice", "--new-user-password", "pw"], "Error: etcdserver: user name already exists");
    fails(ep, &["user", "add", "", "--new-user-password", "pw"], "Error: etcdserver: user name is empty");
    assert_eq!(ok(ep, &["user", "add", "bob", "--no-password"]).trim(), "User bob created");
    assert_eq!(ok(ep, &["role", "add", "r1"]).trim(), "Role r1 created");
    fails(ep, &["role", "add", "r1"], "Error: etcdserver: role name already exists");
    fails(ep, &["role", "add", ""], "Error: etcdserver: role name is empty");
    ok(ep, &["role", "add", "r0"]);
    assert_eq!(ok(ep, &["role", "list"]), "r0\nr1\n");
    assert_eq!(ok(ep, &["user", "list"]), "alice\nbob\n");
    for args in [
        &["role", "grant-permission", "r1", "read", "/a/", "--prefix"][..],
        &["role", "grant-permission", "r1", "write", "/w"],
        &["role", "grant-permission", "r1", "readwrite", "/rw", "--from-key"],
        &["role", "grant-permission", "r1", "read", "k1", "k5"],
    ] {
        assert_eq!(ok(ep, args).trim(), "Role r1 updated");
    }
    assert_eq!(
        ok(ep, &["role", "get", "r1"]),
        "Role r1\nKV Read:\n\t[/a/, /a0) (prefix /a/)\n\t[/rw, <open ended>\n\t[k1, k5)\nKV Write:\n\t[/rw, <open ended>\n\t/w\n"
    );
    fails(ep, &["role", "get", "nope"], "Error: etcdserver: role name not found");
    fails(ep, &["role", "revoke-permission", "r1", "/a/"], "Error: etcdserver: permission is not granted to the role");
    assert_eq!(
        ok(ep, &["role", "revoke-permission", "r1", "/a/", "--prefix"]).trim(),
        "Permission of range [/a/, /a0) is revoked from role r1"
    );
    ok(ep, &["user", "grant-role", "alice", "r1"]);
    ok(ep, &["user", "grant-role", "alice", "r1"]);
    ok(ep, &["user", "grant-role", "alice", "r0"]);
    assert_eq!(ok(ep, &["user", "get", "alice"]), "User: alice\nRoles: r0 r1\n", "granting twice keeps one grant");
    fails(ep, &["user", "grant-role", "nobody", "r1"], "Error: etcdserver: user name not found");
    fails(ep, &["user", "grant-role", "alice", "nope"], "Error: etcdserver: role name not found");
    fails(ep, &["user", "revoke-role", "bob", "r1"], "Error: etcdserver: role is not granted to the user");
    fails(ep, &["user", "get", "nobody"], "Error: etcdserver: user name not found");
    fails(ep, &["user", "delete", "nobody"], "Error: etcdserver: user name not found");
    assert_eq!(ok(ep, &["role", "delete", "r0"]).trim(), "Role r0 deleted");
    assert_eq!(ok(ep, &["user", "get", "alice"]), "User: alice\nRoles: r1\n", "a deleted role leaves its users");
    let (ok_, out, err) = ctl_stdin(ep, &["user", "passwd", "alice", "--interactive=false"], "newpw\n");
    assert!(ok_ && out.trim() == "Password updated", "{out}{err}");
    assert_eq!(ok(ep, &["user", "revoke-role", "alice", "r1"]).trim(), "Role r1 is revoked from user alice");
    assert_eq!(ok(ep, &["user", "delete", "bob"]).trim(), "User bob deleted");
    fails(ep, &["auth", "enable"], "Error: etcdserver: root user does not exist");
    // Without auth, authenticating is refused with etcd's error (through the gateway).
    let (status, body) = m.http("POST", "/v3/auth/authenticate", r#"{"name":"alice","password":"newpw"}"#);
    assert_eq!(status, 412, "{body}");
    assert!(body.contains("etcdserver: authentication is not enabled"), "{body}");
    // Passwords are never stored or logged plain.
    let log = std::fs::read_to_string(&m.log).expect("log");
    assert!(!log.contains("newpw"), "a password reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_on_every_path_matches_etcd() {
    let m = Member::start(&["--bcrypt-cost", "4"]);
    let ep = &m.endpoint();
    set_up_users(ep);
    let root = ["--user", "root:rootpw"];
    let frank = ["--user", "frank:fpw"];
    let wo = ["--user", "wo:wpw"];
    let with = |who: &[&str], args: &[&str]| -> Vec<String> { who.iter().chain(args).map(|s| s.to_string()).collect() };
    let run = |who: &[&str], args: &[&str]| {
        let a = with(who, args);
        ctl(ep, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // No credentials, bad credentials.
    fails(ep, &["get", "/a/1"], "Error: etcdserver: user name is empty");
    let (okay, _, err) = run(&["--user", "root:wrong"], &["get", "/a/1"]);
    assert!(!okay && err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");
    let (okay, _, err) = run(&["--user", "ghost:x"], &["get", "/a/1"]);
    assert!(!okay && err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");
    // Root may do everything.
    for k in ["/a/1", "/b/1", "/w/1"] {
        let (okay, out, err) = run(&root, &["put", k, "v1"]);
        assert!(okay && out.trim() == "OK", "{out}{err}");
    }
    // A reader reads its prefix and nothing else, and writes nothing.
    let (okay, out, _) = run(&frank, &["get", "/a/1"]);
    assert!(okay && out == "/a/1\nv1\n", "{out}");
    assert!(run(&frank, &["get", "/a/", "--prefix"]).0);
    for args in [&["get", "/b/1"][..], &["get", "/a", "--prefix"], &["get", "", "--from-key"], &["put", "/a/1", "x"], &["del", "/a/1"]] {
        let (okay, _, err) = run(&frank, args);
        assert!(!okay && err.contains("Error: etcdserver: permission denied"), "{args:?}: {err}");
    }
    // A watch outside the prefix is created and canceled at once.
    let (okay, _, err) = run(&frank, &["watch", "/b/1"]);
    assert!(!okay && err.contains("permission denied"), "{err}");
    // A txn touching one forbidden key is refused as a whole.
    let txn = "value(\"/a/1\") = \"v1\"\n\nput /a/2 x\nput /b/1 changed\n\nget /a/1\n\n";
    let a = with(&frank, &["txn", "--interactive=false"]);
    let (okay, _, err) = ctl_stdin(ep, &a.iter().map(String::as_str).collect::<Vec<_>>(), txn);
    assert!(!okay && err.contains("permission denied"), "{err}");
    assert_eq!(run(&root, &["get", "/b/1", "--print-value-only"]).1, "v1\n", "nothing of the txn was applied");
    // A writer writes its prefix, but may not see what it overwrites.
    assert!(run(&wo, &["put", "/w/2", "x"]).0);
    let (okay, _, err) = run(&wo, &["put", "/w/2", "y", "--prev-kv"]);
    assert!(!okay && err.contains("permission denied"), "{err}");
    // Leases: revoking one that holds a forbidden key is refused; its keys are hidden.
    let lease = run(&root, &["lease", "grant", "600"]).1;
    let id = lease.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(run(&root, &["put", "/b/leased", "x", "--lease", &id]).0);
    let (okay, _, err) = run(&frank, &["lease", "revoke", &id]);
    assert!(!okay && err.contains("permission denied"), "{err}");
    let (okay, _, err) = run(&frank, &["lease", "timetolive", &id, "--keys"]);
    assert!(!okay && err.contains("permission denied"), "{err}");
    let (okay, _, err) = run(&wo, &["put", "/w/3", "x", "--lease", &id]);
    assert!(!okay && err.contains("permission denied"), "joining a lease that holds a forbidden key: {err}");
    // Admin-only calls.
    for args in [&["user", "list"][..], &["role", "list"], &["user", "get", "wo"], &["role", "get", "worole"], &["compaction", "1"]] {
        let (okay, _, err) = run(&frank, args);
        assert!(!okay && err.contains("permission denied"), "{args:?}: {err}");
    }
    let (okay, out, err) = run(&frank, &["defrag"]);
    assert!(!okay && (out + &err).contains("permission denied"), "defrag: {err}");
    let snap = tempfile::tempdir().expect("tempdir");
    let file = snap.path().join("s.db");
    let (okay, _, err) = run(&frank, &["snapshot", "save", file.to_str().expect("path")]);
    assert!(!okay && err.contains("permission denied"), "snapshot: {err}");
    // What a user may see of itself, and what anyone may call.
    assert_eq!(run(&frank, &["user", "get", "frank"]).1, "User: frank\nRoles: ro\n");
    assert!(run(&frank, &["role", "get", "ro"]).0);
    assert!(run(&frank, &["member", "list"]).0);
    assert!(run(&frank, &["alarm", "list"]).0);
    // Locks and elections live under their name: rights on it are needed.
    let (okay, _, err) = run(&frank, &["lock", "/b/lock", "true"]);
    assert!(!okay && err.contains("permission denied"), "lock: {err}");
    let (okay, out, err) = run(&root, &["lock", "/b/lock", "echo", "held"]);
    assert!(okay && out.contains("held"), "{out}{err}");
    assert!(run(&frank, &["endpoint", "status"]).0);
    // Root stays while auth is on.
    for args in [&["user", "delete", "root"][..], &["user", "revoke-role", "root", "root"], &["role", "delete", "root"]] {
        let (okay, _, err) = run(&root, args);
        assert!(!okay && err.contains("Error: etcdserver: invalid auth management"), "{args:?}: {err}");
    }
    assert!(run(&root, &["defrag"]).0);
    assert!(run(&root, &["snapshot", "save", file.to_str().expect("path")]).0);

    // gRPC: a nested txn is checked too (etcd 3.4 does not), and a token dies with its password.
    let ch = m.channel().await;
    let tok = token(ch.clone(), "frank", "fpw").await.expect("authenticate");
    assert_eq!(tok.len(), 16 + 1 + tok.split('.').nth(1).expect("index").len(), "etcd's token shape: {tok}");
    let mut kv = KvClient::new(ch.clone());
    let put_b = RequestOp { request: Some(Op::RequestPut(PutRequest { key: b("/b/1"), value: b("nested"), ..Default::default() })) };
    let inner = TxnRequest { success: vec![put_b], ..Default::default() };
    let outer = TxnRequest { success: vec![RequestOp { request: Some(Op::RequestTxn(inner)) }], ..Default::default() };
    let e = kv.txn(with_token(outer, &tok)).await.expect_err("nested write to a forbidden key");
    assert_eq!((e.code(), e.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
    let read = || RangeRequest { key: b("/a/1"), ..Default::default() };
    kv.range(with_token(read(), &tok)).await.expect("token works");
    // Only root raises or clears alarms (a NOSPACE alarm would stop every write).
    let nospace = AlarmRequest { action: AlarmAction::Activate as i32, member_id: 1, alarm: AlarmType::Nospace as i32 };
    let e = MaintenanceClient::new(ch.clone()).alarm(with_token(nospace, &tok)).await.expect_err("alarm by a reader");
    assert_eq!((e.code(), e.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
    let e = kv.range(with_token(read(), "bogus.1")).await.expect_err("garbage token");
    assert_eq!((e.code(), e.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));
    let (okay, _, err) = ctl_stdin(ep, &["--user", "root:rootpw", "user", "passwd", "frank", "--interactive=false"], "fpw2\n");
    assert!(okay, "{err}");
    let e = kv.range(with_token(read(), &tok)).await.expect_err("a token from before the password change");
    assert_eq!((e.code(), e.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));
    let e = token(ch.clone(), "frank", "fpw").await.expect_err("old password");
    assert_eq!(e.message(), "etcdserver: authentication failed, invalid user ID or password");
    let tok = token(ch.clone(), "frank", "fpw2").await.expect("new password");
    kv.range(with_token(read(), &tok)).await.expect("new token works");

    // The gateway takes the token in the Authorization header.
    let (status, body) = m.http("POST", "/v3/auth/authenticate", r#"{"name":"frank","password":"fpw2"}"#);
    assert_eq!(status, 200, "{body}");
    let gw: serde_json::Value = serde_json::from_str(&body).expect("json");
    let gw_token = gw["token"].as_str().expect("token").to_string();
    let (status, body) = m.http_with("POST", "/v3/kv/range", &[("Authorization", &gw_token)], r#"{"key":"L2EvMQ=="}"#);
    assert_eq!(status, 200, "{body}");
    let (status, body) = m.http_with("POST", "/v3/kv/range", &[("Authorization", &gw_token)], r#"{"key":"L2IvMQ=="}"#);
    assert_eq!(status, 403, "{body}");
    let (status, body) = m.http_with("POST", "/v3/kv/range", &[("Authorization", "garbage")], r#"{"key":"L2EvMQ=="}"#);
    assert!(status == 401 && body.contains("etcdserver: invalid auth token"), "{status} {body}");

    // Off again: everyone may do everything.
    assert_eq!(run(&root, &["auth", "disable"]).1.trim(), "Authentication Disabled");
    assert_eq!(ok(ep, &["get", "/b/1", "--print-value-only"]), "v1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_signed_with_another_key_expired_or_stale_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let (private, public) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
    std::fs::write(&private, key.serialize_pem()).expect("write");
    std::fs::write(&public, key.public_key_pem()).expect("write");
    let spec = format!("jwt,pub-key={},priv-key={},sign-method=ES256,ttl=3s", public.display(), private.display());
    let m = Member::start(&["--bcrypt-cost", "4", "--auth-token", &spec]);
    set_up_users(&m.endpoint());
    let ch = m.channel().await;
    let tok = token(ch.clone(), "frank", "fpw").await.expect("authenticate");
    assert_eq!(tok.split('.').count(), 3, "a JWT: {tok}");
    let mut kv = KvClient::new(ch.clone());
    let read = || RangeRequest { key: b("/a/1"), ..Default::default() };
    kv.range(with_token(read(), &tok)).await.expect("a fresh token works");
    // etcdctl authenticates and uses JWTs like simple tokens.
    assert!(ctl(&m.endpoint(), &["--user", "frank:fpw", "get", "/a/1"]).0);

    // The same claims signed with another key.
    #[derive(serde::Serialize)]
    struct Claims {
        username: String,
        revision: u64,
        exp: u64,
    }
    let other = rcgen::KeyPair::generate().expect("key");
    let forged_key = jsonwebtoken::EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).expect("ec key");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = Claims { username: "root".into(), revision: 1000, exp: now + 600 };
    let forged = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), &claims, &forged_key).expect("sign");
    let e = kv.range(with_token(read(), &forged)).await.expect_err("signed with the wrong key");
    assert_eq!((e.code(), e.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));

    // After any auth change the token is stale; after its ttl it is expired.
    let root = token(ch.clone(), "root", "rootpw").await.expect("root");
    AuthClient::new(ch.clone()).role_add(with_token(AuthRoleAddRequest { name: "later".into() }, &root)).await.expect("role add");
    let e = kv.range(with_token(read(), &tok)).await.expect_err("stale");
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: revision of auth store is old"));
    let fresh = token(ch.clone(), "frank", "fpw").await.expect("authenticate again");
    kv.range(with_token(read(), &fresh)).await.expect("fresh");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match kv.range(with_token(read(), &fresh)).await {
            Ok(_) => assert!(Instant::now() < until, "a 3 s token still works after 10 s"),
            Err(e) => {
                assert_eq!((e.code(), e.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_replicated_and_survives_a_restart_of_every_member() {
    let mut c = Cluster::start(3, &["--bcrypt-cost", "4"]).await;
    let all = c.endpoints();
    set_up_users(&c.nodes[0].endpoint());
    // Every member enforces what was configured through one: tokens, users, permissions.
    for n in &c.nodes {
        let (okay, _, err) = ctl(&n.endpoint(), &["--user", "frank:fpw", "put", "/a/1", "x"]);
        assert!(!okay && err.contains("permission denied"), "{}: {err}", n.name);
        assert!(ctl(&n.endpoint(), &["--user", "root:rootpw", "put", "/a/1", "x"]).0, "{}", n.name);
    }
    let tok = token(c.nodes[0].channel().await, "frank", "fpw").await.expect("authenticate");
    for n in &c.nodes {
        let mut kv = KvClient::new(n.channel().await);
        kv.range(with_token(RangeRequest { key: b("/a/1"), ..Default::default() }, &tok))
            .await
            .expect("a simple token works on every member");
    }
    for n in &mut c.nodes {
        n.kill9();
    }
    for n in &mut c.nodes {
        n.spawn(&[]);
    }
    for i in 0..3 {
        c.wait_up(i).await;
    }
    let until = Instant::now() + Duration::from_secs(30);
    while !ctl(&all, &["--user", "root:rootpw", "get", "/a/1"]).0 {
        assert!(Instant::now() < until, "cluster did not serve root after the restart:\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in &c.nodes {
        fails(&n.endpoint(), &["get", "/a/1"], "etcdserver: user name is empty");
        let (okay, out, err) = ctl(&n.endpoint(), &["--user", "frank:fpw", "get", "/a/1", "--print-value-only"]);
        assert!(okay && out == "x\n", "{}: {out}{err}", n.name);
        let (okay, _, err) = ctl(&n.endpoint(), &["--user", "frank:fpw", "put", "/a/1", "y"]);
        assert!(!okay && err.contains("permission denied"), "{}: {err}", n.name);
    }
}
