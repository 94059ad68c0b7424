//! The apiserver as a library: `Server::start` in the test's own process over a real store,
//! served over in-memory pipes (as the simulation will serve it over its own network), driven by
//! a kube::Client; the seams decide time, and dropping the server stops its tasks.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use keel_apiserver::seams::Clock;
use keel_testkit::{Cluster, eventually_async, text};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use std::sync::Arc;
use std::time::Duration;

/// A clock stopped at one instant.
struct Stopped(jiff::Timestamp);

impl Clock for Stopped {
    fn now(&self) -> jiff::Timestamp {
        self.0
    }
}

fn cm(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm
}

async fn store_watchers(c: &Cluster) -> Option<u64> {
    let url = format!("http://{}/metrics", c.store_addr);
    let out = tokio::process::Command::new("curl").args(["-s", &url]).output().await.ok()?;
    text(&out.stdout).lines().find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total ").and_then(|v| v.trim().parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_apiserver_serves_kube_over_memory_pipes_and_stops_with_its_tasks() {
    let at: jiff::Timestamp = "2030-01-02T03:04:05Z".parse().expect("time");
    let s = support::start_with(Arc::new(Stopped(at)), 42).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());

    let created = cms.create(&PostParams::default(), &cm("a")).await.expect("create through the pipe");
    assert_eq!(created.metadata.creation_timestamp.map(|t| t.0), Some(at), "time comes from the clock seam");
    assert_eq!(created.metadata.uid.as_deref().map(str::len), Some(36));
    let rv = created.metadata.resource_version.clone().unwrap_or_default();

    let mut events = cms.watch(&WatchParams::default().timeout(10), &rv).await.expect("watch").boxed();
    cms.create(&PostParams::default(), &cm("b")).await.expect("create b");
    let seen = loop {
        match events.try_next().await.expect("event") {
            Some(WatchEvent::Added(o)) => break o.metadata.name,
            Some(_) => continue,
            None => panic!("the watch ended before the event"),
        }
    };
    assert_eq!(seen.as_deref(), Some("b"));
    let listed = cms.list(&ListParams::default()).await.expect("list");
    assert_eq!(listed.items.len(), 2);

    // The watch caches follow the store while the server lives, and stop with it.
    let while_up = store_watchers(&s.cluster).await.unwrap_or(0);
    assert!(while_up > 0 && s.server.tasks_running() > 0, "{while_up} store watches");
    drop(events);
    let (client, cluster) = s.stop().await;
    let gone = eventually_async(Duration::from_secs(20), || async { (store_watchers(&cluster).await == Some(0)).then_some(()) }).await;
    assert!(gone.is_some(), "the server's store watches ended with it: {:?}", store_watchers(&cluster).await);
    let after: Api<ConfigMap> = Api::default_namespaced(client);
    assert!(after.list(&ListParams::default()).await.is_err(), "nothing serves any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_server_is_ready_only_once_its_rbac_policy_is_loaded() {
    let cfg = keel_access::AccessConfig { authorization_mode: "Node,RBAC".into(), ..Default::default() };
    let access = Arc::new(keel_access::Access::from_config(&cfg).expect("access"));
    let config = keel_apiserver::Config { access: Some(access.clone()), ..Default::default() };
    let s = support::start_config(config).await;
    // No waiting here: ready() (which main.rs awaits before it listens) has seen the feeders'
    // first lists, so the default policy already decides.
    assert!(access.policy.read(|p| p.cluster_role("cluster-admin").is_some()), "the default policy is loaded");
    let jane = keel_access::user::UserInfo::new("jane", &["system:authenticated"]);
    let discovery = keel_access::attributes::Attributes::non_resource(jane, "get", "/apis");
    assert!(keel_access::authz::Authorizer::authorize(&access.chain, &discovery).allowed(), "system:discovery is bound");
    drop(s);
}
