//! `keel status`: every part `keel up` runs in a data folder — its address, PID, health — and
//! who leads: the store's Raft leader (each member's `/v3/maintenance/status` through the
//! JSON gateway) and the holders of the scheduler's and controller-manager's Leases.
//! `keel up` records what it started in `<data-dir>/keel-up.state` (removed when it stops).

use crate::plan::{self, Options, Role};
use crate::supervise::Running;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where `keel up` records its processes.
pub fn record_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keel-up.state")
}

/// Records name, role, address and PID of every process, one tab-separated line each.
pub fn record(data_dir: &Path, procs: &[Running]) -> std::io::Result<()> {
    let lines: Vec<String> =
        procs.iter().map(|p| format!("{}\t{}\t{}\t{}", p.spec.name, p.spec.role.program(), p.spec.addr, p.pid().unwrap_or(0))).collect();
    std::fs::write(record_path(data_dir), lines.join("\n") + "\n")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn interrupted() {
    keel_component::shutdown::signal().await;
}

/// One HTTP/1.1 request over plain TCP (the store's client port): status code and body.
async fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok().flatten()
}

/// A JSON field's value as text (`"leader":"123"` or `"leader":123`), for the gateway's answers.
fn field(json: &str, name: &str) -> Option<String> {
    let at = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = json[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"').to_string())
}

/// A kube client for `addr` over HTTPS without checking its certificate (components serve
/// self-signed ones), or for the balancer with the kubeconfig's checks when `addr` is None.
async fn kube_client(o: &Options, addr: Option<&str>) -> Option<kube::Client> {
    let mut config = keel_component::client::config(&plan::kubeconfig(&o.data_dir)).await.ok()?;
    if let Some(addr) = addr {
        config.cluster_url = format!("https://{addr}").parse().ok()?;
        config.accept_invalid_certs = true;
    }
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(2));
    kube::Client::try_from(config).ok()
}

/// `GET path` on a component's own HTTPS port: the body, or what went wrong.
async fn get(o: &Options, addr: &str, path: &str) -> Result<String, String> {
    let c = kube_client(o, Some(addr)).await.ok_or("no kubeconfig")?;
    let req = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(3), c.request_text(req)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(format!("unhealthy: {e}")),
        Err(_) => Err("no answer".into()),
    }
}

async fn healthz(o: &Options, addr: &str) -> String {
    get(o, addr, "/healthz").await.map(|b| b.trim().to_string()).unwrap_or_else(|e| e)
}

/// Whether a leader-elected component says it holds its Lease (kube's
/// `leader_election_master_status` gauge on its /metrics).
async fn leads(o: &Options, addr: &str) -> Option<bool> {
    let metrics = get(o, addr, "/metrics").await.ok()?;
    let line = metrics.lines().find(|l| l.starts_with("leader_election_master_status"))?;
    Some(line.trim_end().ends_with(" 1"))
}

async fn lease_holder(o: &Options, name: &str) -> String {
    use k8s_openapi::api::coordination::v1::Lease;
    let Some(c) = kube_client(o, None).await else { return "unknown (no kubeconfig)".into() };
    let leases: kube::Api<Lease> = kube::Api::namespaced(c, "kube-system");
    match tokio::time::timeout(Duration::from_secs(3), leases.get_opt(name)).await {
        Ok(Ok(Some(l))) => l.spec.and_then(|s| s.holder_identity).unwrap_or_else(|| "nobody".into()),
        Ok(Ok(None)) => "nobody yet".into(),
        Ok(Err(e)) => format!("unknown ({e})"),
        Err(_) => "unknown (no answer)".into(),
    }
}

fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// Prints the table.
pub async fn show(o: &Options) -> ExitCode {
    let Ok(state) = std::fs::read_to_string(record_path(&o.data_dir)) else {
        eprintln!("keel: no cluster is running in {} (keel up --data-dir {} starts one)", o.data_dir.display(), o.data_dir.display());
        return ExitCode::FAILURE;
    };
    println!("{:<22} {:<16} {:>8}  {:<7} HEALTH", "PART", "ADDRESS", "PID", "RUNNING");
    let mut store_leader = None;
    for line in state.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, program, addr, pid] = f[..] else { continue };
        let pid: u32 = pid.parse().unwrap_or(0);
        let health = if program == Role::Store.program() {
            let h = match http(addr, "GET", "/health", "").await {
                Some((200, b)) if b.contains(r#""health":"true""#) => "ok".to_string(),
                Some((_, b)) => format!("unhealthy: {}", b.trim()),
                None => "no answer".into(),
            };
            if let Some((200, s)) = http(addr, "POST", "/v3/maintenance/status", "{}").await {
                let (me, leader) = (field(&s, "member_id"), field(&s, "leader"));
                if me.is_some() && me == leader {
                    store_leader = Some(name.to_string());
                }
            }
            h
        } else if program == Role::Scheduler.program() || program == Role::ControllerManager.program() {
            let role = match leads(o, addr).await {
                Some(true) => ", leader",
                Some(false) => ", standby",
                None => "",
            };
            format!("{}{role}", healthz(o, addr).await)
        } else {
            healthz(o, addr).await
        };
        println!("{name:<22} {addr:<16} {pid:>8}  {:<7} {health}", if alive(pid) { "yes" } else { "no" });
    }
    println!();
    println!("store leader:              {}", store_leader.as_deref().unwrap_or("none (no quorum?)"));
    println!("scheduler leader:          {}", lease_holder(o, "kube-scheduler").await);
    println!("controller-manager leader: {}", lease_holder(o, "kube-controller-manager").await);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn gateway_fields_are_read_quoted_or_not() {
        let s = r#"{"header":{"cluster_id":"1","member_id":"42","revision":"7"},"version":"3.5.21","leader":"42","raftTerm":3}"#;
        assert_eq!(field(s, "member_id").as_deref(), Some("42"));
        assert_eq!(field(s, "leader").as_deref(), Some("42"));
        assert_eq!(field(s, "raftTerm").as_deref(), Some("3"));
        assert_eq!(field(s, "absent"), None);
    }
}
