//! Snapshot files move between etcd and Keel in both directions, checked with the real
//! etcd 3.4 (`/usr/bin/etcd`, `etcdctl`) on loopback, every process stopped by PID:
//!
//! - a snapshot saved from etcd (10,000 keys written by txns, keys put many times, deleted
//!   keys, a compaction, leases with keys, users and roles with auth on) restores with
//!   `keel-store snapshot restore` into a member that serves the same keys at the same
//!   revisions, the same history, the leases and the same auth;
//! - a snapshot saved from Keel passes `etcdctl snapshot status` (the same revision and total
//!   keys as a snapshot of etcd after the same writes) and restores with `etcdctl snapshot
//!   restore` into an etcd that serves the same data.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Member, free_addrs};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

const ROOT: &[&str] = &["--user", "root:rootpw"];
const LEASE_WITH_KEYS: i64 = 0x1234;
const LEASE_ALONE: i64 = 0x5678;

/// A real etcd on loopback, killed by PID when stopped or dropped.
struct Etcd {
    child: Option<Child>,
    client: String,
    log: PathBuf,
}

impl Etcd {
    /// etcd named `name` with its data in `data_dir` (new or restored by etcdctl).
    fn start(dir: &Path, name: &str, data_dir: &Path, client: &str, peer: &str) -> Etcd {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("etcd log");
        let child = Command::new("etcd")
            .env_clear()
            .args(["--name", name, "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client-urls", client, "--advertise-client-urls", client])
            .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start etcd (apt-get install etcd-server)");
        Etcd { child: Some(child), client: client.to_string(), log }
    }

    fn endpoint(&self) -> &str {
        self.client.trim_start_matches("http://")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout", "5s", "--command-timeout", "30s"])
        .args(args)
        .output()
        .expect("etcdctl (apt-get install etcd-client)");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
}

fn ok(endpoint: &str, args: &[&str]) -> String {
    let (ok, out, err) = ctl(endpoint, args);
    assert!(ok, "etcdctl {args:?} against {endpoint} failed:\n{out}{err}");
    out
}

fn as_root<'a>(args: &[&'a str]) -> Vec<&'a str> {
    ROOT.iter().copied().chain(args.iter().copied()).collect()
}

/// etcdctl (as root) until it answers, for a server that has just started.
fn wait_serving(endpoint: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (okay, _, _) = ctl(endpoint, &as_root(&["get", "probe"]));
        if okay {
            return;
        }
        assert!(Instant::now() < deadline, "{endpoint} not serving after 30 s:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn channel(endpoint: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ep = Endpoint::from_shared(format!("http://{endpoint}")).expect("url").timeout(Duration::from_secs(30));
        if let Ok(ch) = ep.connect().await {
            let mut kv = KvClient::new(ch.clone());
            if kv.range(RangeRequest { key: "probe".into(), ..Default::default() }).await.is_ok() {
                return ch;
            }
        }
        assert!(Instant::now() < deadline, "{endpoint} not serving after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn put_op(key: String, value: String) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest { key: key.into_bytes().into(), value: value.into_bytes().into(), ..Default::default() })),
    }
}

/// Revisions the checks look at.
struct Marks {
    /// The compaction's revision.
    compacted: i64,
    /// A revision after the compaction at which `hot/0` had an older value.
    hot_mid: i64,
    /// The revision just before `key/00000`..`key/00099` were deleted.
    before_delete: i64,
}

/// The same writes on any server: 10,000 keys by 100 txns (one revision each, sub-revisions
/// 0..99), 5 keys put 40 times each, a compaction, a range delete of 100 keys and a single
/// delete, two leases (one with 3 keys), 10 more puts, a value larger than a page; then
/// users root and alice (role reader: read `key/`) and auth on.
async fn write_history(endpoint: &str) -> Marks {
    let ch = channel(endpoint).await;
    let mut kv = KvClient::new(ch.clone());
    for t in 0..100 {
        let success = (0..100).map(|i| put_op(format!("key/{:05}", t * 100 + i), format!("v{}", t * 100 + i))).collect();
        kv.txn(TxnRequest { success, ..Default::default() }).await.expect("txn");
    }
    let mut hot_mid = 0;
    for n in 0..40 {
        for j in 0..5 {
            let r = kv
                .put(PutRequest {
                    key: format!("hot/{j}").into_bytes().into(),
                    value: format!("h{j}-{n}").into_bytes().into(),
                    ..Default::default()
                })
                .await
                .expect("put");
            if n == 30 && j == 0 {
                hot_mid = r.into_inner().header.expect("header").revision;
            }
        }
    }
    let compacted = hot_mid - 50;
    kv.compact(CompactionRequest { revision: compacted, physical: true }).await.expect("compact");
    let r = kv.range(RangeRequest { key: "probe".into(), ..Default::default() }).await.expect("range").into_inner();
    let before_delete = r.header.expect("header").revision;
    kv.delete_range(DeleteRangeRequest { key: "key/00000".into(), range_end: "key/00100".into(), ..Default::default() })
        .await
        .expect("delete");
    kv.delete_range(DeleteRangeRequest { key: "hot/4".into(), ..Default::default() }).await.expect("delete");
    let mut lease = LeaseClient::new(ch);
    lease.lease_grant(LeaseGrantRequest { ttl: 3600, id: LEASE_WITH_KEYS }).await.expect("grant");
    lease.lease_grant(LeaseGrantRequest { ttl: 1800, id: LEASE_ALONE }).await.expect("grant");
    for k in ["leased/a", "leased/b", "leased/c"] {
        kv.put(PutRequest { key: k.into(), value: "l".into(), lease: LEASE_WITH_KEYS, ..Default::default() }).await.expect("put");
    }
    for i in 0..10 {
        kv.put(PutRequest { key: format!("after/{i}").into_bytes().into(), value: "a".into(), ..Default::default() }).await.expect("put");
    }
    // Larger than a page: bbolt keeps it on overflow pages.
    kv.put(PutRequest { key: "big".into(), value: vec![b'x'; 20_000].into(), ..Default::default() }).await.expect("put");
    for args in [
        &["user", "add", "root", "--new-user-password", "rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "key/", "--prefix"],
        &["user", "add", "alice", "--new-user-password", "alicepw"],
        &["user", "grant-role", "alice", "reader"],
        &["auth", "enable"],
    ] {
        ok(endpoint, args);
    }
    Marks { compacted, hot_mid, before_delete }
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// What a get answers, reduced to what must be equal: the revision, the key-values (with
/// create and mod revisions, version, value, lease) and the count.
fn get(endpoint: &str, args: &[&str]) -> (Value, Value, Value) {
    let v = json(&ok(endpoint, &as_root(&[&["get", "--write-out=json"][..], args].concat())));
    (v["header"]["revision"].clone(), v["kvs"].clone(), v["count"].clone())
}

/// Everything the two servers must answer alike after a restore.
fn assert_same_data(want: &str, got: &str, marks: &Marks) {
    let all = get(want, &["", "--from-key"]);
    assert_eq!(all.2, Value::from(10_000 - 100 + 4 + 3 + 10 + 1), "the expected number of keys");
    assert_eq!(get(got, &["", "--from-key"]), all, "all keys at the current revision");
    for (key, rev) in [("hot/0", marks.hot_mid), ("hot/4", marks.hot_mid), ("key/00000", marks.before_delete), ("hot/", marks.compacted)] {
        let rev = format!("--rev={rev}");
        let args: Vec<&str> = if key.ends_with('/') { vec![key, "--prefix", &rev] } else { vec![key, &rev] };
        let (_, kvs, count) = get(want, &args);
        assert!(count.as_i64().unwrap_or(0) > 0, "{key} at {rev} has history");
        let (_, got_kvs, got_count) = get(got, &args);
        assert_eq!((got_kvs, got_count), (kvs, count), "{key} at {rev}");
    }
    let below = format!("--rev={}", marks.compacted - 1);
    for ep in [want, got] {
        let (okay, _, err) = ctl(ep, &as_root(&["get", "hot/0", &below]));
        assert!(!okay && err.contains("required revision has been compacted"), "{ep}: {err}");
    }
    // Leases: both, with their keys.
    for ep in [want, got] {
        let list = ok(ep, &as_root(&["lease", "list"]));
        assert!(list.contains("found 2 leases") && list.contains("1234") && list.contains("5678"), "{ep}: {list}");
        let ttl = ok(ep, &as_root(&["lease", "timetolive", "1234", "--keys"]));
        // etcd lists the keys from a Go map, in any order.
        assert!(
            ttl.contains("granted with TTL(3600s)") && ["leased/a", "leased/b", "leased/c"].iter().all(|k| ttl.contains(k)),
            "{ep}: {ttl}"
        );
    }
    // Auth: on, and the same rights.
    for ep in [want, got] {
        let (okay, _, err) = ctl(ep, &["get", "key/00500"]);
        assert!(!okay, "{ep}: auth is on, so no user may not read: {err}");
        let out = ok(ep, &["--user", "alice:alicepw", "get", "key/00500", "--print-value-only"]);
        assert_eq!(out.trim(), "v500", "{ep}");
        let (okay, _, err) = ctl(ep, &["--user", "alice:alicepw", "put", "key/00500", "x"]);
        assert!(!okay && err.contains("permission denied"), "{ep}: alice only reads: {err}");
        let roles = ok(ep, &as_root(&["role", "get", "reader"]));
        assert!(roles.contains("[key/, key0)"), "{ep}: {roles}");
    }
}

/// `etcdctl snapshot status` as JSON: (revision, totalKey).
fn status(file: &Path) -> (i64, i64) {
    let out = ok("127.0.0.1:1", &["snapshot", "status", file.to_str().expect("path"), "--write-out=json"]);
    let v = json(&out);
    (v["revision"].as_i64().expect("revision"), v["totalKey"].as_i64().expect("totalKey"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_snapshot_restores_into_keel_with_the_same_keys_revisions_leases_and_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = free_addrs(2);
    let mut etcd =
        Etcd::start(dir.path(), "source", &dir.path().join("source.etcd"), &format!("http://{}", a[0]), &format!("http://{}", a[1]));
    let marks = write_history(etcd.endpoint()).await;
    let file = dir.path().join("etcd.db");
    let out = ok(etcd.endpoint(), &as_root(&["snapshot", "save", file.to_str().expect("path")]));
    assert!(out.contains("Snapshot saved at"), "{out}");

    let keel_dir = dir.path().join("keel");
    std::fs::create_dir_all(&keel_dir).expect("dir");
    let o = Command::new(common::BIN)
        .args(["snapshot", "restore", file.to_str().expect("path"), "--name", "test", "--data-dir"])
        .arg(keel_dir.join("member.etcd"))
        .output()
        .expect("keel-store snapshot restore");
    assert!(
        o.status.success(),
        "keel-store snapshot restore: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let keel = Member::start_in(&keel_dir, free_addrs(1)[0], &[]);
    wait_serving(&keel.endpoint(), || std::fs::read_to_string(&keel.log).unwrap_or_default());

    assert_same_data(etcd.endpoint(), &keel.endpoint(), &marks);
    // The restored member goes on from there: the next write is the next revision.
    let (rev, _, _) = get(etcd.endpoint(), &["probe"]);
    ok(&keel.endpoint(), &as_root(&["put", "next", "v"]));
    let (next, kvs, _) = get(&keel.endpoint(), &["next"]);
    assert_eq!(next.as_i64(), rev.as_i64().map(|r| r + 1), "{kvs}");
    etcd.stop();
    drop(keel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keel_snapshot_passes_etcdctl_status_and_restores_into_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keel = Member::start(&[]);
    let marks = write_history(&keel.endpoint()).await;
    let file = dir.path().join("keel.db");
    let out = ok(&keel.endpoint(), &as_root(&["snapshot", "save", file.to_str().expect("path")]));
    assert!(out.contains("Snapshot saved at"), "{out}");

    // The same writes on a real etcd make a snapshot with the same revision and total keys
    // (every bucket holds as many records as etcd's).
    let a = free_addrs(4);
    let mut reference =
        Etcd::start(dir.path(), "reference", &dir.path().join("reference.etcd"), &format!("http://{}", a[0]), &format!("http://{}", a[1]));
    write_history(reference.endpoint()).await;
    let reference_file = dir.path().join("reference.db");
    ok(reference.endpoint(), &as_root(&["snapshot", "save", reference_file.to_str().expect("path")]));
    reference.stop();
    let (rev, total) = status(&file);
    let (keel_rev, _, _) = get(&keel.endpoint(), &["probe"]);
    assert_eq!(Some(rev), keel_rev.as_i64(), "status shows the revision Keel serves");
    assert_eq!((rev, total), status(&reference_file), "revision and total keys as etcd's snapshot of the same writes");

    // etcdctl restores it into a new etcd, which serves what Keel serves.
    let data = dir.path().join("restored.etcd");
    let (client, peer) = (format!("http://{}", a[2]), format!("http://{}", a[3]));
    ok(
        "127.0.0.1:1",
        &[
            "snapshot",
            "restore",
            file.to_str().expect("path"),
            "--name",
            "restored",
            "--data-dir",
            data.to_str().expect("path"),
            "--initial-cluster",
            &format!("restored={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
        ],
    );
    let mut etcd = Etcd::start(dir.path(), "restored", &data, &client, &peer);
    wait_serving(etcd.endpoint(), || etcd.log());
    assert_same_data(&keel.endpoint(), etcd.endpoint(), &marks);
    etcd.stop();
    drop(keel);
}
