//! Multi-member clusters of real `keel-store` processes on loopback: each member has fixed
//! client and peer ports for its whole life (restarts included), and is stopped by PID when the
//! test ends.

use super::{BIN, free_addrs};
use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::{MemberListRequest, RangeRequest, StatusRequest};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// One member of a test cluster.
pub struct Node {
    pub name: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub extra: Vec<String>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }
    pub fn peer_url(&self) -> String {
        format!("http://{}", self.peer)
    }
    pub fn endpoint(&self) -> String {
        self.client.to_string()
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(format!("{}.etcd", self.name))
    }
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Start the process with `cluster_args` (omitted on restarts with data).
    pub fn spawn(&mut self, cluster_args: &[String]) {
        self.spawn_env(cluster_args, &[]);
    }

    /// Start the process with `cluster_args` and `ETCD_*` variables.
    pub fn spawn_env(&mut self, cluster_args: &[String], env: &[(String, String)]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log");
        let child = Command::new(BIN)
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen-client-urls", &self.url(), "--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &self.peer_url(), "--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--logger", "capnslog"])
            .args(cluster_args)
            .args(&self.extra)
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn keel-store");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([sig, &self.pid().to_string()]).status();
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("url")
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy()
    }

    pub async fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel().await)
    }
}

/// A cluster of N members started together with `--initial-cluster-state new`.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Start `n` members, each with `extra` flags, and wait for a leader.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Each member on its own loopback address (and peers dial from it), so a test can cut
        // one member off by address.
        let addrs: Vec<Vec<SocketAddr>> = (0..n).map(|_| free_addrs(2)).collect();
        let nodes: Vec<Node> = (1..=n)
            .map(|i| Node {
                name: format!("m{i}"),
                client: addrs[i - 1][0],
                peer: addrs[i - 1][1],
                dir: tmp.path().to_path_buf(),
                child: None,
                extra: extra.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        let mut c = Cluster { nodes, _tmp: tmp };
        let args = c.new_cluster_args();
        for node in &mut c.nodes {
            node.spawn(&args);
        }
        c.wait_leader(Duration::from_secs(20)).await;
        c.wait_published(Duration::from_secs(20)).await;
        c
    }

    /// Wait until every running member has published its name and client URLs.
    pub async fn wait_published(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let want = self.nodes.iter().filter(|n| n.running()).count();
        loop {
            let Some(i) = self.nodes.iter().position(|n| n.running()) else { return };
            let mut cl = ClusterClient::new(self.nodes[i].channel().await);
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), cl.member_list(MemberListRequest::default())).await {
                let started = r.into_inner().members.iter().filter(|m| !m.name.is_empty() && !m.client_ur_ls.is_empty()).count();
                if started >= want {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "members did not publish themselves:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A cluster with no members (a placeholder while a test moves the real one).
    pub fn empty() -> Cluster {
        Cluster { nodes: Vec::new(), _tmp: tempfile::tempdir().expect("tempdir") }
    }

    /// `--initial-cluster …` for every member.
    pub fn new_cluster_args(&self) -> Vec<String> {
        let ic: Vec<String> = self.nodes.iter().map(|n| format!("{}={}", n.name, n.peer_url())).collect();
        vec!["--initial-cluster".into(), ic.join(","), "--initial-cluster-state".into(), "new".into()]
    }

    /// Add a member (not started) with fresh ports.
    pub fn add_node(&mut self, name: &str) -> usize {
        let dir = self.nodes[0].dir.clone();
        let extra = self.nodes[0].extra.clone();
        let taken: Vec<SocketAddr> = self.nodes.iter().flat_map(|n| [n.client, n.peer]).collect();
        let mut fresh = free_addrs(2 + taken.len()).into_iter().filter(|a| !taken.contains(a));
        let (client, peer) = (fresh.next().expect("port"), fresh.next().expect("port"));
        self.nodes.push(Node { name: name.into(), client, peer, dir, child: None, extra });
        self.nodes.len() - 1
    }

    /// Every client endpoint, comma separated (for etcdctl).
    pub fn endpoints(&self) -> String {
        self.nodes.iter().filter(|n| n.running()).map(|n| n.endpoint()).collect::<Vec<_>>().join(",")
    }

    /// Status of one member, if it answers.
    pub async fn status(&self, i: usize) -> Option<keel_proto::etcdserverpb::StatusResponse> {
        let mut m = MaintenanceClient::new(self.nodes[i].channel().await);
        let call = m.status(StatusRequest {});
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    /// Wait until member `i` answers Status (after a start or restart).
    pub async fn wait_up(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.status(i).await.is_none() {
            assert!(Instant::now() < deadline, "{} did not come up:\n{}", self.nodes[i].name, self.nodes[i].log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the member that leads, as running members agree.
    pub async fn leader(&self) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.running() {
                continue;
            }
            if let Some(s) = self.status(i).await {
                let id = s.header.as_ref().map_or(0, |h| h.member_id);
                if s.leader != 0 && s.leader == id {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Wait until some member leads and a linearizable read through it succeeds (which needs
    /// a quorum; no write, so revisions start where a fresh etcd's do).
    pub async fn wait_leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.leader().await {
                let mut kv = self.nodes[i].kv().await;
                let read = kv.range(RangeRequest { key: "__ready".into(), ..Default::default() });
                if tokio::time::timeout(Duration::from_secs(2), read).await.is_ok_and(|r| r.is_ok()) {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {limit:?}:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Serializable count of keys under `prefix` on member `i`.
    pub async fn count_local(&self, i: usize, prefix: &str) -> Option<i64> {
        let mut kv = self.nodes[i].kv().await;
        let req = RangeRequest {
            key: prefix.to_string().into(),
            range_end: prefix_end(prefix).into(),
            count_only: true,
            serializable: true,
            ..Default::default()
        };
        kv.range(req).await.ok().map(|r| r.into_inner().count)
    }

    /// The last lines of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let log = n.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            s.push_str(&format!("--- {} ---\n", n.name));
            for l in tail.iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// The key after every key with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    keel_store::mvcc::prefix_end(prefix.as_bytes()).to_vec()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in &mut self.nodes {
            if n.running() {
                n.signal("-CONT");
            }
            n.kill9();
        }
    }
}
