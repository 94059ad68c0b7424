//! `keel-kubelet`: the composition root. It parses flags, builds the kube client, the clock, the
//! runtime(s) and the listener, and starts one node (Linux runtime) or `--simulated-nodes N`
//! (simulated runtime) in this process. Hidden subcommands `__shim` and `__init` are the
//! container shim and init (see `runtime::linux::shim`); `reset` removes everything a kubelet
//! with these flags left on the host.

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::Taint;
use keel_kubelet::clock::{Clock, SystemClock};
use keel_kubelet::events::Events;
use keel_kubelet::node::agent::{self, NodeSettings, Observations};
use keel_kubelet::node::conditions::Observed;
use keel_kubelet::node::host::{self, Capacity};
use keel_kubelet::node::pods::{self, PodsSettings};
use keel_kubelet::pod::backoff::BackoffConfig;
use keel_kubelet::pod::manager::Feed;
use keel_kubelet::pod::quantity::{cpu_millis, memory_bytes};
use keel_kubelet::pod::{Node, PodConfig};
use keel_kubelet::runtime::Runtime;
use keel_kubelet::runtime::ipam::{Cidr, Ipam};
use keel_kubelet::runtime::linux::{LinuxConfig, LinuxRuntime, shim};
use keel_kubelet::runtime::simulated::{SimulatedRuntime, parse_duration};
use keel_kubelet::server::{self, Server};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(name = "keel-kubelet", about = "Keel's node agent: registers a Node, runs the pods bound to it, reports their status.")]
struct Flags {
    /// kubeconfig of the apiserver to register with.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The node's name (default: the host name).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's InternalIP (default: the first non-loopback IPv4 address, else 127.0.0.1).
    #[arg(long)]
    node_ip: Option<Ipv4Addr>,
    /// Labels to register with: k=v,k2=v2.
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Taints to register with: key=value:Effect,key2:Effect.
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// The node's pod CIDR; pods get addresses from it on the bridge.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Where the kubelet keeps pods, container records and logs.
    #[arg(long, default_value = "/var/lib/keel-kubelet")]
    root_dir: PathBuf,
    /// Static pod manifests (default /etc/kubernetes/manifests when it exists).
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// How often the manifest folder is read.
    #[arg(long, default_value = "20s")]
    file_check_frequency: String,
    /// `linux` or `simulated`.
    #[arg(long, default_value = "linux")]
    runtime: String,
    /// Host this many simulated nodes in this process (implies --runtime simulated); they are
    /// named <hostname-override>-<i>.
    #[arg(long)]
    simulated_nodes: Option<usize>,
    /// A simulated node's cpu.
    #[arg(long, default_value = "4")]
    simulated_cpu: String,
    /// A simulated node's memory.
    #[arg(long, default_value = "8Gi")]
    simulated_memory: String,
    /// Simulated nodes get consecutive /24s of this range as their pod CIDRs.
    #[arg(long, default_value = "10.128.0.0/9")]
    simulated_pod_range: String,
    /// The pod bridge.
    #[arg(long, default_value = "keel0")]
    bridge_name: String,
    /// Keel's cgroup folder under each controller.
    #[arg(long, default_value = "keel")]
    cgroup_root: String,
    /// Max pods on the node (capacity).
    #[arg(long, default_value_t = 110)]
    max_pods: u64,
    /// Max processes per container (pids cgroup).
    #[arg(long)]
    pod_max_pids: Option<u64>,
    /// Hard eviction threshold; only memory.available is acted on.
    #[arg(long, default_value = "memory.available<100Mi")]
    eviction_hard: String,
    /// The node Lease's duration; it is renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: u64,
    /// How often the node status is computed.
    #[arg(long, default_value = "10s")]
    node_status_update_frequency: String,
    /// How often an unchanged node status is posted anyway.
    #[arg(long, default_value = "5m")]
    node_status_report_frequency: String,
    /// How often each pod worker looks again without being woken.
    #[arg(long, default_value = "1s")]
    sync_frequency: String,
    /// The first restart back-off (doubles up to 5 min).
    #[arg(long, default_value = "10s")]
    restart_backoff: String,
    /// Address of the HTTPS server.
    #[arg(long, default_value = "0.0.0.0")]
    address: String,
    /// Port of the HTTPS server (0: no server).
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Serving certificate (default: self-signed for the node's names).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// CA of client certificates to require (the apiserver's kubelet client certificate).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Rotate container logs past this size.
    #[arg(long, default_value = "10Mi")]
    container_log_max_size: String,
    /// Keep this many files per container log.
    #[arg(long, default_value_t = 5)]
    container_log_max_files: usize,
    /// On SIGTERM/SIGINT, stop every pod (preStop, SIGTERM, grace) and remove the bridge,
    /// instead of leaving them running for the next kubelet to adopt.
    #[arg(long)]
    stop_pods_on_shutdown: bool,
}

#[derive(Parser, Debug)]
struct ResetFlags {
    #[arg(long, default_value = "/var/lib/keel-kubelet")]
    root_dir: PathBuf,
    #[arg(long, default_value = "keel")]
    cgroup_root: String,
    #[arg(long, default_value = "keel0")]
    bridge_name: String,
    #[arg(long)]
    pod_cidr: Option<String>,
}

fn duration(what: &str, s: &str) -> anyhow::Result<Duration> {
    parse_duration(s).with_context(|| format!("--{what}: {s:?} is not a duration (10s, 500ms, 5m)"))
}

fn taints(s: &str) -> anyhow::Result<Vec<Taint>> {
    let mut out = Vec::new();
    for t in s.split(',').filter(|t| !t.is_empty()) {
        let (kv, effect) = t.rsplit_once(':').with_context(|| format!("taint {t:?} needs :Effect"))?;
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            bail!("taint {t:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
        }
        let (key, value) = kv.split_once('=').map(|(k, v)| (k, Some(v.to_string()))).unwrap_or((kv, None));
        out.push(Taint { key: key.into(), value, effect: effect.into(), time_added: None });
    }
    Ok(out)
}

fn labels(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    s.split(',')
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).with_context(|| format!("label {l:?} needs k=v")))
        .collect()
}

fn first_ipv4() -> String {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1).and_then(|a| a.split('/').next()).map(String::from))
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // The shim and init must run before any thread exists (namespaces).
    match args.get(1).map(String::as_str) {
        Some("__shim") => std::process::exit(shim::shim_main(&PathBuf::from(args.get(2).cloned().unwrap_or_default()))),
        Some("__init") => std::process::exit(shim::init_main(&PathBuf::from(args.get(2).cloned().unwrap_or_default()))),
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    if args.get(1).map(String::as_str) == Some("reset") {
        let f = ResetFlags::parse_from(args.iter().skip(1));
        return rt.block_on(reset(f));
    }
    let flags = Flags::parse();
    rt.block_on(run(flags))
}

async fn reset(f: ResetFlags) -> anyhow::Result<()> {
    let cfg = LinuxConfig {
        root_dir: f.root_dir.clone(),
        bridge: f.bridge_name,
        pod_cidr: f.pod_cidr.map(|c| c.parse()).transpose()?,
        node_ip: "127.0.0.1".into(),
        cgroup_base: "/sys/fs/cgroup".into(),
        cgroup_root: f.cgroup_root,
        self_exe: std::env::current_exe()?,
        log_max_size: 1 << 20,
        log_max_files: 1,
        default_path: String::new(),
        pids_limit: None,
    };
    let runtime = LinuxRuntime::new(cfg, Arc::new(SystemClock)).await?;
    runtime.reset().await;
    let _ = std::fs::remove_dir_all(&f.root_dir);
    Ok(())
}

async fn run(f: Flags) -> anyhow::Result<()> {
    let client = keel_component::client::from_kubeconfig(&f.kubeconfig).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let simulated = f.simulated_nodes.is_some() || f.runtime == "simulated";
    let count = f.simulated_nodes.unwrap_or(1).max(1);
    let base_name = f.hostname_override.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "keel-node".into())
    });
    // Several kubelets on one machine (keel up) listen on their own loopback address: that is
    // the address the apiserver must reach them on, so it is the node's InternalIP too.
    let node_ip = f
        .node_ip
        .map(|i| i.to_string())
        .or_else(|| f.address.parse::<Ipv4Addr>().ok().filter(|a| !a.is_unspecified()).map(|a| a.to_string()))
        .unwrap_or_else(first_ipv4);
    let eviction_memory = f
        .eviction_hard
        .split(',')
        .find_map(|t| t.strip_prefix("memory.available<"))
        .map(|q| memory_bytes(q).context("--eviction-hard memory.available"))
        .transpose()?
        .unwrap_or(100 << 20);
    let pod_config = PodConfig {
        resync: duration("sync-frequency", &f.sync_frequency)?,
        backoff: BackoffConfig { initial: duration("restart-backoff", &f.restart_backoff)?, max: Duration::from_secs(300) },
    };
    let manifest_dir = f.pod_manifest_path.clone().or_else(|| Some(PathBuf::from("/etc/kubernetes/manifests")).filter(|p| p.is_dir()));
    std::fs::create_dir_all(&f.root_dir).with_context(|| format!("--root-dir {}", f.root_dir.display()))?;

    let feed = Feed::default();
    let selector = if simulated && count > 1 {
        "spec.nodeName!=".to_string()
    } else {
        format!("spec.nodeName={}", if simulated { format!("{base_name}-0") } else { base_name.clone() })
    };
    tokio::spawn(feed.clone().run(client.clone(), selector));

    let sim_range: Cidr = f.simulated_pod_range.parse()?;
    let registry = keel_component::metrics::shared();
    let metrics = keel_kubelet::metrics::Metrics::register(&mut registry.lock().unwrap_or_else(|e| e.into_inner()));
    let mut linux: Option<Arc<LinuxRuntime>> = None;
    let mut pod_loops = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut first_node: Option<Arc<Node>> = None;
    for i in 0..count {
        let name = if simulated { format!("{base_name}-{i}") } else { base_name.clone() };
        let (runtime, capacity, pod_cidr, runtime_version): (Arc<dyn Runtime>, Capacity, Option<String>, String) = if simulated {
            let cidr = Cidr { network: Ipv4Addr::from(u32::from(sim_range.network) + (i as u32) * 256), prefix: 24 };
            let cap = Capacity {
                cpu_millis: cpu_millis(&f.simulated_cpu).context("--simulated-cpu")?,
                memory: memory_bytes(&f.simulated_memory).context("--simulated-memory")?,
                ephemeral_storage: 100 << 30,
                pods: f.max_pods,
            };
            (
                Arc::new(SimulatedRuntime::new(clock.clone(), Ipam::new(cidr, None)?)),
                cap,
                Some(cidr.to_string()),
                "simulated://0.1.0".into(),
            )
        } else {
            let cfg = LinuxConfig {
                root_dir: f.root_dir.clone(),
                bridge: f.bridge_name.clone(),
                pod_cidr: f.pod_cidr.as_deref().map(str::parse).transpose()?,
                node_ip: node_ip.clone(),
                cgroup_base: "/sys/fs/cgroup".into(),
                cgroup_root: f.cgroup_root.clone(),
                self_exe: std::env::current_exe()?,
                log_max_size: memory_bytes(&f.container_log_max_size).context("--container-log-max-size")?,
                log_max_files: f.container_log_max_files,
                default_path: std::env::var("PATH")
                    .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
                pids_limit: f.pod_max_pids,
            };
            let rt = Arc::new(LinuxRuntime::new(cfg, clock.clone()).await?);
            linux = Some(rt.clone());
            (rt, host::capacity(&f.root_dir, f.max_pods), f.pod_cidr.clone(), "keel://0.1.0".into())
        };
        let degraded = runtime.features().degraded;
        if i == 0 {
            for d in &degraded {
                tracing::warn!("degraded: {d}");
            }
            if f.client_ca_file.is_none() && !simulated && f.port != 0 {
                tracing::warn!("no --client-ca-file: the kubelet's HTTPS server serves anyone who reaches it");
            }
        }
        let settings = NodeSettings {
            name: name.clone(),
            labels: labels(&f.node_labels)?,
            taints: taints(&f.register_with_taints)?,
            pod_cidr,
            address: node_ip.clone(),
            hostname: name.clone(),
            capacity,
            eviction_memory,
            kubelet_port: f.port,
            lease_duration: Duration::from_secs(f.node_lease_duration_seconds.max(4)),
            status_update: duration("node-status-update-frequency", &f.node_status_update_frequency)?,
            status_report: duration("node-status-report-frequency", &f.node_status_report_frequency)?,
            runtime_version,
            seed: i as u64,
        };
        let node = Arc::new(Node {
            name: name.clone(),
            client: client.clone(),
            runtime: runtime.clone(),
            clock: clock.clone(),
            events: Events::new(Some(client.clone()), &name, clock.clone()),
            config: pod_config,
            host_ip: node_ip.clone(),
            pods_dir: f.root_dir.join("pods"),
            allocatable: (capacity.cpu_millis, capacity.memory.saturating_sub(eviction_memory)),
            index: Arc::new(Mutex::new(BTreeMap::new())),
            metrics: metrics.clone(),
        });
        if first_node.is_none() {
            first_node = Some(node.clone());
        }
        let observed: Observations = Arc::new(Mutex::new(Observed { degraded, ..Default::default() }));
        let (c, s, o, ck) = (client.clone(), settings.clone(), observed.clone(), clock.clone());
        let ps = PodsSettings {
            manifest_dir: if simulated { None } else { manifest_dir.clone() },
            file_check: duration("file-check-frequency", &f.file_check_frequency)?,
            eviction_interval: Duration::from_secs(10),
            eviction_memory,
            memory_capacity: capacity.memory,
            host_memory: !simulated,
            root_dir: f.root_dir.clone(),
            stop_pods_on_shutdown: f.stop_pods_on_shutdown,
        };
        let feed = feed.clone();
        let mut stop = stop_rx.clone();
        pod_loops.push(tokio::spawn(async move {
            let uid = loop {
                match agent::register(&c, &s).await {
                    Ok(uid) => break uid,
                    Err(e) => {
                        tracing::warn!(node = %s.name, error = %e, "registering the node; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            };
            tokio::spawn(agent::lease_loop(c.clone(), s.clone(), uid, ck.clone()));
            tokio::spawn(agent::status_loop(c.clone(), s.clone(), o.clone(), ck));
            pods::run(node, feed, ps, o, async move {
                let _ = stop.wait_for(|v| *v).await;
            })
            .await;
        }));
    }

    let health = keel_component::health::Health::new();
    health.set_ready(true);
    if let (Some(node), true) = (first_node, f.port != 0) {
        let listener = tokio::net::TcpListener::bind((f.address.as_str(), f.port))
            .await
            .with_context(|| format!("listen on {}:{}", f.address, f.port))?;
        let hosts = vec![node.name.clone(), node_ip.clone(), "localhost".into(), "127.0.0.1".into()];
        let cert = match (&f.tls_cert_file, &f.tls_private_key_file) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let tls = server::tls(cert, f.client_ca_file.as_deref(), &hosts)?;
        let base = keel_component::serve::router(health, registry);
        // Simulated nodes have no logs or exec to serve: only the health and metrics endpoints.
        let router = if simulated { base } else { server::router(Server { node, samples: Default::default() }, base) };
        let mut stop = stop_rx.clone();
        tokio::spawn(keel_component::serve::serve(listener, Some(tls), router, async move {
            let _ = stop.wait_for(|v| *v).await;
        }));
    }
    keel_component::shutdown::signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for l in pod_loops {
        let _ = tokio::time::timeout(Duration::from_secs(60), l).await;
    }
    if let (true, Some(rt)) = (f.stop_pods_on_shutdown, linux) {
        rt.reset().await;
    }
    Ok(())
}
