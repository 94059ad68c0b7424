//! The component's `kube::Client`, from the kubeconfig named by `--kubeconfig` (its current
//! context), over real TCP or over any connector the composition root supplies (the
//! simulation's TCP). The HTTP stack above the connector (TLS, HTTP/1.1 and HTTP/2, bearer or
//! client-certificate auth) is kube's own either way.

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
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(Error::Client)?)
        .map_err(|e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}
