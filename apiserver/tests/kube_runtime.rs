//! kube-runtime, the informer machinery the scheduler, kubelets and controllers are built on,
//! against the apiserver: reflectors on field selectors the scheduler and kubelets use (pods by
//! `spec.nodeName`, schedulable nodes) and a watcher on node leases.

mod support;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use keel_testkit::eventually_async;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeSet;
use std::time::Duration;

fn pod(name: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.spec = Some(PodSpec {
        containers: vec![Container { name: "c".into(), image: Some("busybox".into()), ..Default::default() }],
        ..Default::default()
    });
    p
}

fn node(name: &str, unschedulable: Option<bool>) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    if let Some(u) = unschedulable {
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec { unschedulable: Some(u), ..Default::default() });
    }
    n
}

/// A reflector over `api` with `config`, driven in the background; its store.
fn reflect<K>(api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff().touched_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    reader
}

fn names<K: kube::Resource + Clone>(store: &Store<K>) -> BTreeSet<String>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store.state().iter().filter_map(|o| o.meta().name.clone()).collect()
}

async fn until<K: kube::Resource + Clone>(store: &Store<K>, want: &[&str]) -> BTreeSet<String>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    eventually_async(Duration::from_secs(20), || async { (names(store) == want).then_some(()) }).await;
    names(store)
}

async fn bind(client: &Client, pod: &str, node: &str) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let binding =
        serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"kind": "Node", "name": node}});
    let _: serde_json::Value = pods.create_subresource("binding", pod, &PostParams::default(), &binding).await.expect("bind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflector_on_spec_node_name_holds_exactly_the_pods_bound_to_that_node() {
    let s = support::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let on_a = reflect(Api::<Pod>::all(s.client.clone()), watcher::Config::default().fields("spec.nodeName=node-a"));
    let unbound = reflect(Api::<Pod>::all(s.client.clone()), watcher::Config::default().fields("spec.nodeName="));
    for name in ["p1", "p2", "p3"] {
        pods.create(&PostParams::default(), &pod(name)).await.expect("create");
    }
    assert_eq!(until(&unbound, &["p1", "p2", "p3"]).await.len(), 3);
    bind(&s.client, "p1", "node-a").await;
    bind(&s.client, "p3", "node-a").await;
    bind(&s.client, "p2", "node-b").await;
    assert_eq!(until(&on_a, &["p1", "p3"]).await, BTreeSet::from(["p1".into(), "p3".into()]));
    assert!(until(&unbound, &[]).await.is_empty(), "a bound pod leaves the scheduler's queue");
    pods.delete("p1", &DeleteParams::default().grace_period(0)).await.expect("delete");
    assert_eq!(until(&on_a, &["p3"]).await, BTreeSet::from(["p3".into()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflector_on_schedulable_nodes_follows_cordons_including_nodes_without_the_field() {
    let s = support::start().await;
    let nodes: Api<Node> = Api::all(s.client.clone());
    let schedulable = reflect(nodes.clone(), watcher::Config::default().fields("spec.unschedulable=false"));
    nodes.create(&PostParams::default(), &node("n1", None)).await.expect("n1");
    nodes.create(&PostParams::default(), &node("n2", Some(true))).await.expect("n2");
    nodes.create(&PostParams::default(), &node("n3", Some(false))).await.expect("n3");
    assert_eq!(until(&schedulable, &["n1", "n3"]).await.len(), 2, "a node without spec.unschedulable is schedulable");
    let cordon = |u: bool| Patch::Merge(serde_json::json!({"spec": {"unschedulable": u}}));
    nodes.patch("n1", &PatchParams::default(), &cordon(true)).await.expect("cordon n1");
    nodes.patch("n2", &PatchParams::default(), &cordon(false)).await.expect("uncordon n2");
    assert_eq!(until(&schedulable, &["n2", "n3"]).await, BTreeSet::from(["n2".into(), "n3".into()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_node_leases_sees_every_renewal_in_order() {
    let s = support::start().await;
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), "kube-node-lease");
    let mut seen = watcher(leases.clone(), watcher::Config::default()).default_backoff().boxed();
    // The initial list first (empty: no node has a lease yet), then every change.
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), seen.next()).await.expect("an event").expect("open").expect("no error");
        if matches!(ev, watcher::Event::InitDone) {
            break;
        }
    }
    let mut lease = Lease::default();
    lease.metadata.name = Some("node-a".into());
    lease.spec = Some(LeaseSpec { holder_identity: Some("node-a".into()), lease_duration_seconds: Some(40), ..Default::default() });
    let mut current = leases.create(&PostParams::default(), &lease).await.expect("create in kube-node-lease");
    for i in 1..=3 {
        let t: jiff::Timestamp = format!("2030-01-01T00:00:0{i}Z").parse().expect("time");
        current.spec.get_or_insert_with(Default::default).renew_time = Some(MicroTime(t));
        current = leases.replace("node-a", &PostParams::default(), &current).await.expect("renew");
    }
    let mut renewals = Vec::new();
    while renewals.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(20), seen.next()).await.expect("an event").expect("open").expect("no error");
        if let watcher::Event::Apply(l) = ev {
            renewals.push(l.spec.and_then(|s| s.renew_time).map(|t| t.0.to_string()));
        }
    }
    let want: Vec<Option<String>> = std::iter::once(None).chain((1..=3).map(|i| Some(format!("2030-01-01T00:00:0{i}Z")))).collect();
    assert_eq!(renewals, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorders_events_k8s_io_events_show_as_core_events_and_keep_their_lease_when_they_repeat() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::ListParams;
    use kube::runtime::events::{Event as Note, EventType, Recorder, Reporter};
    let s = support::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let p = pods.create(&PostParams::default(), &pod("p1")).await.expect("create");
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: p.metadata.name.clone(),
        namespace: p.metadata.namespace.clone(),
        uid: p.metadata.uid.clone(),
        ..Default::default()
    };
    let recorder = Recorder::new(s.client.clone(), Reporter { controller: "keel-test".into(), instance: Some("test-1".into()) });
    let note = Note {
        type_: EventType::Normal,
        reason: "Scheduled".into(),
        note: Some("assigned to node-a".into()),
        action: "Binding".into(),
        secondary: None,
    };
    recorder.publish(&note, &reference).await.expect("the first event is a create");
    recorder.publish(&note, &reference).await.expect("the second is a patch of its series");

    let v1: Api<Event> = Api::default_namespaced(s.client.clone());
    let listed = v1.list(&ListParams::default()).await.expect("events.k8s.io list");
    assert_eq!(listed.items.len(), 1, "{listed:?}");
    let e = &listed.items[0];
    assert_eq!((e.series.as_ref().map(|s| s.count), e.note.as_deref()), (Some(2), Some("assigned to node-a")));
    let core: Api<CoreEvent> = Api::default_namespaced(s.client.clone());
    let described = core.list(&ListParams::default().fields("involvedObject.name=p1,involvedObject.kind=Pod")).await.expect("core list");
    assert_eq!(described.items.len(), 1, "kubectl describe's query finds it");
    let c = &described.items[0];
    assert_eq!(
        (c.message.as_deref(), c.reporting_component.as_deref(), c.reason.as_deref()),
        (Some("assigned to node-a"), Some("keel-test"), Some("Scheduled"))
    );
    assert_eq!(c.series.as_ref().and_then(|s| s.count), Some(2));

    let etcd = keel_etcd::Client::connect(&[s.cluster.etcd_servers()], &keel_etcd::Config::default(), std::sync::Arc::new(keel_etcd::Tcp))
        .expect("etcd");
    let key = format!("/registry/events/default/{}", c.metadata.name.clone().unwrap_or_default());
    let kv = etcd.get(&key).await.expect("get").expect("stored under the core events folder");
    assert!(kv.version >= 2 && kv.lease != 0, "patched (version {}) and still on its TTL lease ({})", kv.version, kv.lease);
}
