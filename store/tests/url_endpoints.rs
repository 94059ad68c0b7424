//! etcdctl 3.4 with endpoints written as URLs (`--endpoints=http://127.0.0.1:2379`), as most
//! users, scripts and etcd's own docs write them. The commands that dial each endpoint on its own
//! (defrag, endpoint status/hashkv/health `--cluster`, member add/remove, move-leader, snapshot
//! save) send the whole URL as the HTTP/2 `:authority`; each must work as it does against etcd.
//! (TLS endpoints, `https://…`, are checked in `tls.rs`.)
#![allow(clippy::disallowed_methods)]

mod common;
use common::cluster::Cluster;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// etcdctl with `--endpoints endpoints`; (success, stdout, stderr).
fn etcdctl(endpoints: &str, args: &[&str]) -> (bool, String, String) {
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--dial-timeout", "3s", "--command-timeout", "15s", &format!("--endpoints={endpoints}")])
        .args(args)
        .output()
        .expect("etcdctl (apt-get install etcd-client)");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
}

/// Run and require success; stdout.
fn ok(endpoints: &str, args: &[&str]) -> String {
    let (okay, out, err) = etcdctl(endpoints, args);
    assert!(okay && !err.contains("PROTOCOL_ERROR"), "etcdctl --endpoints={endpoints} {args:?} failed:\n{out}{err}");
    out
}

/// Member IDs as etcdctl prints them (hex) from `endpoint status -w json`, by endpoint.
fn status(endpoints: &str, cluster: bool) -> Vec<(String, String, bool)> {
    let mut args = vec!["endpoint", "status", "-w", "json"];
    if cluster {
        args.push("--cluster");
    }
    let v: Value = serde_json::from_str(&ok(endpoints, &args)).expect("json");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let id = e["Status"]["header"]["member_id"].as_u64().expect("member id");
            let leader = e["Status"]["leader"].as_u64().expect("leader");
            (e["Endpoint"].as_str().expect("endpoint").to_string(), format!("{id:x}"), id == leader)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_endpoint_commands_work_with_http_url_endpoints() {
    let mut c = Cluster::start(3, &[]).await;
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url()).collect();
    let all = urls.join(",");
    assert_eq!(ok(&urls[0], &["put", "k", "v"]).trim(), "OK");

    // endpoint status / hashkv / health, on each URL and for the whole cluster.
    let members = status(&urls[0], true);
    assert_eq!(members.len(), 3, "{members:?}");
    let mut listed: Vec<&String> = members.iter().map(|m| &m.0).collect();
    listed.sort();
    let mut want: Vec<&String> = urls.iter().collect();
    want.sort();
    assert_eq!(listed, want, "--cluster dials every member's advertised client URL");
    assert_eq!(members.iter().filter(|m| m.2).count(), 1, "one leader: {members:?}");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = serde_json::from_str(&ok(&all, &["endpoint", "hashkv", "-w", "json"])).expect("json");
        let hashes: Vec<u64> = v.as_array().expect("list").iter().map(|e| e["HashKV"]["hash"].as_u64().unwrap_or(0)).collect();
        if hashes.len() == 3 && hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < until, "members never agreed on hashkv: {hashes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ok(&urls[1], &["endpoint", "hashkv", "--cluster"]).lines().count(), 3);
    assert!(ok(&urls[2], &["endpoint", "health", "--cluster"]).lines().all(|l| l.contains("is healthy")));

    // defrag of every member.
    let out = ok(&all, &["defrag"]);
    for u in &urls {
        assert!(out.contains(&format!("Finished defragmenting etcd member[{u}]")), "{out}");
    }

    // move-leader to a follower, from the whole list (etcdctl finds the leader in it).
    let follower = members.iter().find(|m| !m.2).expect("a follower").1.clone();
    let out = ok(&all, &["move-leader", &follower]);
    assert!(out.contains("Leadership transferred from ") && out.trim_end().ends_with(&follower), "{out}");
    let until = Instant::now() + Duration::from_secs(20);
    while !status(&all, false).iter().any(|m| m.1 == follower && m.2) {
        assert!(Instant::now() < until, "{follower} did not become leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // member add (a learner that never starts) and member remove.
    let new = c.add_node("m4");
    let peer = c.nodes[new].peer_url();
    let out = ok(&urls[0], &["member", "add", "m4", &format!("--peer-urls={peer}"), "--learner"]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!((words[0], &words[2..5]), ("Member", &["added", "to", "cluster"][..]), "{out}");
    let id = words[1].to_string();
    let out = ok(&urls[1], &["member", "remove", &id]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(&words[..5], ["Member", &id, "removed", "from", "cluster"], "{out}");
    c.nodes.pop();

    // snapshot save from one URL endpoint.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snap.db");
    let out = ok(&urls[2], &["snapshot", "save", file.to_str().expect("path")]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    assert!(std::fs::metadata(&file).expect("snapshot file").len() > 0);
}
