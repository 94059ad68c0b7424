//! `keel-store`: run one member, configured with etcd's flags and `ETCD_*` variables.
//!
//! This is the composition root: it picks real TCP listeners, the sled backend, OS-seeded
//! randomness and the process's signals.

use anyhow::Context;
use keel_store::config::{self, Config, Invocation};
use keel_store::node::Member;
use keel_store::raft::log_store::FileDisk;
use keel_store::seams::{Bugs, Seams, SplitMix64, SystemClock, TokioClock};
use keel_store::server::maintenance::ETCD_VERSION;
use keel_store::storage::sled::SledBackend;
use keel_store::tls::conn;
use std::sync::Arc;
use tokio::net::TcpListener;

/// jemalloc instead of glibc's malloc: under load a member spent up to 40 % of its CPU in glibc's
/// `_int_malloc`/`malloc_consolidate`, mostly for tonic's 8 KiB per-request codec buffers (above
/// glibc's per-thread cache limit); jemalloc serves them from thread caches. Linearizable reads
/// on three members went from 1.38× to 1.71× etcd's throughput (benches/RESULTS.md).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: freed pages go back to the kernel after a second
/// (by a background thread, off the request path) instead of ten, as many arenas as CPUs, and
/// thread caches only up to 8 KiB (tonic's buffers) instead of 32 KiB; together they keep a
/// member's RSS where it was on glibc.
#[allow(unsafe_code)] // jemalloc looks this symbol up by name; it is a constant C string.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static u8> =
    Some(&b"percpu_arena:percpu,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:8192\0"[0]);

/// sled's page cache per member (its nodes, keys and values as decoded in memory). Pages that
/// fall out of it are read back from the file, usually from the kernel's page cache, which does
/// not count against the process. Three members with 8 MiB each, on jemalloc, measured 0.68×
/// etcd's RSS for 100k keys of 256 B (24 MiB on glibc: 0.84×), see benches/RESULTS.md.
const SLED_CACHE_BYTES: u64 = 8 << 20;

fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    let level = match cfg.log_level.as_str() {
        "warn" | "error" | "debug" | "info" => cfg.log_level.clone(),
        "panic" | "fatal" | "dpanic" => "error".to_string(),
        other => anyhow::bail!("invalid --log-level {other:?}"),
    };
    // openraft narrates every step at info; Keel logs the milestones (leader changes) itself.
    let raft_level = if level == "debug" { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},openraft={raft_level}"))?;
    let out = cfg.log_outputs.first().map(String::as_str).unwrap_or("default");
    let ansi = matches!(out, "default" | "stderr") && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer: tracing_subscriber::fmt::writer::BoxMakeWriter = match out {
        "default" | "stderr" => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
        "stdout" => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        path => {
            let file =
                std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening log output {path}"))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(Arc::new(file))
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false).with_ansi(ansi);
    if cfg.logger == "zap" {
        builder.json().flatten_event(true).init()
    } else {
        builder.init()
    }
    Ok(())
}

fn seed() -> u64 {
    // OS randomness seeds the generator once; everything after is deterministic from the seed.
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    u64::from_le_bytes(buf) ^ u64::from(std::process::id())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
    }
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    init_logging(&cfg)?;
    tracing::info!(name = %cfg.name, data_dir = %cfg.data_dir.display(), version = env!("CARGO_PKG_VERSION"), etcd_api = ETCD_VERSION, "starting keel-store");
    if !cfg.no_effect.is_empty() {
        tracing::warn!(flags = ?cfg.no_effect, "these etcd flags are accepted but have no effect in Keel");
    }
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let tls = Tls::new(&cfg)?;
    let backend = Arc::new(SledBackend::open(&cfg.data_dir.join("keel.sled"), SLED_CACHE_BYTES).context("opening the store")?);
    // The certificate's CN names the user only where client certificates are required.
    let listeners = listen(&cfg.listen_client_urls, &tls.client_server, "client traffic", cfg.client_tls.client_cert_auth).await?;
    let metrics_listeners = listen(&cfg.listen_metrics_urls, &tls.client_server, "/metrics and /health", false).await?;
    let peer_listeners = listen(&cfg.listen_peer_urls, &tls.peer_server, "peer traffic", false).await?;
    // Outgoing peer traffic leaves from the peer listener's address when it names one.
    let local = cfg.listen_peer_urls.first().map(|u| u.addr.ip()).filter(|ip| !ip.is_unspecified());
    let seams = Seams {
        bugs: Bugs::default(),
        lease_clock: Arc::new(TokioClock),
        rng: Box::new(SplitMix64(seed())),
        dialer: Arc::new(conn::TcpDialer { local, tls: tls.peer_client }),
        clock: Arc::new(SystemClock),
    };
    let raft_dir = cfg.data_dir.join("raft");
    let raft_log = Arc::new(FileDisk::open(&raft_dir.join("log")).context("opening the Raft log")?);
    let member = Member::start(&cfg, backend, raft_log, &raft_dir, seams).await.context("starting the member")?;
    let peer_server = tokio::spawn(member.serve_peers(futures::stream::select_all(peer_listeners)));
    // Like etcd, clients are served once this member is in the cluster's membership.
    member.wait_published().await;
    let id = &member.ctx.identity;
    tracing::info!("published {{name:{}, clientURLs:[{}]}} to cluster {}", id.name, id.client_urls.join(" "), id.cluster_id);
    tracing::info!("enabled capabilities for version 3.5");
    tracing::info!(member_id = %id.member_id, "ready to serve client requests");
    let metrics_server =
        (!metrics_listeners.is_empty()).then(|| tokio::spawn(member.serve_metrics(futures::stream::select_all(metrics_listeners))));
    member.serve(futures::stream::select_all(listeners), shutdown_signal()).await.context("serving")?;
    if let Some(m) = metrics_server {
        m.abort();
    }
    peer_server.abort();
    tracing::info!("stopped; all acknowledged writes are on disk");
    Ok(())
}

/// Bind every URL of `urls`, through `tls` for the `https://` ones.
async fn listen(
    urls: &[config::urls::Url],
    tls: &Option<Arc<rustls::ServerConfig>>,
    what: &str,
    cn_is_user: bool,
) -> anyhow::Result<Vec<impl futures::Stream<Item = std::io::Result<conn::Conn>> + Send + 'static>> {
    let mut out = Vec::new();
    for url in urls {
        let l = TcpListener::bind(url.addr).await.with_context(|| format!("listening for {what} on {}", url.text))?;
        let tls = if url.scheme == "https" { tls.clone() } else { None };
        if tls.is_some() {
            tracing::info!(address = %url.text, "serving {what} securely");
        } else {
            tracing::info!(address = %url.text, "serving {what} insecurely; this is strongly discouraged!");
        }
        out.push(conn::incoming(l, tls, cn_is_user));
    }
    Ok(out)
}

/// The TLS configs the flags ask for.
struct Tls {
    client_server: Option<Arc<rustls::ServerConfig>>,
    peer_server: Option<Arc<rustls::ServerConfig>>,
    peer_client: Option<Arc<rustls::ClientConfig>>,
}

impl Tls {
    fn new(cfg: &Config) -> anyhow::Result<Tls> {
        let hosts = |urls: &[config::urls::Url], advertised: &[String]| -> Vec<String> {
            let mut h: Vec<String> = urls.iter().map(|u| u.addr.ip().to_string()).collect();
            h.extend(advertised.iter().filter_map(|a| config::urls::Url::parse(a).ok()).map(|u| u.addr.ip().to_string()));
            h
        };
        let client_https = cfg.listen_client_urls.iter().chain(&cfg.listen_metrics_urls).any(|u| u.scheme == "https");
        let client_server = if client_https {
            if !cfg.client_tls.enabled() {
                anyhow::bail!("TLS key/cert (--cert-file, --key-file) must be provided for client url with HTTPS scheme");
            }
            let id = cfg
                .client_tls
                .identity(&hosts(&cfg.listen_client_urls, &cfg.advertise_client_urls), &cfg.data_dir.join("fixtures/client"))
                .map_err(anyhow::Error::msg)?;
            Some(cfg.client_tls.server_config(id).map_err(|e| anyhow::anyhow!("client TLS: {e}"))?)
        } else {
            None
        };
        let peer_https =
            cfg.listen_peer_urls.iter().any(|u| u.scheme == "https") || cfg.initial_cluster.iter().any(|(_, u)| u.starts_with("https://"));
        let (peer_server, peer_client) = if peer_https {
            if !cfg.peer_tls.enabled() {
                anyhow::bail!("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url with HTTPS scheme");
            }
            let id = cfg
                .peer_tls
                .identity(&hosts(&cfg.listen_peer_urls, &cfg.initial_advertise_peer_urls), &cfg.data_dir.join("fixtures/peer"))
                .map_err(anyhow::Error::msg)?;
            let client = cfg.peer_tls.client_config(id.duplicate()).map_err(|e| anyhow::anyhow!("peer TLS: {e}"))?;
            (Some(cfg.peer_tls.server_config(id).map_err(|e| anyhow::anyhow!("peer TLS: {e}"))?), Some(client))
        } else {
            (None, None)
        };
        Ok(Tls { client_server, peer_server, peer_client })
    }
}

fn usage() -> String {
    let mut s = String::from(
        "Usage:\n\n  keel-store [flags]\n\nAccepts every flag of etcd 3.4/3.5 (also as ETCD_* variables). Flags and defaults:\n\n",
    );
    for f in config::etcd_flags::ETCD_FLAGS {
        s.push_str(&format!("  --{} {}\n", f.name, if f.default.is_empty() { String::new() } else { format!("'{}'", f.default) }));
    }
    s
}

/// `keel-store snapshot restore FILE [etcd flags]`: build a member's data dir from a snapshot
/// (`etcdctl snapshot save` from etcd or Keel), to start a new cluster with
/// `--initial-cluster-state new`.
fn restore(args: &[String]) -> anyhow::Result<()> {
    let [file, flags @ ..] = args else {
        anyhow::bail!("usage: keel-store snapshot restore FILE [--name N --data-dir D --initial-cluster ...]")
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (Invocation::Run(cfg), _) = config::parse(flags, &env)? else { anyhow::bail!("snapshot restore takes etcd's member flags") };
    if cfg.data_dir.exists() && std::fs::read_dir(&cfg.data_dir)?.next().is_some() {
        anyhow::bail!("data-dir {:?} exists; restore builds a new one", cfg.data_dir);
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    let backend = SledBackend::open(&cfg.data_dir.join("keel.sled"), SLED_CACHE_BYTES).context("creating the store")?;
    let input = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
    let n = keel_store::snapshot::restore(&backend, input).with_context(|| format!("restoring {file}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(keel_store::storage::Backend::sync(&backend))?;
    println!("restored {n} records from {file} into {}; start the member with --initial-cluster-state new", cfg.data_dir.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("snapshot") {
        if args.get(1).map(String::as_str) != Some("restore") {
            eprintln!("usage: keel-store snapshot restore FILE [etcd member flags]");
            return std::process::ExitCode::from(2);
        }
        return match restore(&args[2..]) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("keel-store: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (invocation, warnings) = match config::parse(&args, &env) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}\n{}", usage());
            return std::process::ExitCode::from(2);
        }
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    match invocation {
        Invocation::Help => {
            println!("{}", usage());
            std::process::ExitCode::SUCCESS
        }
        Invocation::Version => {
            println!("keel-store Version: {}\netcd API Version: {ETCD_VERSION}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        Invocation::Run(cfg) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            // A task woken by the running one waits its turn instead of running next. An applied
            // group wakes many request handlers at once; with the LIFO slot each handler's
            // connection task ran right after it, so every response was its own write(2). Now
            // the handlers run first and a connection writes their responses together: put at
            // 64 clients went from about 9.6k to 11.2k ops/s, with 17 % less CPU per write.
            #[cfg(tokio_unstable)]
            builder.disable_lifo_slot();
            let rt = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(*cfg)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("keel-store: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
