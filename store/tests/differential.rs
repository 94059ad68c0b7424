//! Differential test against the real etcd (Debian's `etcd-server`, 3.4): the same seeded
//! stream of valid and invalid KV, Txn, Compact and Lease requests goes to a fresh etcd and a
//! fresh keel-store side by side, and every response (or gRPC error code and message) must be
//! equal after normalising what legitimately differs: the header's cluster ID, member ID and
//! Raft term, a lease's remaining TTL (timing), the order of lists etcd builds from Go maps.
//! A watch over every key, open from the first write on both, must deliver the same events;
//! watch streams (see `differential/watch.rs`) and Maintenance Status are compared too.
//! Beside the stream: fixed transcripts of member changes (`differential/members.rs`) and of
//! the Auth service with KV under auth (`differential/auth.rs`).
//!
//! `KEEL_DIFF_SEEDS` (comma list, default `1,2,3`) and `KEEL_DIFF_OPS` (default 2000) make it
//! longer; a failure prints the command that reproduces it.
#![allow(clippy::disallowed_methods)]

#[path = "differential/auth.rs"]
mod auth;
mod common;
#[path = "differential/generator.rs"]
mod generator;
#[path = "differential/members.rs"]
mod members;
#[path = "differential/watch.rs"]
mod watch;

use common::{Member, free_addrs};
use generator::{Gen, Op};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    PutRequest, RangeRequest, RequestOp, ResponseHeader, StatusRequest, StatusResponse, TxnRequest, WatchCreateRequest, WatchRequest,
};
use keel_proto::mvccpb::Event;
use std::fmt::Debug;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// etcd's and Keel's default `--max-request-bytes`.
const MAX_REQUEST_BYTES: usize = 1_572_864;

/// A real etcd on loopback with random ports, killed by PID when dropped.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let a = free_addrs(2);
        Etcd::start_with(&format!("http://{}", a[0]), &format!("http://{}", a[1]), &[])
    }

    /// An etcd named `diff` on `client` and `peer`, with `extra` flags.
    fn start_with(client: &str, peer: &str, extra: &[&str]) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (client.to_string(), peer.to_string());
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
        let child = Command::new("etcd")
            .env_clear()
            .args(["--name", "diff", "--data-dir"])
            .arg(dir.path().join("etcd.data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("diff={peer}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start etcd (apt-get install etcd-server)");
        Etcd { child, url: client, _dir: dir }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The two servers' clients.
struct Side {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    watch: WatchClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
}

async fn side(url: &str) -> Side {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ep = Endpoint::from_shared(url.to_string()).expect("url").timeout(Duration::from_secs(10));
        if let Ok(ch) = ep.connect().await {
            // Large enough that no response (values of 1.5 MiB, batched events) hits a client limit.
            let mut kv = KvClient::new(ch.clone()).max_encoding_message_size(8 << 20).max_decoding_message_size(256 << 20);
            if kv.range(RangeRequest { key: "x".into(), ..Default::default() }).await.is_ok() {
                return Side {
                    kv,
                    lease: LeaseClient::new(ch.clone()),
                    watch: WatchClient::new(ch.clone()).max_decoding_message_size(256 << 20),
                    maintenance: MaintenanceClient::new(ch),
                };
            }
        }
        assert!(Instant::now() < deadline, "{url} not serving after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A response reduced to what must be equal, or the error's code and message.
type Outcome = Result<String, (tonic::Code, String)>;

fn norm_header(h: &mut Option<ResponseHeader>) -> i64 {
    match h {
        Some(h) => {
            (h.cluster_id, h.member_id, h.raft_term) = (0, 0, 0);
            h.revision
        }
        None => 0,
    }
}

fn outcome<T: Debug>(r: Result<tonic::Response<T>, tonic::Status>, norm: impl FnOnce(&mut T) -> i64, revision: &mut i64) -> Outcome {
    match r {
        Ok(r) => {
            let mut r = r.into_inner();
            *revision = (*revision).max(norm(&mut r));
            Ok(format!("{r:?}"))
        }
        Err(s) => Err((s.code(), s.message().to_string())),
    }
}

/// Send `op` to one side; the outcome and the revision it reported (0 for errors).
async fn send(s: &mut Side, op: &Op) -> (Outcome, i64) {
    let mut rev = 0;
    let out = match op.clone() {
        Op::Range(r) => outcome(s.kv.range(r).await, |r| norm_header(&mut r.header), &mut rev),
        Op::Put(r) => outcome(s.kv.put(r).await, |r| norm_header(&mut r.header), &mut rev),
        Op::Delete(r) => outcome(s.kv.delete_range(r).await, |r| norm_header(&mut r.header), &mut rev),
        Op::Txn(r) => outcome(s.kv.txn(r).await, |r| norm_header(&mut r.header), &mut rev),
        Op::Compact(r) => outcome(s.kv.compact(r).await, |r| norm_header(&mut r.header), &mut rev),
        Op::Grant(r) => outcome(s.lease.lease_grant(r).await, |r| norm_header(&mut r.header), &mut rev),
        Op::Revoke(r) => outcome(s.lease.lease_revoke(r).await, |r| norm_header(&mut r.header), &mut rev),
        Op::TimeToLive(r) => outcome(
            s.lease.lease_time_to_live(r).await,
            |r| {
                // The remaining TTL is timing; etcd lists the keys from a Go map.
                if r.granted_ttl > 0 && r.ttl <= r.granted_ttl && r.ttl > r.granted_ttl - 60 {
                    r.ttl = r.granted_ttl;
                }
                r.keys.sort();
                norm_header(&mut r.header)
            },
            &mut rev,
        ),
        Op::Leases(r) => outcome(
            s.lease.lease_leases(r).await,
            |r| {
                r.leases.sort_by_key(|l| l.id);
                norm_header(&mut r.header)
            },
            &mut rev,
        ),
        Op::Status => outcome(
            s.maintenance.status(StatusRequest {}).await,
            |r| {
                // What both must agree on: alarms, learner or not, leading (a single member);
                // sizes, indexes and the version are each server's own.
                let leads = r.header.as_ref().is_some_and(|h| h.member_id == r.leader);
                *r = StatusResponse {
                    header: r.header.take(),
                    errors: std::mem::take(&mut r.errors),
                    is_learner: r.is_learner,
                    leader: leads as u64,
                    ..Default::default()
                };
                norm_header(&mut r.header)
            },
            &mut rev,
        ),
        // Sent by the caller, which knows the events each watch is to deliver.
        Op::Watch(_) => unreachable!("watch ops go through watch::run"),
    };
    (out, rev)
}

/// A watch over every key from the first write on; its events arrive on the returned channel.
async fn watch_all(s: &mut Side) -> tokio::sync::mpsc::UnboundedReceiver<Event> {
    let (req_tx, req_rx) = tokio::sync::mpsc::unbounded_channel();
    // From revision 2, the next one of a fresh store (revision 1 has no events): etcd makes
    // such a watch synced at once, where one from 1 waits for its 100 ms syncer and an early
    // compaction would cancel it.
    let create = WatchCreateRequest { key: "\0".into(), range_end: "\0".into(), start_revision: 2, prev_kv: true, ..Default::default() };
    req_tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).expect("send");
    let mut stream = s.watch.watch(tokio_stream::wrappers::UnboundedReceiverStream::new(req_rx)).await.expect("watch").into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _keep = req_tx;
        while let Ok(Some(r)) = stream.message().await {
            for e in r.events {
                if tx.send(e).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Move the events a watch delivered up to revision `upto` into `into` (waiting for them a
/// bounded while).
async fn events_upto(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>, upto: i64, into: &mut Vec<Event>) {
    let reached = |h: &Vec<Event>| upto <= 1 || h.last().and_then(|e| e.kv.as_ref()).is_some_and(|kv| kv.mod_revision >= upto);
    while !reached(into) {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(e)) => into.push(e),
            _ => break,
        }
    }
}

async fn run_seed(seed: u64, ops: usize) {
    let etcd_proc = Etcd::start();
    let keel_proc = Member::start(&[]);
    let mut etcd = side(&etcd_proc.url).await;
    let mut keel = side(&keel_proc.url()).await;
    let mut etcd_events = watch_all(&mut etcd).await;
    let mut keel_events = watch_all(&mut keel).await;
    let mut g = Gen::new(seed, MAX_REQUEST_BYTES);
    let mut diffs = Vec::new();
    let mut last_write = 1;
    // etcd's events so far (its all-keys watch), for the events a new watch is to deliver.
    let mut history = Vec::new();
    let mut etcd_revision = 1;
    for i in 0..ops {
        let op = g.op();
        let ((want, want_rev), (got, got_rev)) = if let Op::Watch(w) = &op {
            events_upto(&mut etcd_events, etcd_revision, &mut history).await;
            let compacted = g.model.compacted_any.then_some(g.model.compacted);
            let expected: Vec<Option<usize>> = w.creates.iter().map(|c| watch::expected(&history, c, compacted)).collect();
            ((watch::run(&mut etcd.watch, w, &expected).await, 0), (watch::run(&mut keel.watch, w, &expected).await, 0))
        } else {
            (send(&mut etcd, &op).await, send(&mut keel, &op).await)
        };
        etcd_revision = etcd_revision.max(want_rev);
        if want != got {
            diffs.push(format!("op {i}: {op:?}\n  etcd: {want:?}\n  keel: {got:?}"));
        }
        if want_rev > g.model.revision {
            last_write = want_rev;
        }
        g.model.revision = g.model.revision.max(want_rev.max(got_rev));
        if want.is_ok() {
            match &op {
                Op::Grant(r) => {
                    g.model.leases.push(r.id);
                    g.model.next_lease = g.model.next_lease.max(r.id + 1);
                }
                Op::Revoke(r) => g.model.leases.retain(|l| *l != r.id),
                Op::Compact(r) => {
                    g.model.compacted = g.model.compacted.max(r.revision);
                    g.model.compacted_any = true;
                }
                _ => {}
            }
        }
        if diffs.len() >= 20 {
            break;
        }
    }
    let mut keel_history = Vec::new();
    events_upto(&mut etcd_events, last_write, &mut history).await;
    events_upto(&mut keel_events, last_write, &mut keel_history).await;
    let (want, got): (Vec<String>, Vec<String>) =
        (history.iter().map(|e| format!("{e:?}")).collect(), keel_history.iter().map(|e| format!("{e:?}")).collect());
    if want != got {
        let at = want.iter().zip(&got).position(|(a, b)| a != b).unwrap_or(want.len().min(got.len()));
        diffs.push(format!(
            "watch events differ at #{at} (etcd {} events, keel {}):\n  etcd: {:?}\n  keel: {:?}",
            want.len(),
            got.len(),
            want.get(at),
            got.get(at)
        ));
    }
    assert!(
        diffs.is_empty(),
        "seed {seed}: {} difference(s) from etcd (reproduce: KEEL_DIFF_SEEDS={seed} KEEL_DIFF_OPS={ops} cargo test -p keel-store --test differential):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

fn seeds() -> Vec<u64> {
    let s = std::env::var("KEEL_DIFF_SEEDS").unwrap_or_else(|_| "1,2,3".into());
    s.split(',').map(|x| x.trim().parse().expect("KEEL_DIFF_SEEDS: comma list of numbers")).collect()
}

fn ops() -> usize {
    std::env::var("KEEL_DIFF_OPS").map(|v| v.parse().expect("KEEL_DIFF_OPS: a number")).unwrap_or(2000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_answers_every_request_as_etcd_does() {
    for seed in seeds() {
        run_seed(seed, ops()).await;
    }
}

/// Requests over gRPC's message limit (`--max-request-bytes` + 512 KiB) are refused with the
/// same code and message by both, unary calls and a watch stream; one over
/// `--max-request-bytes` only is etcd's "request is too large".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_as_etcd_does() {
    let etcd_proc = Etcd::start();
    let keel_proc = Member::start(&[]);
    let mut etcd = side(&etcd_proc.url).await;
    let mut keel = side(&keel_proc.url()).await;
    let put = |n: usize| PutRequest { key: "k".into(), value: vec![b'x'; n].into(), ..Default::default() };
    let op = |n: usize| RequestOp { request: Some(Request::RequestPut(put(n))) };
    let ops = [
        Op::Put(put(MAX_REQUEST_BYTES + 1)),
        Op::Put(put(3 << 20)),
        Op::Txn(TxnRequest { success: vec![op(MAX_REQUEST_BYTES - 10), op(MAX_REQUEST_BYTES - 10)], ..Default::default() }),
        Op::Put(put(10)),
    ];
    for op in &ops {
        let ((want, _), (got, _)) = (send(&mut etcd, op).await, send(&mut keel, op).await);
        let short = |o: &Outcome| o.as_ref().map(|s| s.chars().take(200).collect::<String>()).map_err(|e| e.clone());
        assert_eq!(short(&got), short(&want), "{:?}", short(&Ok(format!("{op:?}"))));
    }
    let create = WatchCreateRequest { key: vec![b'w'; 3 << 20].into(), ..Default::default() };
    let op = watch::WatchOp { creates: vec![create], progress: false, cancel: false, cancel_unknown: false };
    let (want, got) = (watch::run(&mut etcd.watch, &op, &[Some(0)]).await, watch::run(&mut keel.watch, &op, &[Some(0)]).await);
    assert!(want.is_err(), "etcd took a 3 MiB watch request: {want:?}");
    assert_eq!(got, want, "a 3 MiB watch create request");
}

/// MemberAdd, MemberUpdate, MemberPromote and MemberRemove, with well-formed and malformed
/// peer URLs and the ID of a removed member, answered as etcd answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_changes_are_answered_as_etcd_does() {
    let etcd_proc = Etcd::start();
    let keel_proc = Member::start(&[]);
    side(&etcd_proc.url).await;
    side(&keel_proc.url()).await;
    let (want, got) = (members::transcript(&etcd_proc.url).await, members::transcript(&keel_proc.url()).await);
    let diffs: Vec<String> = want.iter().zip(&got).filter(|(w, g)| w != g).map(|(w, g)| format!("  etcd: {w}\n  keel: {g}")).collect();
    assert!(diffs.is_empty() && want.len() == got.len(), "{} difference(s) from etcd:\n{}", diffs.len(), diffs.join("\n"));
    let (want, got) = (members::readd_removed(&etcd_proc.url).await, members::readd_removed(&keel_proc.url()).await);
    assert_eq!(got, want, "re-adding a removed member's ID");
    let refused = "error InvalidArgument: etcdserver: given member URLs are invalid";
    for answer in members::malformed_updates(&keel_proc.url()).await {
        assert_eq!(answer, refused);
    }
}

/// The Auth service (users, roles, permissions, enable/disable, authenticate) and KV calls
/// under auth with and without permission or a token, answered as etcd answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_answered_as_etcd_does() {
    let etcd_proc = Etcd::start();
    let keel_proc = Member::start(&[]);
    side(&etcd_proc.url).await;
    side(&keel_proc.url()).await;
    let (want, got) = (auth::transcript(&etcd_proc.url).await, auth::transcript(&keel_proc.url()).await);
    let diffs: Vec<String> = want.iter().zip(&got).filter(|(w, g)| w != g).map(|(w, g)| format!("  etcd: {w}\n  keel: {g}")).collect();
    assert!(diffs.is_empty() && want.len() == got.len(), "{} difference(s) from etcd:\n{}", diffs.len(), diffs.join("\n"));
}

/// `(member ID, cluster ID)` as `etcdctl endpoint status -w json` reports them.
fn ids(endpoint: &str) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--dial-timeout", "2s", "--endpoints", endpoint, "endpoint", "status", "-w", "json"])
            .output()
            .expect("etcdctl (apt-get install etcd-client)");
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
            let h = &v[0]["Status"]["header"];
            if let (Some(m), Some(c)) = (h["member_id"].as_u64(), h["cluster_id"].as_u64()) {
                return (m, c);
            }
        }
        assert!(Instant::now() < deadline, "no status from {endpoint}: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn member_and_cluster_ids_are_etcds_for_the_same_flags() {
    let a = free_addrs(2);
    let (client, peer) = (format!("http://{}", a[0]), format!("http://{}", a[1]));
    let token = ["--initial-cluster-token", "keel-diff-token"];
    let etcd = Etcd::start_with(&client, &peer, &token);
    let want = ids(&client);
    drop(etcd);
    // The same name, URLs and token (the same ports too: IDs hash the URLs as written).
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("keel.log")).expect("log");
    let keel = Command::new(common::BIN)
        .args(["--name", "diff", "--data-dir"])
        .arg(dir.path().join("keel.etcd"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("diff={peer}")])
        .args(token)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("keel-store");
    let keel = KillOnDrop(keel);
    let got = ids(&client);
    drop(keel);
    assert_eq!(format!("{:x}/{:x}", got.0, got.1), format!("{:x}/{:x}", want.0, want.1), "keel-store's member/cluster ID vs etcd's");
}

/// A child process killed (by PID) and reaped when dropped, also when the test panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
