//! keel-etcd against a real keel-store: guarded writes answer as etcd's Txn does, a paged list
//! reads one revision, a dropped watch ends on the store, a resumable watch loses nothing
//! across a member's kill -9 and restart, and a client moves to another member when its own dies.

use keel_etcd::proto::etcdserverpb::WatchCreateRequest;
use keel_etcd::{Client, Config, Guarded, Resumable, Tcp, WatchItem};
use keel_testkit::{Cluster, eventually_async, text};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;

fn client(c: &Cluster) -> Client {
    let endpoints: Vec<String> = c.store_addrs.iter().map(|a| format!("http://{a}")).collect();
    let config = Config {
        request_timeout: Duration::from_secs(5),
        keepalive_interval: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    Client::connect(&endpoints, &config, Arc::new(Tcp)).expect("client")
}

async fn store(members: usize) -> Cluster {
    tokio::task::spawn_blocking(move || Cluster::builder().members(members).apiservers(0).start()).await.expect("start the store")
}

async fn watchers(c: &Cluster) -> Option<u64> {
    let url = format!("http://{}/metrics", c.store_addr);
    let out = tokio::process::Command::new("curl").args(["-s", &url]).output().await.ok()?;
    text(&out.stdout).lines().find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total ").and_then(|v| v.trim().parse().ok()))
}

fn watch_of(prefix: &str, from: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: prefix.as_bytes().to_vec().into(),
        range_end: keel_etcd::prefix_end(prefix.as_bytes()).into(),
        start_revision: from,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_writes_compare_the_mod_revision_and_say_who_won() {
    let c = store(1).await;
    let etcd = client(&c);
    let Guarded::Done(rev) = etcd.put_if("/k", b"1".to_vec(), 0, 0).await.expect("create") else { panic!("absent key") };
    let again = etcd.put_if("/k", b"2".to_vec(), 0, 0).await.expect("second create");
    assert!(matches!(&again, Guarded::Failed(Some(kv)) if kv.mod_revision == rev && kv.value.as_ref() == b"1"), "{again:?}");
    let Guarded::Done(rev2) = etcd.put_if("/k", b"2".to_vec(), rev, 0).await.expect("update") else { panic!("guard held") };
    assert!(rev2 > rev);
    assert!(matches!(etcd.delete_if("/k", rev).await.expect("stale delete"), Guarded::Failed(Some(_))));
    assert!(matches!(etcd.delete_if("/k", rev2).await.expect("delete"), Guarded::Done(_)));
    assert_eq!(etcd.get("/k").await.expect("get"), None);
    assert!(matches!(etcd.delete_if("/k", rev2).await.expect("delete again"), Guarded::Failed(None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_list_reads_every_key_at_the_first_pages_revision() {
    let c = store(1).await;
    let etcd = client(&c);
    for i in 0..7 {
        etcd.put_if(format!("/p/{i}"), vec![b'v'], 0, 0).await.expect("put");
    }
    etcd.put_if("/q", vec![], 0, 0).await.expect("outside the prefix");
    let (kvs, revision) = etcd.list("/p/", 3).await.expect("list");
    assert_eq!(
        kvs.iter().map(|kv| kv.key.to_vec()).collect::<Vec<_>>(),
        (0..7).map(|i| format!("/p/{i}").into_bytes()).collect::<Vec<_>>()
    );
    assert_eq!(revision, etcd.revision().await.expect("revision"));
    // The first page pins the revision: a later page at it does not see a newer key.
    let page = etcd.range("/p/", keel_etcd::prefix_end(b"/p/"), 0, 2).await.expect("page");
    etcd.put_if("/p/5a", vec![], 0, 0).await.expect("a key in the next page's range");
    let rest = etcd.range("/p/1\0", keel_etcd::prefix_end(b"/p/"), page.revision, 0).await.expect("next page");
    assert_eq!(page.kvs.len() + rest.kvs.len(), 7, "the next page is read at the first one's revision");
    let now = etcd.range("/p/1\0", keel_etcd::prefix_end(b"/p/"), 0, 0).await.expect("latest");
    assert_eq!(now.kvs.len(), 6, "and the latest revision has the new key");
    let compacted_at = etcd.revision().await.expect("revision");
    etcd.compact(compacted_at).await.expect("compact");
    let old = etcd.range("/p/", keel_etcd::prefix_end(b"/p/"), page.revision, 0).await;
    assert!(matches!(old, Err(keel_etcd::Error::Compacted)), "{old:?}");
    let future = etcd.range("/p/", keel_etcd::prefix_end(b"/p/"), compacted_at + 100, 0).await;
    assert!(matches!(future, Err(keel_etcd::Error::FutureRevision)), "{future:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_ends_on_the_store() {
    let c = store(1).await;
    let etcd = client(&c);
    let before = watchers(&c).await.unwrap_or(0);
    let mut w = etcd.watch(watch_of("/w/", 0)).await.expect("watch");
    let created = w.next().await.and_then(Result::ok).expect("created");
    assert!(created.created);
    assert_eq!(watchers(&c).await, Some(before + 1));
    drop(w);
    let gone = eventually_async(Duration::from_secs(10), || async { (watchers(&c).await == Some(before)).then_some(()) }).await;
    assert!(gone.is_some(), "still {:?} watchers", watchers(&c).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_watch_sees_every_change_once_across_a_member_restart() {
    let mut c = store(1).await;
    let etcd = client(&c);
    let from = etcd.revision().await.expect("revision") + 1;
    let mut items = Box::pin(Resumable::new(etcd.clone(), watch_of("/r/", from)).into_stream());
    etcd.put_if("/r/1", vec![], 0, 0).await.expect("put 1");
    let first = tokio::time::timeout(Duration::from_secs(10), items.next()).await.expect("an item").expect("not ended");
    assert!(matches!(&first, WatchItem::Events(e) if e.len() == 1), "{first:?}");
    c.stores[0].kill9();
    c.stores[0].restart();
    let wrote = eventually_async(Duration::from_secs(30), || async { etcd.put_if("/r/2", vec![], 0, 0).await.ok() }).await;
    assert!(matches!(wrote, Some(Guarded::Done(_))), "{wrote:?}");
    etcd.put_if("/r/3", vec![], 0, 0).await.expect("put 3");
    let mut keys = Vec::new();
    while keys.len() < 2 {
        let item = tokio::time::timeout(Duration::from_secs(30), items.next()).await.expect("an item").expect("not ended");
        if let WatchItem::Events(events) = item {
            keys.extend(events.into_iter().filter_map(|e| e.kv).map(|kv| String::from_utf8_lossy(&kv.key).into_owned()));
        }
    }
    assert_eq!(keys, vec!["/r/2", "/r/3"], "nothing lost, nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_to_another_member_when_its_member_dies() {
    let mut c = store(3).await;
    let etcd = client(&c);
    let ok = eventually_async(Duration::from_secs(30), || async { etcd.put_if("/m/a", vec![], 0, 0).await.ok() }).await;
    assert!(ok.is_some(), "the cluster takes writes");
    // The client went to the first member it could reach; kill that one.
    c.stores[0].kill9();
    let answered = eventually_async(Duration::from_secs(30), || async { etcd.get("/m/a").await.ok().flatten() }).await;
    assert!(answered.is_some(), "another member answers");
}
