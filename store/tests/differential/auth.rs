//! The Auth service and KV under auth, sent to one fresh server as a fixed script, and its
//! answers as a transcript comparable between etcd and Keel: each line is the step, then the
//! response (header IDs and Raft term cleared, tokens replaced by the user's name) or the gRPC
//! code and message.
//!
//! The script: users (empty name, duplicate, `no_password`), roles and their permissions (a
//! key, a range, a prefix; read, write, readwrite), grants and revokes of each, AuthEnable
//! without a root user and without the root role, Authenticate with right and wrong
//! passwords, KV calls as a user with and without permission, with no token and a bogus one,
//! admin calls as a non-root user, AuthDisable, and a stale token after it.
//!
//! Not sent: AuthStatus (etcd 3.4 has no such RPC; Keel serves 3.5's) and RoleGrantPermission
//! without a permission (etcd 3.4.23 dies of a nil dereference); see the README.

use keel_proto::authpb::permission::Type;
use keel_proto::authpb::{Permission, UserAddOptions};
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::*;
use std::fmt::Debug;
use tonic::transport::Channel;

/// The header's cluster ID, member ID and Raft term cleared in `text` (each side has its own);
/// its revision stays.
fn clear_header(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("header: Some(ResponseHeader {") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find("})").map_or(tail.len(), |e| e + 2);
        let revision = tail[..end].split("revision: ").nth(1).and_then(|r| r.split([',', ' ']).next()).unwrap_or("?");
        out.push_str(&format!("header(revision {revision})"));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A request carrying `token` (none when empty) as etcd's `token` metadata.
fn req<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if !token.is_empty() {
        r.metadata_mut().insert("token", token.parse().expect("an ASCII token"));
    }
    r
}

fn perm(t: Type, key: &'static str, range_end: &'static str) -> Option<Permission> {
    Some(Permission { perm_type: t as i32, key: key.into(), range_end: range_end.into() })
}

fn put(key: &'static str) -> PutRequest {
    PutRequest { key: key.into(), value: "v".into(), ..Default::default() }
}

fn range(key: &'static str, range_end: &'static str) -> RangeRequest {
    RangeRequest { key: key.into(), range_end: range_end.into(), ..Default::default() }
}

/// A txn: if `cmp`'s version is 0 then put `then`, else range `otherwise`.
fn txn(cmp: &'static str, then: &'static str, otherwise: &'static str) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: cmp.into(),
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        }],
        success: vec![RequestOp { request: Some(Request::RequestPut(put(then))) }],
        failure: vec![RequestOp { request: Some(Request::RequestRange(range(otherwise, ""))) }],
    }
}

struct Script {
    auth: AuthClient<Channel>,
    kv: KvClient<Channel>,
    /// Tokens handed out so far and the placeholder each is written as.
    tokens: Vec<(String, String)>,
    out: Vec<String>,
}

impl Script {
    fn log<T: Debug>(&mut self, what: &str, r: Result<tonic::Response<T>, tonic::Status>) {
        let answer = match r {
            Ok(r) => format!("{:?}", r.into_inner()),
            Err(s) => format!("error {:?}: {}", s.code(), s.message()),
        };
        let answer = self.tokens.iter().fold(answer, |a, (t, name)| a.replace(t.as_str(), name));
        self.out.push(format!("{what}: {}", clear_header(&answer)));
    }

    /// Authenticate; the token (empty on failure), logged as `TOKEN(name)`.
    async fn login(&mut self, name: &str, password: &str) -> String {
        let r = self.auth.authenticate(AuthenticateRequest { name: name.into(), password: password.into() }).await;
        let token = r.as_ref().map(|r| r.get_ref().token.clone()).unwrap_or_default();
        if !token.is_empty() {
            self.tokens.push((token.clone(), format!("TOKEN({name})")));
        }
        self.log(&format!("authenticate {name:?} {password:?}"), r);
        token
    }
}

/// Run the auth script against the fresh server at `url`.
pub async fn transcript(url: &str) -> Vec<String> {
    let ch = Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect");
    let mut s = Script { auth: AuthClient::new(ch.clone()), kv: KvClient::new(ch), tokens: Vec::new(), out: Vec::new() };
    let add = |name: &str, password: &str, no_password: bool| AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        options: Some(UserAddOptions { no_password }),
        ..Default::default()
    };
    let grant = |name: &str, perm: Option<Permission>| AuthRoleGrantPermissionRequest { name: name.into(), perm };
    let revoke = |role: &str, key: &'static str, range_end: &'static str| AuthRoleRevokePermissionRequest {
        role: role.into(),
        key: key.into(),
        range_end: range_end.into(),
    };
    let user_role = |user: &str, role: &str| AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
    let user_unrole = |name: &str, role: &str| AuthUserRevokeRoleRequest { name: name.into(), role: role.into() };

    // Auth off: users, roles, permissions.
    let r = s.auth.auth_enable(AuthEnableRequest {}).await;
    s.log("enable without root", r);
    let r = s.kv.range(req(range("k", ""), "bogus.1")).await;
    s.log("range with a bogus token, auth off", r);
    let r = s.auth.user_list(req(AuthUserListRequest {}, "bogus.1")).await;
    s.log("list users with a bogus token, auth off", r);
    let r = s.login("root", "rootpw").await;
    assert!(r.is_empty(), "authenticated while auth is off");
    for (what, a) in [
        ("add empty name", add("", "pw", false)),
        ("add root", add("root", "rootpw", false)),
        ("add root again", add("root", "other", false)),
        ("add nopw", add("nopw", "", true)),
        ("add nopw2 with a password", add("nopw2", "ignored", true)),
        ("add emptypw", add("emptypw", "", false)),
        ("add alice", add("alice", "apw", false)),
        ("add bob", add("bob", "bpw", false)),
    ] {
        let r = s.auth.user_add(a).await;
        s.log(what, r);
    }
    for name in ["alice", "nopw", "unknown", ""] {
        let r = s.auth.user_get(AuthUserGetRequest { name: name.into() }).await;
        s.log(&format!("get user {name:?}"), r);
    }
    let r = s.auth.user_list(AuthUserListRequest {}).await;
    s.log("list users", r);
    for (name, pw) in [("alice", "apw2"), ("unknown", "x"), ("nopw", "now")] {
        let r = s
            .auth
            .user_change_password(AuthUserChangePasswordRequest { name: name.into(), password: pw.into(), ..Default::default() })
            .await;
        s.log(&format!("change password {name:?}"), r);
    }
    for name in ["", "ro", "ro", "wo", "rw", "gone"] {
        let r = s.auth.role_add(AuthRoleAddRequest { name: name.into() }).await;
        s.log(&format!("add role {name:?}"), r);
    }
    for (what, g) in [
        ("grant ro read prefix /a/", grant("ro", perm(Type::Read, "/a/", "/a0"))),
        ("grant ro read key /b", grant("ro", perm(Type::Read, "/b", ""))),
        ("grant wo write prefix /w/", grant("wo", perm(Type::Write, "/w/", "/w0"))),
        ("grant rw readwrite range k1..k5", grant("rw", perm(Type::Readwrite, "k1", "k5"))),
        ("grant rw readwrite key k7", grant("rw", perm(Type::Readwrite, "k7", ""))),
        ("grant rw read from-key z", grant("rw", perm(Type::Read, "z", "\0"))),
        ("grant rw write k7 (replaces)", grant("rw", perm(Type::Write, "k7", ""))),
        ("grant unknown role", grant("unknown", perm(Type::Read, "x", ""))),
        ("grant empty key", grant("ro", perm(Type::Read, "", ""))),
    ] {
        let r = s.auth.role_grant_permission(g).await;
        s.log(what, r);
    }
    for role in ["ro", "rw", "unknown", ""] {
        let r = s.auth.role_get(AuthRoleGetRequest { role: role.into() }).await;
        s.log(&format!("get role {role:?}"), r);
    }
    for (what, v) in [
        ("revoke ro /b", revoke("ro", "/b", "")),
        ("revoke ro /b again", revoke("ro", "/b", "")),
        ("revoke rw k1..k4 (not as granted)", revoke("rw", "k1", "k4")),
        ("revoke unknown role", revoke("unknown", "x", "")),
    ] {
        let r = s.auth.role_revoke_permission(v).await;
        s.log(what, r);
    }
    for (what, g) in [
        ("alice gets ro", user_role("alice", "ro")),
        ("alice gets rw", user_role("alice", "rw")),
        ("alice gets ro again", user_role("alice", "ro")),
        ("bob gets wo", user_role("bob", "wo")),
        ("bob gets gone", user_role("bob", "gone")),
        ("unknown gets ro", user_role("unknown", "ro")),
        ("alice gets unknown", user_role("alice", "unknown")),
    ] {
        let r = s.auth.user_grant_role(g).await;
        s.log(what, r);
    }
    let r = s.auth.role_delete(AuthRoleDeleteRequest { role: "gone".into() }).await;
    s.log("delete role gone", r);
    let r = s.auth.role_delete(AuthRoleDeleteRequest { role: "gone".into() }).await;
    s.log("delete role gone again", r);
    for name in ["alice", "bob"] {
        let r = s.auth.user_get(AuthUserGetRequest { name: name.into() }).await;
        s.log(&format!("get user {name:?}"), r);
    }
    for (what, v) in [
        ("bob loses wo", user_unrole("bob", "wo")),
        ("bob loses wo again", user_unrole("bob", "wo")),
        ("unknown loses ro", user_unrole("unknown", "ro")),
    ] {
        let r = s.auth.user_revoke_role(v).await;
        s.log(what, r);
    }
    let r = s.auth.user_delete(AuthUserDeleteRequest { name: "bob".into() }).await;
    s.log("delete bob", r);
    let r = s.auth.user_delete(AuthUserDeleteRequest { name: "bob".into() }).await;
    s.log("delete bob again", r);
    let r = s.auth.role_list(AuthRoleListRequest {}).await;
    s.log("list roles", r);

    // Enabling: root needs the root role (granted without adding it).
    let r = s.auth.auth_enable(AuthEnableRequest {}).await;
    s.log("enable without the root role", r);
    let r = s.auth.user_grant_role(user_role("root", "root")).await;
    s.log("root gets root", r);
    let r = s.auth.auth_enable(AuthEnableRequest {}).await;
    s.log("enable", r);
    let r = s.auth.auth_enable(AuthEnableRequest {}).await;
    s.log("enable again", r);

    // Authenticate.
    s.login("alice", "apw").await;
    s.login("unknown", "x").await;
    s.login("nopw", "").await;
    s.login("emptypw", "").await;
    s.login("", "").await;
    let alice = s.login("alice", "apw2").await;
    let root = s.login("root", "rootpw").await;

    // KV under auth.
    for (who, token) in [("root", root.as_str()), ("alice", alice.as_str()), ("nobody", ""), ("bogus", "bogus.1")] {
        for key in ["/a/x", "k2", "k7", "z9"] {
            let r = s.kv.put(req(put(key), token)).await;
            s.log(&format!("{who} put {key}"), r);
        }
        for (key, end) in [("/a/x", ""), ("/a/", "/a0"), ("/a/", "/b"), ("k1", "k5"), ("k1", "k6"), ("k7", ""), ("z", "\0"), ("y", "\0")] {
            let r = s.kv.range(req(range(key, end), token)).await;
            s.log(&format!("{who} range {key:?}..{end:?}"), r);
        }
        for (cmp, then, otherwise) in [("k2", "k3", "/a/x"), ("/a/x", "k3", "k4"), ("k9", "k3", "/a/x"), ("k2", "/a/y", "k3")] {
            let r = s.kv.txn(req(txn(cmp, then, otherwise), token)).await;
            s.log(&format!("{who} txn {cmp} ? put {then} : range {otherwise}"), r);
        }
        for (key, end) in [("k3", ""), ("/a/x", ""), ("k1", "k5")] {
            let r =
                s.kv.delete_range(req(DeleteRangeRequest { key: key.into(), range_end: end.into(), ..Default::default() }, token)).await;
            s.log(&format!("{who} delete {key:?}..{end:?}"), r);
        }
        let r = s.auth.user_list(req(AuthUserListRequest {}, token)).await;
        s.log(&format!("{who} lists users"), r);
        let r = s.auth.user_get(req(AuthUserGetRequest { name: "alice".into() }, token)).await;
        s.log(&format!("{who} gets alice"), r);
        let r = s.auth.role_get(req(AuthRoleGetRequest { role: "ro".into() }, token)).await;
        s.log(&format!("{who} gets role ro"), r);
    }
    // Changes under auth: by alice (refused), by root; alice's token after losing her role.
    let r = s.auth.role_add(req(AuthRoleAddRequest { name: "x".into() }, &alice)).await;
    s.log("alice adds a role", r);
    let r = s.auth.user_revoke_role(req(user_unrole("alice", "rw"), &root)).await;
    s.log("root takes rw from alice", r);
    let r = s.kv.put(req(put("k2"), &alice)).await;
    s.log("alice put k2 without rw", r);
    let r = s.auth.user_revoke_role(req(user_unrole("root", "root"), &root)).await;
    s.log("root takes root from root", r);
    let r = s.auth.user_delete(req(AuthUserDeleteRequest { name: "root".into() }, &root)).await;
    s.log("root deletes root", r);
    let r = s.auth.auth_disable(req(AuthDisableRequest {}, &alice)).await;
    s.log("alice disables", r);
    let r = s.auth.auth_disable(req(AuthDisableRequest {}, "")).await;
    s.log("nobody disables", r);
    let r = s.auth.auth_disable(req(AuthDisableRequest {}, &root)).await;
    s.log("root disables", r);
    let r = s.kv.range(range("k1", "k9")).await;
    s.log("range after disable", r);
    let r = s.kv.range(req(range("k1", "k9"), &alice)).await;
    s.log("range with a token after disable", r);
    s.out
}
