//! A TokenRequest token works until it expires and not after: the apiserver runs in the test's
//! process (over a real keel-store) with a clock the test moves, served over real HTTPS on
//! loopback (kubectl sends no token over plain HTTP), and the real kubectl uses the token. No waiting ten minutes: the clock jumps.

use keel_apiserver::seams::{Clock, Ids};
use keel_apiserver::{Config, Seams, Server};
use keel_testkit::{Cluster, eventually, text};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A clock the test sets.
struct Settable(Mutex<jiff::Timestamp>);

impl Settable {
    fn advance(&self, secs: i64) {
        let mut t = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *t = t.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Clock for Settable {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn kubectl(server: &str, token: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", "/dev/null")
        .args(["--server", server, "--token", token, "--insecure-skip-tls-verify", "--request-timeout", "20s"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e}"));
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_until_its_expiry_and_not_after() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (key, tokens) = (dir.path().join("sa.key"), dir.path().join("tokens.csv"));
    std::fs::write(&key, keel_access::authn::keys::generate_signing_key_pem().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&tokens, "admin-token,admin,uid-0,system:masters\n").unwrap_or_else(|e| panic!("{e}"));
    let cfg = keel_access::AccessConfig {
        token_auth_file: Some(tokens),
        service_account_signing_key_file: Some(key),
        service_account_issuers: vec!["https://kubernetes.default.svc.cluster.local".into()],
        authorization_mode: "Node,RBAC".into(),
        ..Default::default()
    };
    let access = Arc::new(keel_access::Access::from_config(&cfg).unwrap_or_else(|e| panic!("{e}")));
    let clock = Arc::new(Settable(Mutex::new("2030-01-02T03:04:05Z".parse().unwrap_or_else(|e| panic!("{e}")))));

    let cluster = tokio::task::spawn_blocking(|| Cluster::builder().apiservers(0).start()).await.unwrap_or_else(|e| panic!("{e}"));
    let store = keel_etcd::Client::connect(&[cluster.etcd_servers()], &keel_etcd::Config::default(), Arc::new(keel_etcd::Tcp))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = Config { access: Some(access), ..Default::default() };
    let server = Arc::new(Server::start(config, store, Seams { clock: clock.clone(), ids: Ids::seeded(3) }));
    server.ready().await.unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("https://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let hosted = server.clone();
    let files = keel_apiserver::http::tls::ensure_generated(&dir.path().join("certs"), &["127.0.0.1".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let tls = keel_apiserver::http::tls::server_config(&files, None).unwrap_or_else(|e| panic!("{e}"));
    let serving = tokio::spawn(async move {
        hosted
            .serve_tls(keel_apiserver::http::serve::tcp(listener), tls, async move {
                let _ = stop_rx.await;
            })
            .await;
    });

    let u = url.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let admin = |args: &[&str]| {
            let (ok, out) = kubectl(&u, "admin-token", args);
            assert!(ok, "{args:?}: {out}");
            out
        };
        admin(&["create", "namespace", "dev"]);
        admin(&["create", "serviceaccount", "robot", "-n", "dev"]);
        admin(&["create", "rolebinding", "robot-view", "--clusterrole=view", "--serviceaccount=dev:robot", "-n", "dev"]);
        let token = admin(&["create", "token", "robot", "-n", "dev", "--duration", "10m"]).trim().to_string();
        let works = eventually(Duration::from_secs(20), || kubectl(&u, &token, &["get", "sa", "-n", "dev"]).0.then_some(()));
        assert!(works.is_some(), "the fresh token works: {:?}", kubectl(&u, &token, &["get", "sa", "-n", "dev"]));
        token
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Ten minutes later, and the 60 s of leeway kube allows (go-jose's), it still works...
    clock.advance(600 + 60);
    let (u, t) = (url.clone(), checks.clone());
    let (ok, out) =
        tokio::task::spawn_blocking(move || kubectl(&u, &t, &["get", "sa", "-n", "dev"])).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(ok, "at expiry plus the leeway: {out}");
    // ...one second more and it is 401.
    clock.advance(1);
    let (u, t) = (url.clone(), checks.clone());
    let (ok, out) =
        tokio::task::spawn_blocking(move || kubectl(&u, &t, &["get", "sa", "-n", "dev"])).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!ok && out.contains("error: You must be logged in to the server (Unauthorized)"), "{out}");
    let (u, t) = (url.clone(), checks);
    let curl = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sk", "-H", &format!("Authorization: Bearer {t}"), &format!("{u}/api/v1/namespaces/dev/serviceaccounts")])
            .output()
            .map(|o| text(&o.stdout))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("{e}"));
    let body: serde_json::Value = serde_json::from_str(&curl).unwrap_or_default();
    assert_eq!(
        body,
        serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
    );

    let _ = stop_tx.send(());
    let _ = serving.await;
    drop(server);
    drop(cluster);
}
