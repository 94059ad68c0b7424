//! `keel-apiserver`: the composition root. Parses kube-apiserver's flags (the subset Keel
//! serves), picks the real seams (TCP to the store, the system clock, an OS-seeded generator),
//! makes sure the serving certificate exists, starts the [`Server`], writes a kubeconfig if
//! asked once it is ready, binds the listeners and serves until SIGINT/SIGTERM.

use anyhow::Context;
use base64::Engine;
use clap::Parser;
use keel_apiserver::http::{serve, tls};
use keel_apiserver::seams::{Ids, SystemClock};
use keel_apiserver::storage::encryption::Codec;
use keel_apiserver::{Config, Seams, Server};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The Kubernetes API over an etcd v3 store.
#[derive(Parser, Debug)]
#[command(name = "keel-apiserver", version)]
struct Flags {
    /// Store endpoints, comma separated (keel-store or etcd).
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// HTTPS port.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: String,
    /// The apiserver's own folder: generated certificates and the encryption key live here.
    #[arg(long, default_value = "apiserver.local.config")]
    data_dir: PathBuf,
    /// Where the generated CA and serving certificate live (default: <data-dir>/certificates).
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Keys that encrypt Secrets at rest, one `name:base64-of-32-bytes` per line, the first
    /// used for writes (default: <data-dir>/encryption-keys, generated on first start).
    #[arg(long)]
    encryption_key_file: Option<PathBuf>,
    /// Serving certificate (PEM); with --tls-private-key-file, instead of generated ones.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Extra names and IPs the generated serving certificate is valid for (comma separated), so
    /// clients verify it through a load balancer's address or a DNS name.
    #[arg(long, value_delimiter = ',')]
    tls_sans: Vec<String>,
    /// Plain-HTTP port on 127.0.0.1 for development (0: off).
    #[arg(long, default_value_t = 0)]
    insecure_port: u16,
    /// Write a kubeconfig for this server here (generated certificates only).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// How long events are kept.
    #[arg(long, default_value = "3600", value_parser = parse_secs)]
    event_ttl: Duration,
    /// How often to compact the store's history, in seconds (kube-apiserver's
    /// --etcd-compaction-interval; 0 turns it off).
    #[arg(long, default_value = "300", value_parser = parse_secs)]
    etcd_compaction_interval: Duration,
    /// Admission plugins to turn on beside the defaults (kube's names).
    #[arg(long, value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
    /// Admission plugins to turn off (kube's names).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// Seconds a pod tolerates a not-ready node by default (DefaultTolerationSeconds).
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Seconds a pod tolerates an unreachable node by default (DefaultTolerationSeconds).
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// How long a watch without timeoutSeconds stays open, in seconds.
    #[arg(long, default_value = "3600", value_parser = parse_secs)]
    watch_timeout: Duration,
    /// Client certificate (PEM) presented to kubelets (logs, exec, node proxy, metrics).
    #[arg(long, requires = "kubelet_client_key")]
    kubelet_client_certificate: Option<PathBuf>,
    /// Key of --kubelet-client-certificate.
    #[arg(long, requires = "kubelet_client_certificate")]
    kubelet_client_key: Option<PathBuf>,
    /// CA that signs kubelets' serving certificates; without it they are not verified (as
    /// kube-apiserver).
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Node address types tried in order to reach a kubelet (Keel puts InternalIP first:
    /// node names need not resolve).
    #[arg(long, value_delimiter = ',')]
    kubelet_preferred_address_types: Vec<String>,
    /// The range Service ClusterIPs are allocated from (its first IP is the kubernetes
    /// Service's).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// The range NodePorts are allocated from.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// CA whose client certificates authenticate users (CN the user, O the groups).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Static bearer tokens, kube's CSV: token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Whether requests without credentials are served as system:anonymous.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// Authorizers in order (AlwaysAllow, AlwaysDeny, Node, RBAC). Authentication and
    /// authorization run once any of these four flags differs from its default, or a
    /// service-account key is given.
    #[arg(long, default_value = "AlwaysAllow")]
    authorization_mode: String,
    /// PEM private key (RSA or ECDSA) that signs ServiceAccount tokens (TokenRequest); without
    /// it the `serviceaccounts/<name>/token` subresource is not served.
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// PEM files of keys (public, private or certificates) that verify ServiceAccount tokens
    /// (repeatable; default: the signing key).
    #[arg(long, value_delimiter = ',')]
    service_account_key_file: Vec<PathBuf>,
    /// The issuer (`iss`) of ServiceAccount tokens; repeatable: the first issues, all are
    /// accepted. Required with a signing key.
    #[arg(long, value_delimiter = ',')]
    service_account_issuer: Vec<String>,
    /// Audiences ServiceAccount tokens must name one of (default: the issuers).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// The longest a TokenRequest's token may live (a Go duration: 24h, 90m, 3600s; default: no
    /// limit).
    #[arg(long, value_parser = parse_go_duration)]
    service_account_max_token_expiration: Option<Duration>,
    /// Whether pod-bound tokens asked for 3607 s (kubelet's projected volume) live a year, with
    /// a warning after the time asked for, as kube's default.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    service_account_extend_token_expiration: bool,
    /// Where to write the audit log, one audit.k8s.io/v1 Event (Metadata level) per line, as
    /// JSON; `-` is stdout. Without it nothing is audited.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// Non-mutating requests served at once; more are 429 (0: no limit). Watches, proxy, exec,
    /// attach, logs, system:masters and the components' and kubelets' Lease requests are not
    /// counted.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests served at once; more are 429 (0: no limit).
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// How long connecting to a kubelet may take, in seconds.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    kubelet_timeout: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let n = s.trim_end_matches('s').parse::<u64>().map_err(|e| format!("{s}: {e}"))?;
    Ok(Duration::from_secs(n))
}

/// A Go duration as kube's flags take it: `24h`, `1h30m`, `90m`, `3600s` (no fractions).
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let mut secs = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
                secs += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                num.clear();
            }
            _ => return Err(format!("invalid duration {s:?}")),
        }
    }
    if !num.is_empty() || s.is_empty() {
        return Err(format!("invalid duration {s:?}: missing unit"));
    }
    Ok(Duration::from_secs(secs))
}

fn kubeconfig(server: &str, ca_pem: &[u8]) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: keel-admin\n  user:\n    token: keel-admin\ncontexts:\n- name: keel\n  context:\n    cluster: keel\n    user: keel-admin\ncurrent-context: keel\n"
    )
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let flags = Flags::parse();
    let seed = rand_seed();
    let key_file = flags.encryption_key_file.clone().unwrap_or_else(|| flags.data_dir.join("encryption-keys"));
    let codec = Codec::load_or_create(&key_file, seed).map_err(|e| anyhow::anyhow!("--encryption-key-file: {e}"))?;
    let client = keel_etcd::Client::connect(&flags.etcd_servers, &keel_etcd::Config::default(), Arc::new(keel_etcd::Tcp))
        .map_err(|e| anyhow::anyhow!("--etcd-servers: {e}"))?;
    let cert_dir = flags.cert_dir.clone().unwrap_or_else(|| flags.data_dir.join("certificates"));
    let files = match (&flags.tls_cert_file, &flags.tls_private_key_file) {
        (Some(cert), Some(key)) => tls::CertFiles { cert: cert.clone(), key: key.clone(), ca: None },
        _ => {
            let hosts: Vec<String> = std::iter::once(flags.bind_address.clone()).chain(flags.tls_sans.iter().cloned()).collect();
            tls::ensure_generated(&cert_dir, &hosts).map_err(|e| anyhow::anyhow!(e))?
        }
    };
    let secured = flags.client_ca_file.is_some()
        || flags.token_auth_file.is_some()
        || !flags.anonymous_auth
        || flags.authorization_mode != "AlwaysAllow"
        || flags.service_account_signing_key_file.is_some()
        || !flags.service_account_key_file.is_empty();
    let access = match secured {
        false => None,
        true => {
            let cfg = keel_access::AccessConfig {
                client_ca_file: flags.client_ca_file.clone(),
                token_auth_file: flags.token_auth_file.clone(),
                anonymous_auth: flags.anonymous_auth,
                authorization_mode: flags.authorization_mode.clone(),
                service_account_signing_key_file: flags.service_account_signing_key_file.clone(),
                service_account_key_files: flags.service_account_key_file.clone(),
                service_account_issuers: flags.service_account_issuer.clone(),
                api_audiences: flags.api_audiences.clone(),
                service_account_max_token_expiration: flags
                    .service_account_max_token_expiration
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                service_account_extend_token_expiration: flags.service_account_extend_token_expiration,
                ..Default::default()
            };
            Some(Arc::new(keel_access::Access::from_config(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?))
        }
    };
    let verifier = access.as_ref().and_then(|a| a.client_verifier.clone());
    let tls_config = tls::server_config(&files, verifier).map_err(|e| anyhow::anyhow!(e))?;
    let advertise = format!("{}:{}", flags.bind_address, flags.secure_port);
    let signs_tokens = flags.service_account_signing_key_file.is_some();
    let admission_plugins =
        keel_apiserver::rest::admission::plugins(&flags.enable_admission_plugins, &flags.disable_admission_plugins, signs_tokens)
            .map_err(|e| anyhow::anyhow!("--enable-admission-plugins: {e}"))?;
    let cert_key = flags.kubelet_client_certificate.as_deref().zip(flags.kubelet_client_key.as_deref());
    let kubelet_tls = keel_apiserver::kubelet::tls::client_config(cert_key, flags.kubelet_certificate_authority.as_deref())
        .map_err(|e| anyhow::anyhow!("kubelet client: {e}"))?;
    let kubelet = keel_apiserver::kubelet::Config {
        tls: Some(kubelet_tls),
        preferred: keel_apiserver::kubelet::location::parse_preferred(&flags.kubelet_preferred_address_types)
            .map_err(|e| anyhow::anyhow!("--kubelet-preferred-address-types: {e}"))?,
        connect_timeout: flags.kubelet_timeout,
    };
    let service_ranges = keel_apiserver::registry::service_alloc::Ranges {
        ips: keel_apiserver::registry::service_alloc::Cidr::parse(&flags.service_cluster_ip_range)
            .map_err(|e| anyhow::anyhow!("--service-cluster-ip-range: {e}"))?,
        ports: keel_apiserver::registry::service_alloc::parse_ports(&flags.service_node_port_range)
            .map_err(|e| anyhow::anyhow!("--service-node-port-range: {e}"))?,
    };
    let audit = audit_log(flags.audit_log_path.as_deref())?;
    let config = Config {
        access,
        audit,
        kubelet,
        service_ranges,
        admission_plugins,
        advertise: advertise.clone(),
        watch_timeout: flags.watch_timeout,
        event_ttl: flags.event_ttl,
        compaction_interval: flags.etcd_compaction_interval,
        max_requests_inflight: flags.max_requests_inflight,
        max_mutating_requests_inflight: flags.max_mutating_requests_inflight,
        codec: Arc::new(codec),
        default_toleration_seconds: (flags.default_not_ready_toleration_seconds, flags.default_unreachable_toleration_seconds),
        ..Config::default()
    };
    let seams = Seams { clock: Arc::new(SystemClock), ids: Ids::seeded(seed.rotate_left(17)) };
    let server = Server::start(config, client, seams);
    // The store may still be starting (a fresh cluster can change leader right after its first
    // write): the server retries its bootstrap for a while.
    server.ready().await.map_err(|e| anyhow::anyhow!("the store at {:?} did not answer: {e}", flags.etcd_servers))?;
    if let (Some(path), Some(ca)) = (&flags.write_kubeconfig, &files.ca) {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        std::fs::write(path, kubeconfig(&format!("https://{advertise}"), &pem)).with_context(|| format!("writing {}", path.display()))?;
    }
    let secure = tokio::net::TcpListener::bind((flags.bind_address.as_str(), flags.secure_port))
        .await
        .with_context(|| format!("binding {advertise}"))?;
    let plain = match flags.insecure_port {
        0 => None,
        port => Some(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.context("binding the insecure port")?),
    };
    eprintln!("keel-apiserver serving on https://{advertise} (store: {})", flags.etcd_servers.join(","));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let https = server.serve_tls(serve::tcp(secure), tls_config, stopped(stop_rx.clone()));
    let http = async {
        if let Some(l) = plain {
            server.serve(serve::tcp(l), stopped(stop_rx.clone())).await;
        }
    };
    let signal = async {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(https, http, signal);
    Ok(())
}

/// Lines the audit log holds while its writer is behind; more are dropped (and counted).
const AUDIT_QUEUE: usize = 10_000;

/// The audit log's sink: stdout for `-`, else the file opened for append (created 0600, as
/// kube's), so a bad path stops startup instead of losing every line.
fn audit_log(path: Option<&std::path::Path>) -> anyhow::Result<Option<Arc<keel_apiserver::http::audit::Sink>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = path else { return Ok(None) };
    let out: Box<dyn std::io::Write + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("--audit-log-path: opening {}", path.display()))?;
        Box::new(file)
    };
    let sink = keel_apiserver::http::audit::Sink::start(out, AUDIT_QUEUE).context("starting the audit log writer")?;
    Ok(Some(sink))
}

/// A seed for uids and name suffixes from the OS.
fn rand_seed() -> u64 {
    use rand::TryRngCore;
    rand::rngs::OsRng.try_next_u64().unwrap_or(0x6b65_656c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_kube_flags_take_them() {
        for (s, secs) in [("24h", 86_400), ("1h30m", 5_400), ("90m", 5_400), ("3600s", 3_600), ("0s", 0)] {
            assert_eq!(parse_go_duration(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        for bad in ["", "10", "1d", "h", "1.5h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
