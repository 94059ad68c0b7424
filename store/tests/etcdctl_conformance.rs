//! Conformance against the real `etcdctl` 3.4 (Debian package `etcd-client`): every test starts its
//! own `keel-store`, drives it with `etcdctl` exactly as a user would, and compares the output with
//! what etcd 3.4.23 prints for the same sequence of commands (see the golden transcript in the notes).
//! Revisions are computed from the operations each test performs; cluster/member IDs and the raft
//! term are read from the member itself (`endpoint status -w json`) and then checked everywhere.

mod common;
use common::cluster::Cluster;
use common::*;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long any single etcdctl invocation may run before the test gives up on it (a safety net
/// against hangs; etcdctl itself is bounded by `--dial-timeout 5s --command-timeout 10s`).
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long to wait for a background `etcdctl watch` to print what the test expects.
const WATCH_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// The etcdctl binary; the tests FAIL (never skip) when it is missing or not 3.4.
fn etcdctl() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = if std::path::Path::new("/usr/bin/etcdctl").exists() { "/usr/bin/etcdctl" } else { "etcdctl" };
        match Command::new(bin).arg("version").env("ETCDCTL_API", "3").output() {
            Ok(o) if String::from_utf8_lossy(&o.stdout).starts_with("etcdctl version: 3.4.") => bin.to_string(),
            Ok(o) => panic!(
                "`{bin} version` is not etcdctl 3.4 (stdout {:?}, stderr {:?}); install the Debian package etcd-client \
                 (apt-get install etcd-client), which provides etcdctl 3.4",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!(
                "etcdctl not found ({e}): these conformance tests need the real etcdctl 3.4; \
                 install the Debian package etcd-client (apt-get install etcd-client)"
            ),
        }
    })
}

thread_local! {
    /// Set by the `three_members_*` variants: the test runs against a 3-member cluster.
    static THREE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// What a test drives: one member, or a 3-member cluster with etcdctl given all three
/// endpoints (it may talk to any of them, so member IDs in headers are not compared there).
struct Target {
    one: Option<Member>,
    three: Option<(Cluster, tokio::runtime::Runtime)>,
}

impl Target {
    fn start() -> Target {
        if THREE.with(|t| t.get()) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            let c = rt.block_on(Cluster::start(3, &[]));
            Target { one: None, three: Some((c, rt)) }
        } else {
            Target { one: Some(Member::start(&[])), three: None }
        }
    }

    fn is_three(&self) -> bool {
        self.three.is_some()
    }

    /// etcdctl's `--endpoints`.
    fn endpoint(&self) -> String {
        match (&self.one, &self.three) {
            (Some(m), _) => m.endpoint(),
            (_, Some((c, _))) => c.endpoints(),
            _ => unreachable!("a target is one member or a cluster"),
        }
    }

    /// The (first) client URL.
    fn url(&self) -> String {
        match (&self.one, &self.three) {
            (Some(m), _) => m.url(),
            (_, Some((c, _))) => c.nodes[0].url(),
            _ => unreachable!("a target is one member or a cluster"),
        }
    }
}

/// Run a conformance test against a 3-member cluster.
fn on_three_members(test: fn()) {
    THREE.with(|t| t.set(true));
    test();
}

/// In cluster runs, member IDs depend on which member etcdctl reached: set them to 0.
fn normalize(v: &mut Value, three: bool) {
    if !three {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if k == "member_id" {
                    *x = json!(0);
                } else {
                    normalize(x, three);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| normalize(x, three)),
        _ => {}
    }
}

fn normalize_text(out: &str, three: bool) -> String {
    if !three {
        return out.to_string();
    }
    out.split_inclusive('\n').map(|l| if l.starts_with("\"MemberID\" : ") { "\"MemberID\" : 0\n" } else { l }).collect()
}

/// What one etcdctl run printed.
#[derive(Debug)]
struct Output {
    cmd: String,
    stdout: String,
    stderr: String,
    code: i32,
}

impl Output {
    /// The last line of stderr (etcdctl's `Error: ...` line).
    fn last_err_line(&self) -> &str {
        self.stderr.trim_end_matches('\n').rsplit('\n').next().unwrap_or("")
    }
}

/// An etcdctl command line against the member.
fn command(m: &Target, args: &[&str]) -> Command {
    let mut cmd = Command::new(etcdctl());
    cmd.env("ETCDCTL_API", "3").args(["--endpoints", &m.endpoint(), "--dial-timeout", "5s", "--command-timeout", "10s"]).args(args);
    cmd
}

fn describe(args: &[&str]) -> String {
    format!("etcdctl {}", args.iter().map(|a| if a.is_empty() { "''".to_string() } else { a.to_string() }).collect::<Vec<_>>().join(" "))
}

/// Read a pipe to the end on a thread, into a shared buffer (so partial output can be looked at).
fn drain(pipe: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).to_string()
}

/// Run `etcdctl <args>` to completion, feeding `stdin` (or /dev/null).
fn ctl(m: &Target, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = command(m, args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn etcdctl");
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.to_vec();
        // A thread, so a large stdin cannot deadlock against etcdctl's own output.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let (out, err) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let readers = [drain(child.stdout.take().expect("stdout"), out.clone()), drain(child.stderr.take().expect("stderr"), err.clone())];
    let mut status = None;
    for _ in 0..(RUN_LIMIT.as_millis() / POLL.as_millis()) {
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(POLL);
    }
    let killed = status.is_none();
    if killed {
        let _ = child.kill();
        status = child.wait().ok();
    }
    for r in readers {
        let _ = r.join();
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let o = Output { cmd: describe(args), stdout: text(&out), stderr: text(&err), code: status.and_then(|s| s.code()).unwrap_or(-1) };
    assert!(!killed, "`{}` did not finish within {RUN_LIMIT:?}; killed it: {o:#?}", o.cmd);
    o
}

/// Assert success with an empty stderr; returns stdout.
fn ok(o: Output) -> String {
    assert!(o.code == 0 && o.stderr.is_empty(), "`{}` should succeed quietly: {o:#?}", o.cmd);
    o.stdout
}

/// Run and expect exactly `want` on stdout, nothing on stderr, exit 0.
fn expect(m: &Target, args: &[&str], stdin: Option<&[u8]>, want: &str) {
    let o = ctl(m, args, stdin);
    assert_eq!(normalize_text(&o.stdout, m.is_three()), want, "stdout of `{}` (stderr {:?}, exit {})", o.cmd, o.stderr, o.code);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "exit code / stderr of `{}`", o.cmd);
}

/// A txn read from stdin.
fn txn(m: &Target, args: &[&str], script: &str) -> Output {
    let mut a = vec!["txn"];
    a.extend_from_slice(args);
    ctl(m, &a, Some(script.as_bytes()))
}

/// A server error as etcdctl 3.4 shows it: exit 1, nothing on stdout, the clientv3 retry warn line
/// carrying the gRPC code and message, and `shown` as the last stderr line.
fn assert_server_error_shown(o: &Output, grpc_code: &str, msg: &str, shown: &str) {
    assert_eq!(o.last_err_line(), shown, "error line of `{}`: {o:#?}", o.cmd);
    assert_eq!((o.code, o.stdout.as_str()), (1, ""), "exit code / stdout of `{}`: {o:#?}", o.cmd);
    let want = format!("\"error\":\"rpc error: code = {grpc_code} desc = {msg}\"");
    assert!(o.stderr.contains(&want), "`{}` should log the gRPC status {want}: {o:#?}", o.cmd);
}

fn assert_server_error(o: &Output, grpc_code: &str, msg: &str) {
    assert_server_error_shown(o, grpc_code, msg, &format!("Error: {msg}"));
}

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";

/// Parse `-w json` output (one document) of a successful command.
fn json_of(o: Output) -> Value {
    let out = ok(o);
    let mut v = serde_json::from_str(out.trim_end()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    normalize(&mut v, THREE.with(|t| t.get()));
    v
}

fn get_json(m: &Target, args: &[&str]) -> Value {
    json_of(ctl(m, args, None))
}

/// Standard base64 (what etcdctl's JSON uses for bytes).
fn b64(data: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = data.as_bytes();
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The member's identity as etcdctl sees it.
struct Ids {
    cluster: u64,
    member: u64,
    term: u64,
}

impl Ids {
    fn of(m: &Target) -> Ids {
        let st = get_json(m, &["endpoint", "status", "-w", "json"]);
        let h = &st[0]["Status"]["header"];
        let ids = Ids {
            cluster: h["cluster_id"].as_u64().expect("cluster_id"),
            member: h["member_id"].as_u64().expect("member_id"),
            term: h["raft_term"].as_u64().expect("raft_term"),
        };
        let three = m.is_three();
        assert!(ids.cluster != 0 && (ids.member != 0 || three) && ids.term != 0, "status header has zero IDs/term: {st}");
        if three {
            let terms: Vec<&Value> = st.as_array().expect("array").iter().map(|s| &s["Status"]["header"]["raft_term"]).collect();
            assert!(terms.len() == 3 && terms.iter().all(|t| **t == json!(ids.term)), "one term on every member: {st}");
        }
        ids
    }

    /// A response header as etcdctl prints it in `-w json`.
    fn hdr(&self, rev: i64) -> Value {
        json!({"cluster_id": self.cluster, "member_id": self.member, "revision": rev, "raft_term": self.term})
    }

    /// The flattened header some etcdctl commands (lease) print.
    fn flat(&self, rev: i64, rest: Value) -> Value {
        let mut v = json!({"cluster_id": self.cluster, "member_id": self.member, "revision": rev, "raft_term": self.term});
        for (k, x) in rest.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    }
}

/// A kv as etcdctl prints it in `-w json` (lease 0 omitted).
fn kv(key: &str, create: i64, modr: i64, version: i64, value: &str) -> Value {
    json!({"key": b64(key), "create_revision": create, "mod_revision": modr, "version": version, "value": b64(value)})
}

/// The nine puts of the golden transcript's section 1; afterwards the revision is 10.
fn seed_golden_kvs(m: &Target, ids: &Ids) {
    for (k, v) in [("foo", "bar"), ("foo1", "bar1"), ("foo2", "bar2"), ("bar", "baz"), ("zoo", "zebra"), ("foo", "bar-v2")] {
        expect(m, &["put", k, v], None, "OK\n");
    }
    assert_eq!(get_json(m, &["put", "-w", "json", "foo", "bar-v3"]), json!({"header": ids.hdr(8)}));
    expect(m, &["put", "--prev-kv", "foo", "bar-v4"], None, "OK\nfoo\nbar-v3\n");
    assert_eq!(
        get_json(m, &["put", "--prev-kv", "-w", "json", "foo", "bar-v5"]),
        json!({"header": ids.hdr(10), "prev_kv": kv("foo", 2, 9, 4, "bar-v4")})
    );
}

/// A background `etcdctl watch`, killed by PID when stopped or dropped.
struct Watch {
    cmd: String,
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Watch {
    fn start(m: &Target, args: &[&str]) -> Watch {
        let mut child =
            command(m, args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn etcdctl watch");
        let (stdout, stderr) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let readers =
            vec![drain(child.stdout.take().expect("stdout"), stdout.clone()), drain(child.stderr.take().expect("stderr"), stderr.clone())];
        Watch { cmd: describe(args), child: Some(child), stdout, stderr, readers }
    }

    fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// Poll until `done(stdout)` holds (true) or the limit passes (false); the watch must keep running.
    fn wait_for(&mut self, limit: Duration, done: impl Fn(&str) -> bool) -> bool {
        for _ in 0..(limit.as_millis() / POLL.as_millis()) {
            if done(&self.stdout()) {
                return true;
            }
            if let Some(s) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("`{}` exited early ({s}): stdout {:?} stderr {:?}", self.cmd, self.stdout(), text(&self.stderr));
            }
            std::thread::sleep(POLL);
        }
        done(&self.stdout())
    }

    /// Kill the process (by its PID) and return everything it printed.
    fn stop(mut self) -> Output {
        let code = match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                c.wait().ok().and_then(|s| s.code()).unwrap_or(-1)
            }
            None => -1,
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output { cmd: self.cmd.clone(), stdout: self.stdout(), stderr: text(&self.stderr), code }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start a watch, wait until it printed exactly `want`, stop it, and compare.
fn expect_watch(m: &Target, args: &[&str], want: &str) {
    let mut w = Watch::start(m, args);
    w.wait_for(WATCH_LIMIT, |s| s.len() >= want.len());
    let o = w.stop();
    assert_eq!(o.stdout, want, "stdout of `{}` (stderr {:?})", o.cmd, o.stderr);
    assert_eq!(o.stderr, "", "stderr of `{}`", o.cmd);
}

/// The events of `watch -w json` output (one JSON document per line), flattened, after checking
/// every response's frame the way etcdctl prints it.
fn watch_json_events(ids: &Ids, out: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for line in out.lines() {
        let mut r: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("watch line is not JSON ({e}): {line:?}"));
        normalize(&mut r, THREE.with(|t| t.get()));
        let h = &r["Header"];
        assert_eq!(
            (h["cluster_id"].as_u64(), h["member_id"].as_u64(), h["raft_term"].as_u64()),
            (Some(ids.cluster), Some(ids.member), Some(ids.term)),
            "{line}"
        );
        assert_eq!((&r["CompactRevision"], &r["Canceled"], &r["Created"]), (&json!(0), &json!(false), &json!(false)), "{line}");
        let evs = r["Events"].as_array().unwrap_or_else(|| panic!("no Events in {line}"));
        assert!(!evs.is_empty(), "a watch response without events was printed: {line}");
        let max_mod = evs.iter().filter_map(|e| e["kv"]["mod_revision"].as_i64()).max().unwrap_or(0);
        assert!(h["revision"].as_i64().unwrap_or(0) >= max_mod, "header revision below its events: {line}");
        events.extend(evs.iter().cloned());
    }
    events
}

// ---------------------------------------------------------------------------------------------
// put / get
// ---------------------------------------------------------------------------------------------

#[test]
fn put_and_get_output_matches_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    seed_golden_kvs(&m, &ids);

    expect(&m, &["get", "foo"], None, "foo\nbar-v5\n");
    expect(&m, &["get", "--prefix", "foo"], None, "foo\nbar-v5\nfoo1\nbar1\nfoo2\nbar2\n");
    expect(&m, &["get", "--from-key", "foo1"], None, "foo1\nbar1\nfoo2\nbar2\nzoo\nzebra\n");
    expect(&m, &["get", "--from-key", ""], None, "bar\nbaz\nfoo\nbar-v5\nfoo1\nbar1\nfoo2\nbar2\nzoo\nzebra\n");
    expect(&m, &["get", "foo", "--rev", "2"], None, "foo\nbar\n");
    expect(&m, &["get", "foo", "--rev", "7"], None, "foo\nbar-v2\n");
    expect(&m, &["get", "--prefix", "foo", "--rev", "3"], None, "foo\nbar\nfoo1\nbar1\n");
    expect(&m, &["get", "--prefix", "foo", "--keys-only"], None, "foo\n\nfoo1\n\nfoo2\n\n");
    expect(&m, &["get", "--prefix", "foo", "--print-value-only"], None, "bar-v5\nbar1\nbar2\n");
    expect(&m, &["get", "--prefix", "foo", "--keys-only", "--print-value-only"], None, "\n\n\n");
    // [key, range_end)
    expect(&m, &["get", "foo", "foo2"], None, "foo\nbar-v5\nfoo1\nbar1\n");
    expect(&m, &["get", "a", "g", "--keys-only"], None, "bar\n\nfoo\n\nfoo1\n\nfoo2\n\n");
    // A missing key prints nothing at all and succeeds.
    expect(&m, &["get", "nosuchkey"], None, "");
    expect(&m, &["get", "--consistency=s", "foo"], None, "foo\nbar-v5\n");
    expect(&m, &["get", "foo", "--hex"], None, "\\x66\\x6f\\x6f\n\\x62\\x61\\x72\\x2d\\x76\\x35\n");

    // -w json: int64 as numbers, bytes base64, zero fields omitted.
    assert_eq!(
        get_json(&m, &["get", "foo", "-w", "json"]),
        json!({"header": ids.hdr(10), "kvs": [kv("foo", 2, 10, 5, "bar-v5")], "count": 1})
    );
    assert_eq!(
        get_json(&m, &["get", "--prefix", "foo", "-w", "json"]),
        json!({"header": ids.hdr(10), "kvs": [kv("foo", 2, 10, 5, "bar-v5"), kv("foo1", 3, 3, 1, "bar1"), kv("foo2", 4, 4, 1, "bar2")], "count": 3})
    );
    assert_eq!(get_json(&m, &["get", "nosuchkey", "-w", "json"]), json!({"header": ids.hdr(10)}));
    assert_eq!(
        get_json(&m, &["get", "--prefix", "foo", "--rev", "3", "-w", "json"]),
        json!({"header": ids.hdr(10), "kvs": [kv("foo", 2, 2, 1, "bar"), kv("foo1", 3, 3, 1, "bar1")], "count": 2})
    );
    assert_eq!(
        get_json(&m, &["get", "--prefix", "", "--keys-only", "--limit", "1", "-w", "json"]),
        json!({"header": ids.hdr(10), "kvs": [{"key": b64("bar"), "create_revision": 5, "mod_revision": 5, "version": 1}], "more": true, "count": 5})
    );

    // -w fields
    let fields = format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : 10\n\"RaftTerm\" : {}\n\"Key\" : \"foo\"\n\"CreateRevision\" : 2\n\
         \"ModRevision\" : 10\n\"Version\" : 5\n\"Value\" : \"bar-v5\"\n\"Lease\" : 0\n\"More\" : false\n\"Count\" : 1\n",
        ids.cluster, ids.member, ids.term
    );
    expect(&m, &["get", "foo", "-w", "fields"], None, &fields);

    // A value read from stdin keeps its trailing newline.
    expect(&m, &["put", "stdinkey"], Some(b"line1\nline2\n"), "OK\n");
    assert_eq!(
        get_json(&m, &["get", "stdinkey", "-w", "json"]),
        json!({"header": ids.hdr(11), "kvs": [kv("stdinkey", 11, 11, 1, "line1\nline2\n")], "count": 1})
    );
    expect(&m, &["put", "--", "-dashkey", "-dashvalue"], None, "OK\n");
    expect(&m, &["get", "--", "-dashkey"], None, "-dashkey\n-dashvalue\n");
    // --rev -1 is the current revision.
    expect(&m, &["get", "foo", "--rev", "-1"], None, "foo\nbar-v5\n");
}

#[test]
fn get_with_sort_and_limit_matches_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    seed_golden_kvs(&m, &ids);

    let keys = |ks: &[&str]| ks.iter().map(|k| format!("{k}\n\n")).collect::<String>();
    for (target, ascend, descend) in [
        ("KEY", ["bar", "foo", "foo1", "foo2", "zoo"], ["zoo", "foo2", "foo1", "foo", "bar"]),
        ("CREATE", ["foo", "foo1", "foo2", "bar", "zoo"], ["zoo", "bar", "foo2", "foo1", "foo"]),
        ("MODIFY", ["foo1", "foo2", "bar", "zoo", "foo"], ["foo", "zoo", "bar", "foo2", "foo1"]),
        ("VALUE", ["foo", "foo1", "foo2", "bar", "zoo"], ["zoo", "bar", "foo2", "foo1", "foo"]),
        ("VERSION", ["bar", "foo1", "foo2", "zoo", "foo"], ["foo", "bar", "foo1", "foo2", "zoo"]),
    ] {
        expect(&m, &["get", "--prefix", "", "--sort-by", target, "--order", "ASCEND", "--keys-only"], None, &keys(&ascend));
        expect(&m, &["get", "--prefix", "", "--sort-by", target, "--order", "DESCEND", "--keys-only"], None, &keys(&descend));
    }
    expect(&m, &["get", "--prefix", "", "--sort-by", "MODIFY"], None, "foo1\nbar1\nfoo2\nbar2\nbar\nbaz\nzoo\nzebra\nfoo\nbar-v5\n");
    expect(&m, &["get", "--prefix", "", "--order", "DESCEND"], None, "zoo\nzebra\nfoo2\nbar2\nfoo1\nbar1\nfoo\nbar-v5\nbar\nbaz\n");

    // --limit: the first N in key order, `more` and the full `count`.
    expect(&m, &["get", "--prefix", "", "--limit", "2"], None, "bar\nbaz\nfoo\nbar-v5\n");
    assert_eq!(
        get_json(&m, &["get", "--from-key", "", "--limit", "2", "-w", "json"]),
        json!({"header": ids.hdr(10), "kvs": [kv("bar", 5, 5, 1, "baz"), kv("foo", 2, 10, 5, "bar-v5")], "more": true, "count": 5})
    );
    assert_eq!(
        get_json(&m, &["get", "--prefix", "foo", "--limit", "3", "-w", "json"]),
        json!({"header": ids.hdr(10), "kvs": [kv("foo", 2, 10, 5, "bar-v5"), kv("foo1", 3, 3, 1, "bar1"), kv("foo2", 4, 4, 1, "bar2")], "count": 3})
    );
    // Sorting happens before the limit is applied (etcd fetches everything, sorts, then truncates).
    assert_eq!(
        get_json(&m, &["get", "--prefix", "", "--sort-by", "MODIFY", "--order", "DESCEND", "--limit", "2", "-w", "json"]),
        json!({"header": ids.hdr(10), "kvs": [kv("foo", 2, 10, 5, "bar-v5"), kv("zoo", 6, 6, 1, "zebra")], "more": true, "count": 5})
    );
    expect(
        &m,
        &["get", "--prefix", "", "--sort-by", "CREATE", "--order", "DESCEND", "--limit", "3", "--keys-only"],
        None,
        &keys(&["zoo", "bar", "foo2"]),
    );
    expect(&m, &["get", "--prefix", "", "--sort-by", "VALUE", "--limit", "2", "--print-value-only"], None, "bar-v5\nbar1\n");
    // Sort and limit at an old revision.
    expect(
        &m,
        &["get", "--prefix", "", "--rev", "4", "--sort-by", "KEY", "--order", "DESCEND", "--limit", "2"],
        None,
        "foo2\nbar2\nfoo1\nbar1\n",
    );
}

// ---------------------------------------------------------------------------------------------
// del
// ---------------------------------------------------------------------------------------------

#[test]
fn del_prefix_and_prev_kv_match_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    for (k, v) in [("tmp1", "v1"), ("tmp2", "v2"), ("tmp3", "v3"), ("tmpx", "vx")] {
        expect(&m, &["put", k, v], None, "OK\n"); // revisions 2..=5
    }
    expect(&m, &["del", "tmp1"], None, "1\n"); // 6
    expect(&m, &["del", "--prefix", "tmp"], None, "3\n"); // 7
    expect(&m, &["put", "tmpa", "a"], None, "OK\n"); // 8
    expect(&m, &["put", "tmpb", "b"], None, "OK\n"); // 9
    expect(&m, &["del", "--prev-kv", "tmpa"], None, "1\ntmpa\na\n"); // 10
    expect(&m, &["del", "--prev-kv", "--prefix", "tmp"], None, "1\ntmpb\nb\n"); // 11
    expect(&m, &["del", "nosuchkey"], None, "0\n"); // no new revision
    assert_eq!(get_json(&m, &["del", "nosuchkey", "-w", "json"]), json!({"header": ids.hdr(11)}));
    expect(&m, &["put", "tmpc", "c"], None, "OK\n"); // 12
    assert_eq!(get_json(&m, &["del", "tmpc", "-w", "json"]), json!({"header": ids.hdr(13), "deleted": 1}));
    expect(&m, &["put", "tmpd", "d"], None, "OK\n"); // 14
    assert_eq!(
        get_json(&m, &["del", "--prev-kv", "tmpd", "-w", "json"]),
        json!({"header": ids.hdr(15), "deleted": 1, "prev_kvs": [kv("tmpd", 14, 14, 1, "d")]})
    );
    expect(&m, &["put", "tmpe", "e"], None, "OK\n"); // 16
    let fields = format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : 17\n\"RaftTerm\" : {}\n\"Deleted\" : 1\n\"PrevKey\" : \"tmpe\"\n\
         \"PrevCreateRevision\" : 16\n\"PrevModRevision\" : 16\n\"PrevVersion\" : 1\n\"PrevValue\" : \"e\"\n\"PrevLease\" : 0\n",
        ids.cluster, ids.member, ids.term
    );
    expect(&m, &["del", "--prev-kv", "tmpe", "-w", "fields"], None, &fields); // 17
    for (k, v) in [("r1", "1"), ("r2", "2"), ("r3", "3"), ("zoo", "zebra")] {
        expect(&m, &["put", k, v], None, "OK\n"); // 18..=21
    }
    expect(&m, &["del", "r1", "r3"], None, "2\n"); // r1, r2: 22
    expect(&m, &["del", "--from-key", "r3"], None, "2\n"); // r3 and zoo: 23
    expect(&m, &["del", "--prefix", "r"], None, "0\n");
    expect(&m, &["get", "--from-key", ""], None, "");
    // Deleted keys stay readable at older revisions.
    expect(&m, &["get", "--prefix", "tmp", "--rev", "5"], None, "tmp1\nv1\ntmp2\nv2\ntmp3\nv3\ntmpx\nvx\n");
    assert_eq!(get_json(&m, &["get", "zoo", "-w", "json"]), json!({"header": ids.hdr(23)}));
}

// ---------------------------------------------------------------------------------------------
// txn
// ---------------------------------------------------------------------------------------------

/// Nested op response headers are compared separately (see `txn_json_nested_headers_match_etcd`).
fn without_nested_headers(mut v: Value) -> Value {
    if let Some(rs) = v["responses"].as_array_mut() {
        for r in rs {
            if let Some(inner) = r["Response"].as_object_mut() {
                for (_, resp) in inner.iter_mut() {
                    if let Some(o) = resp.as_object_mut() {
                        o.remove("header");
                    }
                }
            }
        }
    }
    v
}

#[test]
fn txn_success_and_failure_paths_match_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    expect(&m, &["put", "foo", "bar-v6"], None, "OK\n"); // 2
    expect(&m, &["put", "foo1", "bar1"], None, "OK\n"); // 3
    expect(&m, &["put", "foo2", "bar2"], None, "OK\n"); // 4

    // Compares, success ops, failure ops: each section ends with an empty line.
    let o = txn(&m, &[], "value(\"foo\") = \"bar-v6\"\nmod(\"foo\") > \"0\"\n\nput foo bar-txn-ok\nget foo1\n\nput foo bar-txn-fail\n\n");
    assert_eq!((o.stdout.as_str(), o.stderr.as_str(), o.code), ("SUCCESS\n\nOK\n\nfoo1\nbar1\n", "", 0), "{o:#?}"); // 5
    let o = txn(&m, &[], "value(\"foo\") = \"nope\"\n\nput foo should-not-happen\n\nput failkey failed-branch\nget foo\ndel foo2\n\n");
    assert_eq!((o.stdout.as_str(), o.stderr.as_str(), o.code), ("FAILURE\n\nOK\n\nfoo\nbar-txn-ok\n\n1\n", "", 0), "{o:#?}"); // 6
    expect(&m, &["get", "--prefix", ""], None, "failkey\nfailed-branch\nfoo\nbar-txn-ok\nfoo1\nbar1\n");

    // Empty txn: no compares = success.
    let o = txn(&m, &[], "\n\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("SUCCESS\n", 0), "{o:#?}");
    assert_eq!(json_of(txn(&m, &["-w", "json"], "\n\n\n")), json!({"header": ids.hdr(6), "succeeded": true}));

    // A comparison against a missing key: mod = 0.
    let o = txn(&m, &[], "mod(\"nosuchkey\") = \"0\"\n\nput created-by-txn yes\n\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("SUCCESS\n\nOK\n", 0), "{o:#?}"); // 7
    let o =
        txn(&m, &[], "value(\"foo\") != \"x\"\nvalue(\"foo\") < \"zzz\"\n\ndel --prev-kv created-by-txn\nput --prev-kv foo bar-v7\n\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("SUCCESS\n\n1\ncreated-by-txn\nyes\n\nOK\nfoo\nbar-txn-ok\n", 0), "{o:#?}"); // 8
    // Extra blank lines after the failure section are fine.
    let o = txn(&m, &[], "value(\"foo\") = \"bar-v7\"\n\nput foo bar-v8\n\nput foo bar-never\n\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("SUCCESS\n\nOK\n", 0), "{o:#?}"); // 9
    // foo: created at 2, versions 1 (2), 2 (5), 3 (8), 4 (9).
    let o = txn(&m, &[], "create(\"foo\") = \"2\"\nversion(\"foo\") = \"4\"\nmod(\"foo\") = \"9\"\n\nget foo\nget foo --rev 2\n\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("SUCCESS\n\nfoo\nbar-v8\n\nfoo\nbar-v6\n", 0), "{o:#?}");
    // One failing compare fails the txn; an empty failure branch prints only FAILURE.
    let o = txn(&m, &[], "create(\"foo\") = \"2\"\nversion(\"foo\") > \"4\"\n\nput x 1\n\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("FAILURE\n", 0), "{o:#?}");
    let o = txn(&m, &[], "mod(\"foo\") < \"9\"\n\nput x 1\n\nget --prefix foo --keys-only\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("FAILURE\n\nfoo\n\nfoo1\n\n", 0), "{o:#?}");

    // Without the last empty line etcdctl stops at EOF and sends nothing.
    let o = txn(&m, &[], "value(\"foo\") = \"x\"\n\nput a 1\n\nput b 2\n");
    assert_eq!((o.stdout.as_str(), o.stderr.as_str(), o.code), ("", "Error: EOF\n", 3), "{o:#?}");
    expect(&m, &["get", "a"], None, "");
    expect(&m, &["get", "b"], None, "");

    // -w json on the failure path: `succeeded` is omitted when false.
    let v = json_of(txn(&m, &["-w", "json"], "create(\"foo\") = \"999\"\n\nput x 1\n\nget --prefix foo\nput foo3 bar3\n\n"));
    assert_eq!(
        without_nested_headers(v),
        json!({"header": ids.hdr(10), "responses": [
            {"Response": {"ResponseRange": {"kvs": [kv("foo", 2, 9, 4, "bar-v8"), kv("foo1", 3, 3, 1, "bar1")], "count": 2}}},
            {"Response": {"ResponsePut": {}}}
        ]})
    );
    // ... and on the success path.
    let v = json_of(txn(&m, &["-w", "json"], "value(\"foo3\") = \"bar3\"\n\ndel foo3\nget foo\n\n\n"));
    assert_eq!(
        without_nested_headers(v),
        json!({"header": ids.hdr(11), "succeeded": true, "responses": [
            {"Response": {"ResponseDeleteRange": {"deleted": 1}}},
            {"Response": {"ResponseRange": {"kvs": [kv("foo", 2, 9, 4, "bar-v8")], "count": 1}}}
        ]})
    );
    expect(&m, &["get", "--prefix", "", "--keys-only"], None, "failkey\n\nfoo\n\nfoo1\n\n");
}

#[test]
fn txn_json_nested_headers_match_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    expect(&m, &["put", "foo", "bar"], None, "OK\n"); // 2
    expect(&m, &["put", "foo1", "bar1"], None, "OK\n"); // 3
    // etcd: nested op headers carry only `revision`; a range before any write in the txn reports the
    // revision the txn started from, a put the new one.
    let v = json_of(txn(&m, &["-w", "json"], "create(\"foo\") = \"999\"\n\nput x 1\n\nget --prefix foo\nput foo2 bar2\n\n"));
    assert_eq!(
        v,
        json!({"header": ids.hdr(4), "responses": [
            {"Response": {"ResponseRange": {"header": {"revision": 3}, "kvs": [kv("foo", 2, 2, 1, "bar"), kv("foo1", 3, 3, 1, "bar1")], "count": 2}}},
            {"Response": {"ResponsePut": {"header": {"revision": 4}}}}
        ]})
    );
    // A read-only txn: every nested header is the current revision.
    let v = json_of(txn(&m, &["-w", "json"], "value(\"foo\") > \"a\"\n\nget foo --rev 2\nget foo2 --limit 1\n\n\n"));
    assert_eq!(
        v,
        json!({"header": ids.hdr(4), "succeeded": true, "responses": [
            {"Response": {"ResponseRange": {"header": {"revision": 4}, "kvs": [kv("foo", 2, 2, 1, "bar")], "count": 1}}},
            {"Response": {"ResponseRange": {"header": {"revision": 4}, "kvs": [kv("foo2", 4, 4, 1, "bar2")], "count": 1}}}
        ]})
    );
}

// ---------------------------------------------------------------------------------------------
// watch
// ---------------------------------------------------------------------------------------------

#[test]
fn watch_history_with_rev_prefix_and_prev_kv_matches_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    expect(&m, &["put", "foo", "bar"], None, "OK\n"); // 2
    expect(&m, &["put", "foo1", "bar1"], None, "OK\n"); // 3
    expect(&m, &["put", "foo2", "bar2"], None, "OK\n"); // 4
    expect(&m, &["put", "foo", "bar-v2"], None, "OK\n"); // 5
    expect(&m, &["del", "foo2"], None, "1\n"); // 6
    expect(&m, &["put", "foo2", "bar2"], None, "OK\n"); // 7
    expect(&m, &["put", "foo", "bar-v3"], None, "OK\n"); // 8
    expect(&m, &["del", "foo"], None, "1\n"); // 9
    expect(&m, &["put", "zoo", "z"], None, "OK\n"); // 10

    expect_watch(&m, &["watch", "foo", "--rev", "1"], "PUT\nfoo\nbar\nPUT\nfoo\nbar-v2\nPUT\nfoo\nbar-v3\nDELETE\nfoo\n\n");
    expect_watch(
        &m,
        &["watch", "--prefix", "foo", "--rev", "5"],
        "PUT\nfoo\nbar-v2\nDELETE\nfoo2\n\nPUT\nfoo2\nbar2\nPUT\nfoo\nbar-v3\nDELETE\nfoo\n\n",
    );
    // --prev-kv: event type, then the previous key/value (when there is one), then key/value.
    expect_watch(
        &m,
        &["watch", "--prefix", "foo", "--rev", "4", "--prev-kv"],
        "PUT\nfoo2\nbar2\n\
         PUT\nfoo\nbar\nfoo\nbar-v2\n\
         DELETE\nfoo2\nbar2\nfoo2\n\n\
         PUT\nfoo2\nbar2\n\
         PUT\nfoo\nbar-v2\nfoo\nbar-v3\n\
         DELETE\nfoo\nbar-v3\nfoo\n\n",
    );
    // [key, range_end)
    expect_watch(&m, &["watch", "foo1", "zoo", "--rev", "1"], "PUT\nfoo1\nbar1\nPUT\nfoo2\nbar2\nDELETE\nfoo2\n\nPUT\nfoo2\nbar2\n");

    // -w json: PUT events omit `type`, DELETE has "type":1 and a kv with only key and mod_revision.
    let want = [
        json!({"kv": kv("foo2", 4, 4, 1, "bar2")}),
        json!({"type": 1, "kv": {"key": b64("foo2"), "mod_revision": 6}}),
        json!({"kv": kv("foo2", 7, 7, 1, "bar2")}),
    ];
    let mut w = Watch::start(&m, &["watch", "foo2", "--rev", "1", "-w", "json"]);
    w.wait_for(WATCH_LIMIT, |s| s.contains("\"mod_revision\":7") && s.ends_with('\n'));
    let o = w.stop();
    assert_eq!(o.stderr, "", "{o:#?}");
    assert_eq!(watch_json_events(&ids, &o.stdout), want, "{o:#?}");

    let want_prev = [
        json!({"kv": kv("foo2", 4, 4, 1, "bar2")}),
        json!({"type": 1, "kv": {"key": b64("foo2"), "mod_revision": 6}, "prev_kv": kv("foo2", 4, 4, 1, "bar2")}),
        json!({"kv": kv("foo2", 7, 7, 1, "bar2")}),
    ];
    let mut w = Watch::start(&m, &["watch", "foo2", "--rev", "1", "--prev-kv", "-w", "json"]);
    w.wait_for(WATCH_LIMIT, |s| s.contains("\"mod_revision\":7") && s.ends_with('\n'));
    let o = w.stop();
    assert_eq!(watch_json_events(&ids, &o.stdout), want_prev, "{o:#?}");
}

#[test]
fn watch_sees_live_puts_and_deletes_like_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    expect(&m, &["put", "other", "x"], None, "OK\n"); // 2

    // Watcher 1 starts at revision 3, so it sees every later change to `live` whenever it gets
    // registered (live or caught up).
    let mut w1 = Watch::start(&m, &["watch", "live", "--prev-kv", "--rev", "3"]);
    // Watcher 2 has no --rev: it only sees what happens after it is registered. Put a sync key until
    // it shows up, so the changes below are certainly delivered live.
    let mut w2 = Watch::start(&m, &["watch", "--prefix", "live", "-w", "json"]);
    let mut rev = 2;
    let mut synced = false;
    for _ in 0..20 {
        expect(&m, &["put", "live-sync", "s"], None, "OK\n");
        rev += 1;
        if w2.wait_for(Duration::from_secs(3), |s| s.contains(&b64("live-sync"))) {
            synced = true;
            break;
        }
    }
    assert!(synced, "`etcdctl watch --prefix live` never printed the put of live-sync: {:?}", w2.stdout());

    expect(&m, &["put", "live", "v1"], None, "OK\n");
    expect(&m, &["put", "live", "v2"], None, "OK\n");
    expect(&m, &["del", "live"], None, "1\n");
    expect(&m, &["put", "livex", "x"], None, "OK\n");
    expect(&m, &["put", "unrelated", "u"], None, "OK\n");
    let (r1, r2, r3, r4) = (rev + 1, rev + 2, rev + 3, rev + 4);

    let want1 = "PUT\nlive\nv1\nPUT\nlive\nv1\nlive\nv2\nDELETE\nlive\nv2\nlive\n\n";
    w1.wait_for(WATCH_LIMIT, |s| s.len() >= want1.len());
    let livex = b64("livex");
    w2.wait_for(WATCH_LIMIT, |s| s.contains(&livex) && s.ends_with('\n'));
    let (o1, o2) = (w1.stop(), w2.stop());
    assert_eq!(o1.stdout, want1, "{o1:#?}");
    assert_eq!(o1.stderr, "", "{o1:#?}");
    assert_eq!(o2.stderr, "", "{o2:#?}");

    let events = watch_json_events(&ids, &o2.stdout);
    let sync_key = json!(b64("live-sync"));
    let (sync, rest): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e["kv"]["key"] == sync_key);
    assert!(!sync.is_empty() && sync.iter().all(|e| e.get("type").is_none()), "{o2:#?}");
    assert_eq!(
        rest,
        vec![
            json!({"kv": kv("live", r1, r1, 1, "v1")}),
            json!({"kv": kv("live", r1, r2, 2, "v2")}),
            json!({"type": 1, "kv": {"key": b64("live"), "mod_revision": r3}}),
            json!({"kv": kv("livex", r4, r4, 1, "x")}),
        ],
        "{o2:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// lease
// ---------------------------------------------------------------------------------------------

/// `lease <hex16> granted with TTL(<ttl>s)` -> the ID.
fn parse_grant(out: &str, ttl: i64) -> String {
    let id = out.strip_prefix("lease ").and_then(|r| r.strip_suffix(&format!(" granted with TTL({ttl}s)\n")));
    let id = id.unwrap_or_else(|| panic!("unexpected lease grant output {out:?}"));
    assert!(id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "lease ID {id:?} is not 16 hex digits");
    id.to_string()
}

/// `lease <id> granted with TTL(60s), remaining(Ns)<suffix>` -> N.
fn parse_ttl(out: &str, id: &str, granted: i64, suffix: &str) -> i64 {
    let rest = out
        .strip_prefix(&format!("lease {id} granted with TTL({granted}s), remaining("))
        .and_then(|r| r.strip_suffix(&format!("s){suffix}\n")))
        .unwrap_or_else(|| panic!("unexpected timetolive output {out:?}"));
    let remaining: i64 = rest.parse().unwrap_or_else(|_| panic!("unexpected timetolive output {out:?}"));
    assert!(remaining > 0 && remaining <= granted, "remaining {remaining} outside (0, {granted}]: {out:?}");
    remaining
}

#[test]
fn lease_grant_keepalive_timetolive_list_revoke_match_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);

    let l1 = parse_grant(&ok(ctl(&m, &["lease", "grant", "60"], None)), 60);
    let n1 = u64::from_str_radix(&l1, 16).unwrap();
    let g2 = get_json(&m, &["lease", "grant", "60", "-w", "json"]);
    let n2 = g2["ID"].as_u64().expect("ID");
    assert_eq!(g2, ids.flat(1, json!({"ID": n2, "TTL": 60, "Error": ""})));
    assert!(n2 != n1 && n2 <= i64::MAX as u64, "lease IDs {n1} {n2}");
    let l2 = format!("{n2:016x}");

    expect(&m, &["put", &format!("--lease={l1}"), "leased", "v"], None, "OK\n"); // 2
    assert_eq!(get_json(&m, &["put", &format!("--lease={l1}"), "leased2", "v2", "-w", "json"]), json!({"header": ids.hdr(3)}));
    let mut leased = kv("leased", 2, 2, 1, "v");
    leased["lease"] = json!(n1);
    assert_eq!(get_json(&m, &["get", "leased", "-w", "json"]), json!({"header": ids.hdr(3), "kvs": [leased], "count": 1}));

    expect(&m, &["lease", "keep-alive", "--once", &l1], None, &format!("lease {l1} keepalived with TTL(60)\n"));
    assert_eq!(get_json(&m, &["lease", "keep-alive", "--once", &l1, "-w", "json"]), ids.flat(3, json!({"ID": n1, "TTL": 60})));

    parse_ttl(&ok(ctl(&m, &["lease", "timetolive", &l1], None)), &l1, 60, "");
    parse_ttl(&ok(ctl(&m, &["lease", "timetolive", "--keys", &l1], None)), &l1, 60, ", attached keys([leased leased2])");
    let mut t = get_json(&m, &["lease", "timetolive", "--keys", &l1, "-w", "json"]);
    let ttl = t["ttl"].as_i64().expect("ttl");
    assert!(ttl > 0 && ttl <= 60, "{t}");
    t["ttl"] = json!(0);
    assert_eq!(t, ids.flat(3, json!({"id": n1, "ttl": 0, "granted-ttl": 60, "keys": [b64("leased"), b64("leased2")]})));
    // Without --keys, no keys.
    let t = get_json(&m, &["lease", "timetolive", &l2, "-w", "json"]);
    assert_eq!((&t["id"], &t["granted-ttl"], t.get("keys")), (&json!(n2), &json!(60), Some(&Value::Null)), "{t}");

    // list: "found N leases" then one ID per line (order is not specified).
    let out = ok(ctl(&m, &["lease", "list"], None));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("found 2 leases"), "{out:?}");
    assert_eq!(lines.map(str::to_string).collect::<BTreeSet<_>>(), BTreeSet::from([l1.clone(), l2.clone()]), "{out:?}");
    assert!(out.ends_with('\n'), "{out:?}");
    let list = get_json(&m, &["lease", "list", "-w", "json"]);
    let listed: BTreeSet<u64> = list["leases"].as_array().expect("leases").iter().map(|l| l["id"].as_u64().expect("id")).collect();
    assert_eq!(listed, BTreeSet::from([n1, n2]), "{list}");
    assert_eq!(
        (&list["cluster_id"], &list["member_id"], &list["revision"]),
        (&json!(ids.cluster), &json!(ids.member), &json!(3)),
        "{list}"
    );

    // revoke deletes the attached keys (one revision).
    expect(&m, &["lease", "revoke", &l1], None, &format!("lease {l1} revoked\n")); // 4
    expect(&m, &["get", "--prefix", "leased"], None, "");
    expect(&m, &["get", "leased", "--rev", "3"], None, "leased\nv\n");
    let o = ctl(&m, &["lease", "revoke", &l1], None);
    assert_server_error_shown(&o, "NotFound", LEASE_NOT_FOUND, &format!("Error: failed to revoke lease ({LEASE_NOT_FOUND})"));
    expect(&m, &["lease", "timetolive", &l1], None, &format!("lease {l1} already expired\n"));
    assert_eq!(
        get_json(&m, &["lease", "timetolive", "--keys", &l1, "-w", "json"]),
        ids.flat(4, json!({"id": n1, "ttl": -1, "granted-ttl": 0, "keys": null}))
    );
    // A lease without keys: revoke does not create a revision.
    assert_eq!(get_json(&m, &["lease", "revoke", &l2, "-w", "json"]), json!({"header": ids.hdr(4)}));
    expect(&m, &["lease", "list"], None, "found 0 leases\n");

    // Unknown IDs.
    let o = ctl(&m, &["lease", "keep-alive", "--once", "1234abcd"], None);
    assert_eq!((o.code, o.stdout.as_str(), o.last_err_line()), (2, "", "Error: etcdserver: requested lease not found"), "{o:#?}");
    expect(&m, &["lease", "timetolive", "1234abcd"], None, "lease 000000001234abcd already expired\n");
    let o = ctl(&m, &["lease", "revoke", "1234abcd"], None);
    assert_server_error_shown(&o, "NotFound", LEASE_NOT_FOUND, &format!("Error: failed to revoke lease ({LEASE_NOT_FOUND})"));

    // The minimum TTL is 2 s (ceil(1.5 x election timeout)); revoke it right away.
    let l3 = parse_grant(&ok(ctl(&m, &["lease", "grant", "1"], None)), 2);
    expect(&m, &["lease", "revoke", &l3], None, &format!("lease {l3} revoked\n"));
    let o = ctl(&m, &["lease", "grant", "9000000001"], None);
    assert_server_error_shown(
        &o,
        "OutOfRange",
        "etcdserver: too large lease TTL",
        "Error: failed to grant lease (etcdserver: too large lease TTL)",
    );
}

// ---------------------------------------------------------------------------------------------
// compaction
// ---------------------------------------------------------------------------------------------

#[test]
fn compaction_then_read_below_it_fails_like_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    for v in ["a", "b", "c"] {
        expect(&m, &["put", "foo", v], None, "OK\n"); // 2, 3, 4
    }
    expect(&m, &["put", "bar", "x"], None, "OK\n"); // 5

    expect(&m, &["compaction", "3"], None, "compacted revision 3\n");
    assert_server_error(&ctl(&m, &["get", "foo", "--rev", "2"], None), "OutOfRange", COMPACTED);
    assert_server_error(&ctl(&m, &["get", "foo", "--rev", "1"], None), "OutOfRange", COMPACTED);
    expect(&m, &["get", "foo", "--rev", "3"], None, "foo\nb\n");
    assert_eq!(
        get_json(&m, &["get", "foo", "--rev", "3", "-w", "json"]),
        json!({"header": ids.hdr(5), "kvs": [kv("foo", 2, 3, 2, "b")], "count": 1})
    );
    expect(&m, &["get", "--prefix", ""], None, "bar\nx\nfoo\nc\n");
    // Compacting again at or below the compacted revision, or beyond the current one.
    assert_server_error(&ctl(&m, &["compaction", "3"], None), "OutOfRange", COMPACTED);
    assert_server_error(&ctl(&m, &["compaction", "2"], None), "OutOfRange", COMPACTED);
    assert_server_error(&ctl(&m, &["compaction", "0"], None), "OutOfRange", COMPACTED);
    assert_server_error(&ctl(&m, &["compaction", "100"], None), "OutOfRange", FUTURE_REV);
    // A txn reading below the compacted revision fails as a whole.
    let o = txn(&m, &[], "value(\"foo\") != \"x\"\n\nget foo --rev 2\n\n\n");
    assert_server_error(&o, "OutOfRange", COMPACTED);

    expect(&m, &["compaction", "4", "--physical"], None, "compacted revision 4\n");
    assert_server_error(&ctl(&m, &["get", "foo", "--rev", "3"], None), "OutOfRange", COMPACTED);
    expect(&m, &["get", "foo", "--rev", "4"], None, "foo\nc\n");

    // A watch from below the compacted revision is canceled by the server (exit 5).
    let o = ctl(&m, &["watch", "foo", "--rev", "1"], None);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (5, "", "watch was canceled (etcdserver: mvcc: required revision has been compacted)\nError: watch is canceled by the server\n"),
        "{o:#?}"
    );
    let o = ctl(&m, &["watch", "foo", "--rev", "2", "-w", "json"], None);
    assert_eq!((o.code, o.last_err_line()), (5, "Error: watch is canceled by the server"), "{o:#?}");
    let mut v: Value = serde_json::from_str(o.stdout.trim_end()).unwrap_or_else(|e| panic!("not JSON ({e}): {o:#?}"));
    normalize(&mut v, m.is_three());
    assert_eq!(
        v,
        json!({"Header": {"cluster_id": ids.cluster, "member_id": ids.member, "raft_term": ids.term}, "Events": [], "CompactRevision": 4, "Canceled": true, "Created": false}),
        "{o:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// endpoint / member
// ---------------------------------------------------------------------------------------------

/// Cells of a tablewriter row (`| a | b |`).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().strip_prefix('|').and_then(|l| l.strip_suffix('|')).unwrap_or_else(|| panic!("not a table row: {line:?}"));
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

#[test]
fn endpoint_health_status_and_member_list_match_etcd() {
    etcdctl();
    let m = Target::start();
    let ep = m.endpoint();
    let ids = Ids::of(&m);
    let id_hex = format!("{:x}", ids.member);
    expect(&m, &["put", "a", "1"], None, "OK\n"); // 2
    expect(&m, &["put", "b", "2"], None, "OK\n"); // 3

    // health: the simple result goes to stderr.
    let o = ctl(&m, &["endpoint", "health"], None);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{o:#?}");
    let rest = o.stderr.strip_prefix(&format!("{ep} is healthy: successfully committed proposal: took = "));
    assert!(rest.is_some_and(|r| r.ends_with('\n') && r.lines().count() == 1), "{o:#?}");
    let h = get_json(&m, &["endpoint", "health", "-w", "json"]);
    assert_eq!((&h[0]["endpoint"], &h[0]["health"]), (&json!(ep), &json!(true)), "{h}");
    assert!(h[0]["took"].is_string() && h[0].get("error").is_none() && h.as_array().map(Vec::len) == Some(1), "{h}");

    // status -w json
    let st = get_json(&m, &["endpoint", "status", "-w", "json"]);
    let s = &st[0]["Status"];
    assert_eq!(st.as_array().map(Vec::len), Some(1), "{st}");
    assert_eq!(st[0]["Endpoint"], json!(ep), "{st}");
    assert_eq!(s["header"], ids.hdr(3), "{st}");
    assert!(s["version"].as_str().is_some_and(|v| v.starts_with("3.5")), "version should start with 3.5: {st}");
    assert_eq!(s["leader"], json!(ids.member), "a single member is its own leader: {st}");
    assert_eq!(s["raftTerm"], json!(ids.term), "{st}");
    let (index, applied) = (s["raftIndex"].as_u64().expect("raftIndex"), s["raftAppliedIndex"].as_u64().expect("raftAppliedIndex"));
    // Every write is a raft proposal; no exact index is promised (etcd also counts its startup entries).
    assert!(applied >= 2 && applied <= index, "{st}");
    assert!(s["dbSize"].as_u64().is_some_and(|n| n > 0) && s["dbSizeInUse"].as_u64().is_some_and(|n| n > 0), "{st}");
    assert!(s.get("isLearner").is_none() && s.get("errors").is_none(), "false/empty fields are omitted: {st}");
    let version = s["version"].as_str().unwrap().to_string();

    // status simple: endpoint, ID, version, db size, is leader, is learner, term, index, applied, errors.
    let out = ok(ctl(&m, &["endpoint", "status"], None));
    let f: Vec<&str> = out.strip_suffix('\n').unwrap_or_else(|| panic!("{out:?}")).split(", ").collect();
    assert_eq!(f.len(), 10, "{out:?}");
    assert_eq!((f[0], f[1], f[2], f[4], f[5], f[9]), (ep.as_str(), id_hex.as_str(), version.as_str(), "true", "false", ""), "{out:?}");
    assert_eq!(f[6], ids.term.to_string(), "{out:?}");
    assert!(f[3].ends_with(" kB") || f[3].ends_with(" B") || f[3].ends_with(" MB"), "db size {:?}", f[3]);
    assert!(f[7].parse::<u64>().is_ok() && f[8].parse::<u64>().is_ok(), "{out:?}");

    // status -w table
    let out = ok(ctl(&m, &["endpoint", "status", "-w", "table"], None));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("+-") && lines[2].starts_with("+-") && lines[4].starts_with("+-"), "{out}");
    assert_eq!(
        cells(lines[1]),
        ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"],
        "{out}"
    );
    let row = cells(lines[3]);
    let term = ids.term.to_string();
    let got = [&row[0], &row[1], &row[2], &row[4], &row[5], &row[6], &row[9]].map(|c| c.as_str());
    assert_eq!(got, [ep.as_str(), id_hex.as_str(), version.as_str(), "true", "false", term.as_str(), ""], "{out}");

    // member list
    let out = ok(ctl(&m, &["member", "list"], None));
    let f: Vec<&str> = out.strip_suffix('\n').unwrap_or_else(|| panic!("{out:?}")).split(", ").collect();
    assert_eq!(f.len(), 6, "{out:?}");
    assert_eq!((f[0], f[1], f[2], f[4], f[5]), (id_hex.as_str(), "started", "test", m.url().as_str(), "false"), "{out:?}");
    assert!(f[3].starts_with("http://127.") && f[3] != m.url(), "peer URL {:?}", f[3]);
    let peer = f[3].to_string();
    let out = ok(ctl(&m, &["member", "list", "-w", "table"], None));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(cells(lines[1]), ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"], "{out}");
    assert_eq!(cells(lines[3]), [id_hex.clone(), "started".into(), "test".into(), peer.clone(), m.url(), "false".into()], "{out}");
    let ml = get_json(&m, &["member", "list", "-w", "json"]);
    assert_eq!(ml["members"], json!([{"ID": ids.member, "name": "test", "peerURLs": [peer], "clientURLs": [m.url()]}]), "{ml}");
    // etcd's Cluster service fills only cluster_id, member_id and raft_term in its header (no revision).
    assert_eq!(ml["header"], json!({"cluster_id": ids.cluster, "member_id": ids.member, "raft_term": ids.term}), "{ml}");
}

// ---------------------------------------------------------------------------------------------
// limits and validation errors
// ---------------------------------------------------------------------------------------------

#[test]
fn oversized_put_is_rejected_like_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    const TOO_LARGE: &str = "etcdserver: request is too large";
    // 1.6 MiB from stdin: over the 1.5 MiB request limit.
    let big = vec![b'a'; 1_677_722];
    assert_server_error(&ctl(&m, &["put", "big"], Some(&big)), "InvalidArgument", TOO_LARGE);
    // The limit is on the whole request: a value of exactly 1.5 MiB is over it too.
    let exact = vec![b'b'; 1_572_864];
    assert_server_error(&ctl(&m, &["put", "big15"], Some(&exact)), "InvalidArgument", TOO_LARGE);
    expect(&m, &["get", "--prefix", "big"], None, "");
    assert_eq!(get_json(&m, &["get", "big", "-w", "json"]), json!({"header": ids.hdr(1)}));
    // Just under it is fine.
    let under = vec![b'c'; 1_572_000];
    expect(&m, &["put", "bigunder"], Some(&under), "OK\n");
    let out = ok(ctl(&m, &["get", "bigunder", "--print-value-only"], None));
    assert!(
        out.len() == under.len() + 1 && out.bytes().take(under.len()).all(|c| c == b'c') && out.ends_with('\n'),
        "value came back with {} bytes",
        out.len()
    );
    expect(&m, &["del", "bigunder"], None, "1\n");
}

#[test]
fn txn_op_limit_and_duplicate_keys_match_etcd() {
    etcdctl();
    let m = Target::start();
    let ids = Ids::of(&m);
    let ops = |n: usize| (1..=n).map(|i| format!("put k{i} v\n")).collect::<String>();

    let o = txn(&m, &[], &format!("\n{}\n\n", ops(129)));
    assert_server_error(&o, "InvalidArgument", "etcdserver: too many operations in txn request");
    // 129 ops split over the two branches is fine: the limit is per branch.
    let o = txn(&m, &[], &format!("\n{}\nput other 1\n\n", ops(128)));
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{o:#?}");
    assert_eq!(o.stdout, format!("SUCCESS\n\n{}OK\n", "OK\n\n".repeat(127)), "{o:#?}");
    expect(&m, &["del", "--prefix", "k"], None, "128\n"); // 3
    expect(&m, &["get", "other"], None, "");

    // The same key written twice in one branch.
    assert_server_error(&txn(&m, &[], "\nput dup 1\nput dup 2\n\n\n"), "InvalidArgument", DUPLICATE_KEY);
    assert_server_error(&txn(&m, &[], "\nput dup 1\ndel dup\n\n\n"), "InvalidArgument", DUPLICATE_KEY);
    assert_server_error(&txn(&m, &[], "\ndel --prefix du\nput dup 1\n\n\n"), "InvalidArgument", DUPLICATE_KEY);
    assert_server_error(
        &txn(&m, &["-w", "json"], "version(\"foo\") = \"7\"\n\nget foo\nput txnjson 1\ndel txnjson\n\nget bar\n\n"),
        "InvalidArgument",
        DUPLICATE_KEY,
    );
    // ... also in the branch that would not run.
    assert_server_error(&txn(&m, &[], "\nput a 1\n\nput dup 1\nput dup 2\n\n"), "InvalidArgument", DUPLICATE_KEY);
    expect(&m, &["get", "--prefix", ""], None, "");
    assert_eq!(get_json(&m, &["get", "dup", "-w", "json"]), json!({"header": ids.hdr(3)}));
    // Not duplicates: once per branch, or reads.
    let o = txn(&m, &[], "\nput dup 1\n\nput dup 2\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("SUCCESS\n\nOK\n", 0), "{o:#?}"); // 4
    let o = txn(&m, &[], "\nget dup\nget dup\n\n\n");
    assert_eq!((o.stdout.as_str(), o.code), ("SUCCESS\n\ndup\n1\n\ndup\n1\n", 0), "{o:#?}");
    expect(&m, &["get", "dup"], None, "dup\n1\n");
}

#[test]
fn put_and_get_validation_errors_match_etcd() {
    etcdctl();
    let m = Target::start();
    expect(&m, &["put", "foo", "bar"], None, "OK\n"); // 2

    const KEY_NOT_FOUND: &str = "etcdserver: key not found";
    assert_server_error(&ctl(&m, &["put", "--ignore-value", "nosuchkey"], None), "InvalidArgument", KEY_NOT_FOUND);
    assert_server_error(&ctl(&m, &["put", "--ignore-lease", "nosuchkey2", "v"], None), "InvalidArgument", KEY_NOT_FOUND);
    expect(&m, &["get", "--prefix", "nosuch"], None, "");
    // On an existing key --ignore-value keeps the value.
    expect(&m, &["put", "--ignore-value", "foo"], None, "OK\n"); // 3
    expect(&m, &["get", "foo"], None, "foo\nbar\n");
    expect(&m, &["put", "--ignore-lease", "foo", "newvalue"], None, "OK\n"); // 4
    expect(&m, &["get", "foo"], None, "foo\nnewvalue\n");

    assert_server_error(&ctl(&m, &["put", "--lease=1234abcd", "k", "v"], None), "NotFound", LEASE_NOT_FOUND);
    assert_server_error(&ctl(&m, &["put", "--lease=abcdef0123", "k", "v"], None), "NotFound", LEASE_NOT_FOUND);
    expect(&m, &["get", "k"], None, "");

    // A read at a future revision.
    assert_server_error(&ctl(&m, &["get", "foo", "--rev", "5"], None), "OutOfRange", FUTURE_REV);
    assert_server_error(&ctl(&m, &["get", "foo", "--rev", "999999"], None), "OutOfRange", FUTURE_REV);
    expect(&m, &["get", "foo", "--rev", "4"], None, "foo\nnewvalue\n");

    // An empty key.
    assert_server_error(&ctl(&m, &["put", "", "emptykey"], None), "InvalidArgument", "etcdserver: key is not provided");
    assert_server_error(&ctl(&m, &["get", ""], None), "InvalidArgument", "etcdserver: key is not provided");
    assert_eq!(get_json(&m, &["get", "foo", "-w", "json"])["header"]["revision"], json!(4));
}

/// `etcdctl lock` is a client recipe (lease, txn, range, watch): with the lock held by one
/// etcdctl, a second waits, and runs its command only once the first exits.
#[test]
fn etcdctl_lock_recipe_serializes_holders() {
    let m = Target::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = dir.path().join("trail");
    let trail_s = trail.to_str().expect("utf-8 path").to_string();
    // Holds the lock for about a second, then releases it by exiting.
    let first = std::thread::spawn({
        let endpoint = m.endpoint();
        let script = format!("echo first-in >> {trail_s}; sleep 1; echo first-out >> {trail_s}");
        move || {
            Command::new(etcdctl())
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &endpoint, "lock", "L", "--", "sh", "-c", &script])
                .output()
                .expect("run etcdctl lock")
        }
    });
    // Start the second holder once the first one holds the lock.
    for _ in 0..500 {
        if std::fs::read_to_string(&trail).unwrap_or_default().contains("first-in") {
            break;
        }
        std::thread::sleep(POLL);
    }
    let script = format!("echo second >> {trail_s}");
    let second = ctl(&m, &["lock", "L", "--", "sh", "-c", &script], None);
    let first = first.join().expect("first locker");
    assert!(first.status.success(), "{first:?}");
    assert_eq!(second.code, 0, "{second:#?}");
    assert_eq!(
        std::fs::read_to_string(&trail).expect("trail"),
        "first-in\nfirst-out\nsecond\n",
        "the second holder ran inside the first one's hold"
    );
    // Nothing is left under the lock's prefix once both released it.
    assert_eq!(ok(ctl(&m, &["get", "L", "--prefix", "--keys-only"], None)), "");
}

// ---------------------------------------------------------------------------------------------
// The same tests against a 3-member cluster (etcdctl --endpoints lists all three)
// ---------------------------------------------------------------------------------------------

#[test]
fn three_members_put_and_get_output_matches_etcd() {
    on_three_members(put_and_get_output_matches_etcd);
}

#[test]
fn three_members_get_with_sort_and_limit_matches_etcd() {
    on_three_members(get_with_sort_and_limit_matches_etcd);
}

#[test]
fn three_members_del_prefix_and_prev_kv_match_etcd() {
    on_three_members(del_prefix_and_prev_kv_match_etcd);
}

#[test]
fn three_members_txn_success_and_failure_paths_match_etcd() {
    on_three_members(txn_success_and_failure_paths_match_etcd);
}

#[test]
fn three_members_txn_json_nested_headers_match_etcd() {
    on_three_members(txn_json_nested_headers_match_etcd);
}

#[test]
fn three_members_watch_history_with_rev_prefix_and_prev_kv_matches_etcd() {
    on_three_members(watch_history_with_rev_prefix_and_prev_kv_matches_etcd);
}

#[test]
fn three_members_watch_sees_live_puts_and_deletes_like_etcd() {
    on_three_members(watch_sees_live_puts_and_deletes_like_etcd);
}

#[test]
fn three_members_lease_grant_keepalive_timetolive_list_revoke_match_etcd() {
    on_three_members(lease_grant_keepalive_timetolive_list_revoke_match_etcd);
}

#[test]
fn three_members_compaction_then_read_below_it_fails_like_etcd() {
    on_three_members(compaction_then_read_below_it_fails_like_etcd);
}

#[test]
fn three_members_oversized_put_is_rejected_like_etcd() {
    on_three_members(oversized_put_is_rejected_like_etcd);
}

#[test]
fn three_members_txn_op_limit_and_duplicate_keys_match_etcd() {
    on_three_members(txn_op_limit_and_duplicate_keys_match_etcd);
}

#[test]
fn three_members_put_and_get_validation_errors_match_etcd() {
    on_three_members(put_and_get_validation_errors_match_etcd);
}

#[test]
fn three_members_etcdctl_lock_recipe_serializes_holders() {
    on_three_members(etcdctl_lock_recipe_serializes_holders);
}

#[test]
fn three_members_endpoint_status_and_member_list_show_the_cluster() {
    etcdctl();
    THREE.with(|t| t.set(true));
    let m = Target::start();
    // (Not `--cluster`: etcdctl 3.4 then sends the client URL, scheme and all, as the HTTP/2
    // :authority, which the h2 server under tonic refuses; see the README.)
    let st = get_json(&m, &["endpoint", "status", "-w", "json"]);
    let rows = st.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{st}");
    let leaders: BTreeSet<u64> = rows.iter().map(|r| r["Status"]["leader"].as_u64().expect("leader")).collect();
    assert_eq!(leaders.len(), 1, "every member names the same leader: {st}");
    let out = ok(ctl(&m, &["member", "list"], None));
    assert_eq!(out.lines().count(), 3, "{out}");
    for l in out.lines() {
        let f: Vec<&str> = l.split(", ").collect();
        assert_eq!((f[1], f[5]), ("started", "false"), "{l}");
        assert!(f[2].starts_with('m') && f[4].starts_with("http://127."), "{l}");
    }
    let o = ctl(&m, &["endpoint", "health"], None);
    assert_eq!(o.code, 0, "{o:#?}");
    assert_eq!(o.stderr.matches("is healthy: successfully committed proposal").count(), 3, "{o:#?}");
}
