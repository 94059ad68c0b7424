//! The `kube` crate (kube-rs), the client Keel's scheduler and kubelet will use, against
//! keel-apiserver: typed create, list, watch resumed from a resourceVersion, patches, a 409 on a
//! stale update, delete.

use keel_testkit as common;

use common::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::BTreeMap;

fn cm(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some(BTreeMap::from([("k".to_string(), value.to_string())]));
    cm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kube_crate_creates_lists_watches_patches_and_deletes() {
    let c = tokio::task::spawn_blocking(Cluster::start).await.expect("start");
    let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    let client = Client::try_from(config).expect("client");
    let cms: Api<ConfigMap> = Api::default_namespaced(client);

    let created = cms.create(&PostParams::default(), &cm("a", "1")).await.expect("create");
    let rv1 = created.metadata.resource_version.clone().unwrap_or_default();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    cms.create(&PostParams::default(), &cm("b", "1")).await.expect("create b");
    let dup = cms.create(&PostParams::default(), &cm("a", "1")).await;
    assert!(matches!(dup, Err(kube::Error::Api(ref s)) if s.code == 409 && s.reason == "AlreadyExists"), "{dup:?}");

    let listed = cms.list(&ListParams::default().limit(1)).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    let rest = cms
        .list(&ListParams::default().limit(5).continue_token(listed.metadata.continue_.as_deref().unwrap_or_default()))
        .await
        .expect("page 2");
    assert_eq!(rest.items.iter().filter_map(|i| i.metadata.name.as_deref()).collect::<Vec<_>>(), vec!["b"]);

    // Changes after rv1, then a watch from rv1 sees them in order: the resume guarantee.
    let patched =
        cms.patch("a", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"k": "2"}}))).await.expect("merge patch");
    assert_eq!(patched.data.as_ref().and_then(|d| d.get("k")).map(String::as_str), Some("2"));
    cms.delete("b", &DeleteParams::default()).await.expect("delete b");
    let mut events = cms.watch(&WatchParams::default().timeout(5), &rv1).await.expect("watch").boxed();
    let mut seen = Vec::new();
    while let Some(ev) = events.try_next().await.expect("event") {
        match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                seen.push(format!("{}@{}", o.metadata.name.unwrap_or_default(), o.metadata.resource_version.unwrap_or_default()))
            }
            _ => {}
        }
        if seen.len() == 3 {
            break;
        }
    }
    let rv = |s: &str| s.split('@').nth(1).and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
    assert_eq!(seen.iter().map(|s| s.split('@').next().unwrap_or("")).collect::<Vec<_>>(), vec!["b", "a", "b"], "{seen:?}");
    assert!(seen.windows(2).all(|w| rv(&w[0]) < rv(&w[1])), "in revision order: {seen:?}");
    assert!(rv(&seen[0]) > rv1.parse::<i64>().unwrap_or(0));

    // Server-side apply through kube: the merge patch above made its writer own data.k, so a
    // different value conflicts until forced.
    let config = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "3"}});
    let refused = cms.patch("a", &PatchParams::apply("keel-test"), &Patch::Apply(config.clone())).await;
    assert!(matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 409 && s.message.contains(".data.k")), "{refused:?}");
    let applied = cms.patch("a", &PatchParams::apply("keel-test").force(), &Patch::Apply(config)).await.expect("forced apply");
    assert_eq!(applied.data.as_ref().and_then(|d| d.get("k")).map(String::as_str), Some("3"));
    // An update carrying a stale resourceVersion: 409.
    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("k".to_string(), "stale".to_string())]));
    let conflict = cms.replace("a", &PostParams::default(), &stale).await;
    assert!(matches!(conflict, Err(kube::Error::Api(ref s)) if s.code == 409 && s.reason == "Conflict"), "{conflict:?}");

    cms.delete("a", &DeleteParams::default()).await.expect("delete a");
    let gone = cms.get_opt("a").await.expect("get");
    assert!(gone.is_none());
    drop(c);
}
