//! Max-in-flight limits over real HTTP: with `--max-mutating-requests-inflight 1` and one
//! mutating request held open (its body not yet sent), the next write is 429 with kube's words
//! and `Retry-After: 1`, reads go on, the scheduler's Lease request takes the reserved lane, and
//! the slot is usable again once the held request ends. The apiserver runs in the test's
//! process over a real keel-store, served on loopback; curl is the client.

use keel_apiserver::seams::{Ids, SystemClock};
use keel_apiserver::{Config, Seams, Server};
use keel_testkit::{Cluster, eventually_async, text};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

async fn curl(args: Vec<String>) -> (u16, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let s = text(&out.stdout);
    let (rest, code) = s.rsplit_once('\n').unwrap_or((&s, "0"));
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (code.trim().parse().unwrap_or(0), head.to_string(), body.to_string())
}

fn req(url: &str, token: &str, method: &str, path: &str, body: &str) -> Vec<String> {
    let mut a = vec!["-X".into(), method.into(), "-H".into(), format!("Authorization: Bearer {token}")];
    if !body.is_empty() {
        a.extend(["-H".into(), "Content-Type: application/json".into(), "-d".into(), body.into()]);
    }
    a.push(format!("{url}{path}"));
    a
}

async fn metric(url: &str, line: &str) -> Option<f64> {
    let (_, _, body) = curl(req(url, "jane-token", "GET", "/metrics", "")).await;
    body.lines().find_map(|l| l.strip_prefix(line).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_mutating_limit_writes_are_429_while_reads_and_component_leases_go_on() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "jane-token,jane,uid-1,devs\nsched-token,system:kube-scheduler,uid-2,\n").unwrap_or_else(|e| panic!("{e}"));
    let cfg = keel_access::AccessConfig { token_auth_file: Some(tokens), ..Default::default() };
    let access = Arc::new(keel_access::Access::from_config(&cfg).unwrap_or_else(|e| panic!("{e}")));
    let cluster = tokio::task::spawn_blocking(|| Cluster::builder().apiservers(0).start()).await.unwrap_or_else(|e| panic!("{e}"));
    let store = keel_etcd::Client::connect(&[cluster.etcd_servers()], &keel_etcd::Config::default(), Arc::new(keel_etcd::Tcp))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = Config { access: Some(access), max_mutating_requests_inflight: 1, ..Default::default() };
    let server = Arc::new(Server::start(config, store, Seams { clock: Arc::new(SystemClock), ids: Ids::seeded(5) }));
    server.ready().await.unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let hosted = server.clone();
    let serving = tokio::spawn(async move {
        hosted
            .serve(keel_apiserver::http::serve::tcp(listener), async move {
                let _ = stop_rx.await;
            })
            .await;
    });
    let cm = |name: &str| format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
    let (code, _, body) = curl(req(&url, "jane-token", "POST", "/api/v1/namespaces/default/configmaps", &cm("first"))).await;
    assert_eq!(code, 201, "{body}");

    // One write held open: its headers sent, its body not.
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
    let head = "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: keel\r\nAuthorization: Bearer jane-token\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{";
    held.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let u = url.clone();
    let full = eventually_async(Duration::from_secs(20), || {
        let u = u.clone();
        async move { (metric(&u, "apiserver_current_inflight_requests{request_kind=\"mutating\"} ").await == Some(1.0)).then_some(()) }
    })
    .await;
    assert!(full.is_some(), "the held write holds the one mutating slot");

    let (code, head, body) = curl(req(&url, "jane-token", "POST", "/api/v1/namespaces/default/configmaps", &cm("second"))).await;
    assert_eq!((code, body.as_str()), (429, "Too many requests, please try again later.\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    let (code, _, _) = curl(req(&url, "jane-token", "GET", "/api/v1/namespaces/default/configmaps", "")).await;
    assert_eq!(code, 200, "reads have their own limit");
    let lease =
        r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"kube-scheduler"},"spec":{"holderIdentity":"s1"}}"#;
    let (code, _, body) = curl(req(&url, "sched-token", "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", lease)).await;
    assert_eq!(code, 201, "the scheduler's Lease takes the reserved lane: {body}");
    let (code, _, _) = curl(req(
        &url,
        "jane-token",
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        &lease.replace("kube-scheduler", "mine"),
    ))
    .await;
    assert_eq!(code, 429, "a user's Lease does not");
    assert_eq!(metric(&url, "apiserver_dropped_requests_total{request_kind=\"mutating\"} ").await, Some(2.0));

    // The held request ends: its slot is given back.
    drop(held);
    let u = url.clone();
    let again = eventually_async(Duration::from_secs(20), || {
        let u = u.clone();
        async move {
            let (code, _, _) = curl(req(&u, "jane-token", "POST", "/api/v1/namespaces/default/configmaps", &cm("third"))).await;
            (code == 201).then_some(())
        }
    })
    .await;
    assert!(again.is_some(), "writes are served again");
    assert_eq!(metric(&url, "apiserver_current_inflight_requests{request_kind=\"mutating\"} ").await, Some(0.0));

    let _ = stop_tx.send(());
    let _ = serving.await;
    drop(server);
    drop(cluster);
}
