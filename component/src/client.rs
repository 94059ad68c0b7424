//! The component's `kube::Client`, from the kubeconfig named by `--kubeconfig` (its current
//! context), over real TCP or over any connector the composition root supplies (the
//! simulation's TCP). The HTTP stack above the connector (TLS, HTTP/1.1 and HTTP/2, bearer or
//! client-certificate auth, the kubeconfig's timeouts and impersonation headers) is kube's own
//! either way.

use crate::Error;
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;

/// kube's configuration from the kubeconfig at `path` (current context).
pub async fn config(path: &Path) -> Result<kube::Config, Error> {
    let bad = |source| Error::Kubeconfig { path: path.display().to_string(), source };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| bad(kube::Error::InferKubeconfig(e)))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(|e| bad(kube::Error::InferKubeconfig(e)))
}

/// A client for the cluster and user of the kubeconfig at `path`, over real TCP.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    kube::Client::try_from(config(path).await?).map_err(Error::Client)
}

/// A client for the kubeconfig at `path` whose connections come from `connector` (a tower
/// service from a URI to a connected byte stream, as hyper's connectors are).
pub async fn with_connector<C>(path: &Path, connector: C) -> Result<kube::Client, Error>
where
    C: tower::Service<http::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper_util::client::legacy::connect::Connection + hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    from_config_with_connector(config(path).await?, connector)
}

/// [`with_connector`] for a configuration already read.
pub fn from_config_with_connector<C>(config: kube::Config, connector: C) -> Result<kube::Client, Error>
where
    C: tower::Service<http::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper_util::client::legacy::connect::Connection + hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    use tower::ServiceBuilder;
    let https = config.rustls_https_connector_with_connector(connector).map_err(Error::Client)?;
    // As kube's own `Client::try_from(Config)`: the kubeconfig's timeouts on every connection
    // (connect 30 s by default; read and write only when set).
    let mut timed = hyper_timeout::TimeoutConnector::new(https);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(timed);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(Error::Client)?)
        // Impersonation (`as`/`as-groups` in the kubeconfig) and any extra headers.
        .layer(config.extra_headers_layer().map_err(Error::Client)?)
        .map_err(|e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A plain-HTTP apiserver on loopback that hands each request's head to `heads` and
    /// answers `/version` (or, with `silent`, never answers).
    async fn apiserver(silent: bool) -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_lowercase());
                    if silent {
                        std::future::pending::<()>().await;
                    }
                    let body = r#"{"major":"1","minor":"32","gitVersion":"v1.32.0","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#;
                    let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        (addr, rx)
    }

    fn config_for(addr: std::net::SocketAddr) -> kube::Config {
        let mut c = kube::Config::new(format!("http://{addr}").parse().expect("uri"));
        c.auth_info.impersonate = Some("jane".into());
        c
    }

    #[tokio::test]
    async fn a_client_on_a_connector_sends_the_kubeconfigs_impersonation() {
        let (addr, mut heads) = apiserver(false).await;
        let client =
            from_config_with_connector(config_for(addr), hyper_util::client::legacy::connect::HttpConnector::new()).expect("client");
        let version = client.apiserver_version().await.expect("answered");
        assert_eq!(version.git_version, "v1.32.0");
        let head = heads.recv().await.expect("a request");
        assert!(head.contains("impersonate-user: jane"), "{head}");
    }

    #[tokio::test]
    async fn a_client_on_a_connector_keeps_the_kubeconfigs_read_timeout() {
        let (addr, _heads) = apiserver(true).await;
        let mut config = config_for(addr);
        config.read_timeout = Some(std::time::Duration::from_millis(200));
        let client = from_config_with_connector(config, hyper_util::client::legacy::connect::HttpConnector::new()).expect("client");
        // Bounded only so a regression fails instead of hanging the suite.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(20), client.apiserver_version()).await;
        assert!(matches!(answer, Ok(Err(_))), "a silent apiserver is a read timeout, not a hang: {answer:?}");
    }
}
