//! Black-box HA: two or three keel-schedulers over one apiserver, one Lease
//! `kube-system/kube-scheduler`. The standby takes over after kill -9 of the leader; a leader
//! that is frozen (SIGSTOP) past its renew deadline does not bind when it wakes; and the store's
//! own history shows no pod bound twice (`single_binding`), whatever the handover.

mod common;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use keel_testkit::Cluster;
use kube::Api;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

async fn holder(client: &kube::Client) -> Option<String> {
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-system");
    leases.get_opt("kube-scheduler").await.ok().flatten().and_then(|l| l.spec).and_then(|s| s.holder_identity).filter(|h| !h.is_empty())
}

/// The component index whose log names `identity` as its own.
fn index_of(cluster: &Cluster, identity: &str) -> Option<usize> {
    cluster
        .components
        .iter()
        .position(|p| p.log().contains(&format!("identity={identity} ")) || p.log().contains(&format!("identity={identity}\n")))
}

async fn create_pods(client: &kube::Client, prefix: &str, n: usize, pause: Duration) {
    for i in 0..n {
        create_pod(client, &pod(&format!("{prefix}-{i:03}"), "10m", json!({}))).await;
        tokio::time::sleep(pause).await;
    }
}

async fn all_bound(client: &kube::Client, prefix: &str, n: usize, limit: Duration) -> bool {
    for i in 0..n {
        if wait_bound(client, &format!("{prefix}-{i:03}"), limit).await.is_none() {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_after_kill_9_and_no_pod_is_bound_twice() {
    let mut cluster = Cluster::start();
    let client = cluster.client().await;
    for i in 0..3 {
        create_node(&client, &node(&format!("n{i}"), "64", "256Gi", json!({}), json!({}))).await;
    }
    // kube-scheduler's defaults: 15 s / 10 s / 2 s.
    start_scheduler(&mut cluster, &[]);
    start_scheduler(&mut cluster, &[]);
    let first = keel_testkit::eventually_async(Duration::from_secs(20), || holder(&client)).await.expect("a leader");
    let leader = index_of(&cluster, &first).unwrap_or_else(|| panic!("which process is {first}?\n{}", cluster.logs()));

    // 100 pods created while the leader dies: 30 before, 70 during the handover.
    let creator = {
        let client = client.clone();
        tokio::spawn(async move { create_pods(&client, "ha", 100, Duration::from_millis(50)).await })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cluster.components[leader].kill9();
    let killed_at = Instant::now();
    creator.await.expect("pods created");
    assert!(all_bound(&client, "ha", 100, Duration::from_secs(40)).await, "every pod bound after the handover\n{}", cluster.logs());
    let second = holder(&client).await.expect("a new leader");
    assert_ne!(second, first, "the standby holds the lease now");
    println!("handover: all 100 pods bound {:?} after kill -9", killed_at.elapsed());

    // Every bind in the logs was sent by the leader of its time, and the store's history has
    // each pod bound exactly once.
    let standby = 1 - leader;
    let before: Vec<_> = binds_in_log(&cluster.components[leader].log());
    let after: Vec<_> = binds_in_log(&cluster.components[standby].log());
    assert!(before.iter().all(|(_, _, h)| h == &first), "the first leader bound under its own identity");
    assert!(after.iter().all(|(_, _, h)| h == &second), "the standby bound under its own identity");
    assert!(!after.is_empty(), "the standby did bind");
    let bound = assert_single_binding(&pod_history(&cluster));
    assert_eq!(bound, 100, "the store saw exactly 100 bindings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_does_not_bind_when_it_wakes() {
    let mut cluster = Cluster::start();
    let client = cluster.client().await;
    create_node(&client, &node("n0", "64", "256Gi", json!({}), json!({}))).await;
    let fast = ["--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "500ms"];
    start_scheduler(&mut cluster, &fast);
    start_scheduler(&mut cluster, &fast);
    let first = keel_testkit::eventually_async(Duration::from_secs(10), || holder(&client)).await.expect("a leader");
    let leader = index_of(&cluster, &first).unwrap_or_else(|| panic!("which process is {first}?\n{}", cluster.logs()));
    create_pods(&client, "before", 10, Duration::ZERO).await;
    assert!(all_bound(&client, "before", 10, Duration::from_secs(20)).await, "{}", cluster.logs());

    // Freeze the leader past its lease; the standby takes over and binds.
    cluster.components[leader].signal("-STOP");
    let second = keel_testkit::eventually_async(Duration::from_secs(15), || async { holder(&client).await.filter(|h| h != &first) })
        .await
        .expect("the standby took the lease");
    create_pods(&client, "during", 10, Duration::ZERO).await;
    assert!(all_bound(&client, "during", 10, Duration::from_secs(20)).await, "{}", cluster.logs());
    let binds_when_frozen = binds_in_log(&cluster.components[leader].log()).len();

    // Wake it with pods pending: it must see that it cannot have renewed in time and not bind.
    cluster.components[leader].signal("-CONT");
    create_pods(&client, "after", 20, Duration::from_millis(20)).await;
    assert!(all_bound(&client, "after", 20, Duration::from_secs(20)).await, "{}", cluster.logs());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old_log = cluster.components[leader].log();
    assert_eq!(binds_in_log(&old_log).len(), binds_when_frozen, "the woken leader bound nothing:\n{old_log}");
    assert!(old_log.contains("stopped leading"), "it says it stepped down:\n{old_log}");
    let new_binds = binds_in_log(&cluster.components[1 - leader].log());
    assert!(new_binds.iter().all(|(_, _, h)| h == &second));
    assert_eq!(assert_single_binding(&pod_history(&cluster)), 40);
}
