//! Client watches share the one store watch per resource (the watch cache), and each still sees
//! exactly its own namespace and selector.

use keel_testkit as common;

use common::{Cluster, eventually, text};
use std::process::{Command, Stdio};
use std::time::Duration;

fn store_watchers(c: &Cluster) -> Option<u64> {
    let out = Command::new("curl").args(["-s", &format!("http://{}/metrics", c.store_addr)]).output().ok()?;
    text(&out.stdout).lines().find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total ").and_then(|v| v.trim().parse().ok()))
}

#[test]
fn twenty_client_watches_cost_no_store_watch_and_each_sees_its_own_events() {
    let c = Cluster::start();
    // One store watch per served resource, opened at start.
    let baseline = store_watchers(&c);
    assert!(baseline.is_some_and(|n| n > 0), "{baseline:?}");
    c.ok(&["create", "namespace", "a"]);
    c.ok(&["create", "namespace", "b"]);
    let watches = [
        "/api/v1/namespaces/a/configmaps?watch=true",
        "/api/v1/namespaces/b/configmaps?watch=true",
        "/api/v1/configmaps?watch=true&labelSelector=team%3Dx",
        "/api/v1/configmaps?watch=true&resourceVersion=0",
    ];
    let mut children = Vec::new();
    for i in 0..20 {
        let path = watches[i % watches.len()];
        let out = c.path(&format!("w{i}.out"));
        let url = format!("http://127.0.0.1:{}{path}&timeoutSeconds=30", c.http.port());
        let child =
            Command::new("curl").args(["-sN", &url]).stdout(std::fs::File::create(&out).expect("out")).stderr(Stdio::null()).spawn();
        children.push((child.expect("curl"), out, i % watches.len()));
    }
    std::thread::sleep(Duration::from_millis(1500));
    c.ok(&["create", "configmap", "in-a", "-n", "a", "--from-literal=k=v"]);
    c.ok(&["create", "configmap", "in-b", "-n", "b", "--from-literal=k=v"]);
    c.ok(&["label", "configmap", "in-b", "-n", "b", "team=x"]);
    let all_seen = eventually(Duration::from_secs(15), || {
        let ok = children.iter().all(|(_, out, kind)| {
            let s = std::fs::read_to_string(out).unwrap_or_default();
            match kind {
                0 => s.contains("\"in-a\"") && !s.contains("\"in-b\""),
                1 => s.contains("\"in-b\"") && !s.contains("\"in-a\""),
                // The label makes in-b match: it arrives as ADDED, and nothing of in-a.
                2 => s.contains("\"ADDED\"") && s.contains("\"in-b\"") && !s.contains("\"in-a\""),
                _ => s.contains("\"in-a\"") && s.contains("\"in-b\""),
            }
        });
        ok.then_some(())
    });
    let watchers = store_watchers(&c);
    for (mut child, _, _) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(all_seen.is_some(), "not every watch saw exactly its events");
    assert_eq!(watchers, baseline, "the cache's one configmaps watch serves all twenty");
}

#[test]
fn the_apiserver_compacts_the_store_every_interval() {
    let c = Cluster::start_with(&["--etcd-compaction-interval", "1"]);
    c.ok(&["create", "configmap", "x", "--from-literal=k=v"]);
    // Revision 2 (the first namespace) is compacted away after two rounds.
    let compacted = eventually(Duration::from_secs(20), || {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &c.store_addr.to_string(), "get", "/registry/namespaces/default", "--rev=2"])
            .output()
            .ok()?;
        text(&out.stderr).contains("required revision has been compacted").then_some(())
    });
    assert!(compacted.is_some(), "the store was never compacted");
    let key = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &c.store_addr.to_string(), "get", "compact_rev_key", "--print-value-only"])
        .output()
        .expect("etcdctl");
    assert!(text(&key.stdout).trim().parse::<i64>().is_ok_and(|r| r > 0), "{}", text(&key.stdout));
    // The API still serves.
    assert_eq!(c.ok(&["get", "configmap", "x", "-o", "jsonpath={.data.k}"]), "v");
}
