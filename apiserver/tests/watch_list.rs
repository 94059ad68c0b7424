//! Lists and watches as kube-rs informers use them: `resourceVersion` with
//! `resourceVersionMatch` on lists, streaming lists (`sendInitialEvents` ending with the
//! `k8s.io/initial-events-end` bookmark), and bookmarks on a watch whose selector sees nothing.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use keel_apiserver::Config;
use kube::api::{Api, ListParams, PostParams, VersionMatch, WatchEvent, WatchParams};
use kube::runtime::watcher;
use std::time::Duration;

fn cm(name: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c
}

fn rv<K: kube::Resource>(o: &K) -> i64 {
    o.meta().resource_version.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn status(r: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_read_at_the_resource_version_and_match_asked_for() {
    let s = support::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    let a = cms.create(&PostParams::default(), &cm("a")).await.expect("a");
    let b = cms.create(&PostParams::default(), &cm("b")).await.expect("b");
    let names = |l: kube::core::ObjectList<ConfigMap>| l.items.into_iter().filter_map(|c| c.metadata.name).collect::<Vec<_>>();
    let exact = cms.list(&ListParams::default().at(&rv(&a).to_string()).matching(VersionMatch::Exact)).await.expect("exact");
    assert_eq!(exact.metadata.resource_version.as_deref(), Some(rv(&a).to_string().as_str()));
    assert_eq!(names(exact), vec!["a"], "the collection as it was at a's revision");
    let newer = cms.list(&ListParams::default().at(&rv(&b).to_string()).matching(VersionMatch::NotOlderThan)).await.expect("not older");
    assert_eq!(names(newer), vec!["a", "b"]);
    let ahead = (rv(&b) + 1000).to_string();
    assert_eq!(status(cms.list(&ListParams::default().at(&ahead).matching(VersionMatch::NotOlderThan)).await), (504, "Timeout".into()));
    assert_eq!(status(cms.list(&ListParams::default().at(&ahead).matching(VersionMatch::Exact)).await), (504, "Timeout".into()));
    let etcd = keel_etcd::Client::connect(&[s.cluster.etcd_servers()], &keel_etcd::Config::default(), std::sync::Arc::new(keel_etcd::Tcp))
        .expect("etcd");
    etcd.compact(rv(&b)).await.expect("compact");
    assert_eq!(
        status(cms.list(&ListParams::default().at(&rv(&a).to_string()).matching(VersionMatch::Exact)).await),
        (410, "Expired".into())
    );
    let bare = http::Request::get("/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact").body(Vec::new()).expect("request");
    assert_eq!(status(s.client.request::<serde_json::Value>(bare).await).0, 400, "a match needs a resourceVersion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_sends_the_objects_then_the_initial_events_end_bookmark_then_changes() {
    let s = support::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    cms.create(&PostParams::default(), &cm("a")).await.expect("a");
    cms.create(&PostParams::default(), &cm("b")).await.expect("b");
    let mut events = cms.watch(&WatchParams::default().initial_events().timeout(20), "").await.expect("watch").boxed();
    let mut seen = Vec::new();
    loop {
        match events.try_next().await.expect("event").expect("open") {
            WatchEvent::Added(c) => seen.push(c.metadata.name.unwrap_or_default()),
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, vec!["a", "b"]);
    cms.create(&PostParams::default(), &cm("c")).await.expect("c");
    let next = events.try_next().await.expect("event").expect("open");
    assert!(matches!(next, WatchEvent::Added(ref c) if c.metadata.name.as_deref() == Some("c")), "{next:?}");

    // kube-runtime's streaming-list watcher: the same, as Init … InitDone, then changes.
    let mut w = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), w.next()).await.expect("event").expect("open").expect("no error") {
            watcher::Event::Init => {}
            watcher::Event::InitApply(c) => init.push(c.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(init, vec!["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_selector_sees_nothing_still_gets_bookmarks_as_the_resource_moves() {
    let s = support::start_config(Config { bookmark_interval: Duration::from_millis(500), ..Config::default() }).await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let start = pods.list(&ListParams::default()).await.expect("list").metadata.resource_version.unwrap_or_default();
    let params = WatchParams::default().labels("app=nothing-matches").timeout(30);
    let mut events = pods.watch(&params, &start).await.expect("watch").boxed();
    let mut last = 0;
    for i in 0..3 {
        let mut p = Pod::default();
        p.metadata.name = Some(format!("p{i}"));
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        last = rv(&pods.create(&PostParams::default(), &p).await.expect("create"));
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.try_next()).await.expect("a bookmark in time").expect("event") {
            Some(WatchEvent::Bookmark(b)) if b.metadata.resource_version.parse::<i64>().unwrap_or(0) >= last => break,
            Some(WatchEvent::Bookmark(_)) => continue,
            other => panic!("only bookmarks reach this watch: {other:?}"),
        }
    }
}
