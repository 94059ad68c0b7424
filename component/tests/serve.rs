//! The component endpoint over real TLS on loopback, read through a kube client built from a
//! kubeconfig file: health, readiness and metrics answer as kube's components do.

use keel_component::{client, health::Health, metrics, serve};
use prometheus_client::metrics::counter::Counter;

async fn get(c: &kube::Client, path: &str) -> (u16, String) {
    let req = http::Request::get(path).body(Vec::new()).expect("request");
    match c.request_text(req).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(e) => panic!("{path}: {e}"),
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served_over_tls_to_a_kubeconfig_client() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let health = Health::new();
    let registry = metrics::shared();
    let done: Counter = Counter::default();
    registry.lock().expect("lock").register("demo_syncs", "Syncs", done.clone());
    done.inc();
    let tls = serve::self_signed(&["127.0.0.1".into()]).expect("certificate");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::serve(listener, Some(tls), serve::router(health.clone(), registry), async {
        let _ = stopped.await;
    }));

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{addr}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    let c = client::from_kubeconfig(&kubeconfig).await.expect("client");

    assert_eq!(get(&c, "/healthz").await.0, 200);
    // Not ready until told.
    assert_ne!(get(&c, "/readyz").await.0, 200);
    health.set_ready(true);
    assert_eq!(get(&c, "/readyz").await, (200, "ok".to_string()));
    health.set_healthy("informers", false);
    assert_ne!(get(&c, "/livez").await.0, 200);
    let (code, body) = get(&c, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("demo_syncs_total 1"), "{body}");

    // The same kubeconfig over a connector the caller supplies (here: counting the dials).
    let dials = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = dials.clone();
    let connector = tower::service_fn(move |uri: http::Uri| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let host = uri.host().unwrap_or("127.0.0.1").to_string();
            let port = uri.port_u16().unwrap_or(443);
            tokio::net::TcpStream::connect((host.as_str(), port)).await.map(hyper_util::rt::TokioIo::new)
        }
    });
    let via = client::with_connector(&kubeconfig, connector).await.expect("client over a connector");
    assert!(get(&via, "/metrics").await.1.contains("demo_syncs_total 1"));
    assert!(dials.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the connector was not used");

    let _ = stop.send(());
    server.await.expect("server task").expect("serve");
}

#[tokio::test]
async fn a_kubeconfig_that_is_not_one_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "this: [is not a kubeconfig").expect("write");
    let Err(err) = client::from_kubeconfig(&path).await else { panic!("a broken kubeconfig must fail") };
    assert!(err.to_string().starts_with(&format!("kubeconfig {}", path.display())), "{err}");
    let Err(missing) = client::from_kubeconfig(&dir.path().join("absent")).await else { panic!("a missing kubeconfig must fail") };
    assert!(missing.to_string().contains("absent"), "{missing}");
}
