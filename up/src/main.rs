//! `keel`: the whole local Keel cluster in one command.
//!
//! `keel up` runs the seed's HA picture on one machine (see [`plan`]): N keel-store members on
//! 127.0.0.1…N, a keel-apiserver per member address behind a TCP load balancer on
//! 127.0.0.1:6443, and a scheduler, controller-manager and kubelet per member address (the
//! scheduler and controller-manager leader-elected). It supervises them ([`supervise`]: a part
//! that dies is started again) and stops them all on Ctrl-C. `keel status` shows each part, its
//! address, its health and who leads ([`status`]).
//!
//! Modules: [`plan`] (what runs where, pure), [`identity`] (the client CA and every part's
//! kubeconfig), [`supervise`] (processes), [`balancer`] (the TCP load balancer), [`status`]
//! (`keel status`).
#![allow(clippy::disallowed_methods)] // a command-line tool: it waits on the real clock

/// `eprintln!` that never panics: keel up's stderr may be a pipe whose reader is gone (a test
/// that failed, a closed terminal), and a panic then would leave every part it started running.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// `println!` that never panics, for the same reason.
macro_rules! tell {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod balancer;
mod identity;
mod plan;
mod status;
mod supervise;

use plan::{Options, Role, Spec};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use supervise::Running;

const USAGE: &str = "Usage: keel up [--data-dir DIR] [--members N] [--no-control-plane] [--simulated-nodes N] [-- extra keel-store flags]
       keel status [--data-dir DIR]

keel up starts N (default 3) keel-store members on 127.0.0.1..N (client port 2379, peer port
2380), a keel-apiserver on each member address (port 6444) behind a load balancer on
https://127.0.0.1:6443, and a keel-scheduler, keel-controller-manager and keel-kubelet on each
member address (with --simulated-nodes, one kubelet hosting that many simulated nodes instead),
with data and logs under DIR (default ./keel-data) and an admin kubeconfig at DIR/kubeconfig.
A part that exits is started again. Ctrl-C stops everything. Restarting with the same DIR
continues the same cluster. --no-control-plane runs the store members only.

keel status shows every part of the cluster keel up runs in DIR: address, pid, health, leader.";

fn parse(args: &[String]) -> Result<(String, Options), String> {
    let mut o =
        Options { data_dir: PathBuf::from("keel-data"), members: 3, control_plane: true, simulated_nodes: None, store_flags: Vec::new() };
    let mut it = args.iter();
    let command = match it.next().map(String::as_str) {
        Some(c @ ("up" | "status")) => c.to_string(),
        Some("-h" | "--help" | "help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => o.data_dir = it.next().ok_or("--data-dir needs a value")?.into(),
            "--members" => {
                o.members = it.next().and_then(|n| n.parse().ok()).filter(|n| (1..=9).contains(n)).ok_or("--members takes 1 to 9")?
            }
            "--no-control-plane" | "--no-apiserver" => o.control_plane = false,
            "--simulated-nodes" => {
                o.simulated_nodes = Some(
                    it.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or("--simulated-nodes takes 1 to 10000")?,
                )
            }
            "--" if command == "up" => o.store_flags = it.by_ref().cloned().collect(),
            other => return Err(format!("unknown flag {other:?}\n\n{USAGE}")),
        }
    }
    Ok((command, o))
}

fn bin_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default()
}

/// Waits up to `limit` for `addr` to accept connections.
async fn wait_listening(addr: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Every kubeconfig (admin and one per part), pointed at the balancer and trusting the
/// serving CA the first apiserver made in the shared certificate folder.
fn write_kubeconfigs(o: &Options, ca: &keel_access::pki::ClusterCa, parts: &[String]) -> Result<(), String> {
    let serving_ca = plan::cert_dir(&o.data_dir).join("ca.crt");
    let pem = std::fs::read_to_string(&serving_ca).map_err(|e| format!("reading {}: {e}", serving_ca.display()))?;
    identity::write_kubeconfigs(&o.data_dir, ca, &format!("https://127.0.0.1:{}", plan::BALANCER_PORT), &pem, parts)
}

async fn up(o: Options) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(&o.data_dir) {
        say!("keel: creating {}: {e}", o.data_dir.display());
        return ExitCode::FAILURE;
    }
    let bins = bin_dir();
    let specs = plan::plan(&o);
    let parts: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut procs: Vec<Running> = Vec::new();
    let ca = match o.control_plane.then(|| identity::ensure_ca(&o.data_dir)).transpose() {
        Ok(ca) => ca,
        Err(e) => {
            say!("keel: the client CA: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = o.control_plane.then(|| identity::ensure_service_account_key(&o.data_dir)).transpose() {
        say!("keel: the service account signing key: {e}");
        return ExitCode::FAILURE;
    }
    let stop = tokio::spawn(status::interrupted());
    let mut missing: Vec<&'static str> = Vec::new();
    for spec in specs {
        let program = bins.join(spec.role.program());
        if !program.exists() {
            if !missing.contains(&spec.role.program()) {
                missing.push(spec.role.program());
            }
            continue;
        }
        let (name, role, addr) = (spec.name.clone(), spec.role, spec.addr.clone());
        match Running::start(spec, &bins, &o.data_dir) {
            Ok(r) => procs.push(r),
            Err(e) => {
                say!("keel: starting {name}: {e}");
                supervise::stop_all(&mut procs).await;
                return ExitCode::FAILURE;
            }
        }
        // The members before anything that uses them; the first apiserver before the others
        // (it generates the certificates they share) and before the kubeconfig is written.
        let wait = match role {
            Role::Store if name == format!("m{}", o.members) => true,
            Role::Apiserver if name == "apiserver-1" => true,
            _ => false,
        };
        if wait && !wait_listening(&addr, Duration::from_secs(60)).await {
            say!("keel: {name} did not start listening on {addr}; see {}", o.data_dir.join(format!("{name}.log")).display());
        }
        if name == "apiserver-1"
            && let Some(ca) = &ca
        {
            if let Err(e) = write_kubeconfigs(&o, ca, &parts) {
                say!("keel: writing the kubeconfigs: {e}");
                supervise::stop_all(&mut procs).await;
                return ExitCode::FAILURE;
            }
            if !start_balancer(&o).await {
                supervise::stop_all(&mut procs).await;
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = status::record(&o.data_dir, &procs) {
        say!("keel: recording the cluster in {}: {e}", o.data_dir.display());
    }
    let endpoints: Vec<String> = (1..=o.members).map(|i| format!("{}:2379", plan::host(i))).collect();
    tell!("keel: {} members running, data and logs in {}", o.members, o.data_dir.display());
    tell!("keel: use  etcdctl --endpoints={} endpoint status -w table", endpoints.join(","));
    if o.control_plane {
        tell!(
            "keel: Kubernetes API on https://127.0.0.1:{} ({} apiservers behind it); use  kubectl --kubeconfig {} get nodes",
            plan::BALANCER_PORT,
            o.members,
            plan::kubeconfig(&o.data_dir).display()
        );
    }
    for m in &missing {
        say!("keel: {m} is not built next to keel ({}); not starting it (cargo build --workspace)", bins.display());
    }
    tell!("keel: keel status --data-dir {} shows every part; Ctrl-C stops the cluster", o.data_dir.display());
    while !stop.is_finished() {
        let now = tokio::time::Instant::now();
        let mut changed = false;
        for p in procs.iter_mut() {
            if let Some(line) = p.tend(now) {
                say!("{line}");
                changed = true;
            }
        }
        if changed && let Err(e) = status::record(&o.data_dir, &procs) {
            say!("keel: recording the cluster in {}: {e}", o.data_dir.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tell!("keel: stopping");
    supervise::stop_all(&mut procs).await;
    let _ = std::fs::remove_file(status::record_path(&o.data_dir));
    tell!("keel: stopped");
    ExitCode::SUCCESS
}

async fn start_balancer(o: &Options) -> bool {
    let backends: Vec<SocketAddr> =
        plan::plan(o).iter().filter(|s: &&Spec| s.role == Role::Apiserver).filter_map(|s| s.addr.parse().ok()).collect();
    match tokio::net::TcpListener::bind(("127.0.0.1", plan::BALANCER_PORT)).await {
        Ok(l) => {
            tokio::spawn(balancer::run(l, balancer::Backends::new(backends)));
            true
        }
        Err(e) => {
            say!("keel: binding the load balancer on 127.0.0.1:{}: {e}", plan::BALANCER_PORT);
            false
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, o) = match parse(&args) {
        Ok(p) => p,
        Err(msg) => {
            say!("{msg}");
            return if args.iter().any(|a| a == "-h" || a == "--help" || a == "help") { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    match command.as_str() {
        "status" => status::show(&o).await,
        _ => up(o).await,
    }
}
