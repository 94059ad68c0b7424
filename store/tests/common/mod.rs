//! Test harness: real `keel-store` processes on loopback, started the way users start them,
//! and stopped by PID when the test ends (also when it panics).
#![allow(dead_code)]
// Tests drive real processes on the real clock; the determinism seam is for the store itself.
#![allow(clippy::disallowed_methods)]

use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

pub mod cluster;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_keel-store");

/// A free loopback port (the OS picks it; the listener is closed before the member binds).
pub fn free_addr() -> SocketAddr {
    free_addrs(1)[0]
}

/// `n` distinct free loopback addresses (all held open while choosing, so none repeats). Each
/// call picks a random address in 127.1.0.0–127.255.255.255, so members of tests running side
/// by side never reach for the same address and port, whatever the kernel hands out.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let r = h.finish();
    let ip = std::net::Ipv4Addr::new(127, 1 + (r % 255) as u8, (r >> 8) as u8, 1 + ((r >> 16) % 254) as u8);
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind((ip, 0)).expect("bind an ephemeral port")).collect();
    held.iter().map(|l| l.local_addr().expect("local addr")).collect()
}

/// One member process.
pub struct Member {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Member {
    /// Start a member in a fresh temporary data dir.
    pub fn start(extra: &[&str]) -> Member {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut m = Member::start_in(tmp.path(), free_addrs(1)[0], extra);
        m._tmp = Some(tmp);
        m
    }

    /// Start a member with its data under `dir` on `addr`.
    pub fn start_in(dir: &Path, addr: SocketAddr, extra: &[&str]) -> Member {
        let peer = free_addrs(2).into_iter().find(|p| *p != addr).expect("a peer port");
        let mut m = Member {
            child: None,
            addr,
            peer,
            data_dir: dir.join("member.etcd"),
            log: dir.join("member.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
        };
        m.spawn();
        m
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `host:port`, as etcdctl's `--endpoints` takes it.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let peer = self.peer;
        let child = Command::new(BIN)
            .args(["--name", "test", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.url(), "--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &format!("http://{peer}"), "--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("test=http://{peer}"), "--logger", "capnslog"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn keel-store");
        self.child = Some(child);
        self.wait_ready();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let starts = self.log_text().matches("ready to serve client requests").count();
        loop {
            if self.log_text().matches("ready to serve client requests").count() > starts {
                // The listener is bound before the line is logged; make sure it accepts.
                if TcpStream::connect(self.addr).is_ok() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("keel-store exited with {status} before it was ready:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "keel-store not ready after 30 s:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9` the process and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("keel-store did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the process again on the same data dir and address.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// A gRPC channel to the member.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("url")
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect")
    }

    pub async fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel().await).max_encoding_message_size(8 << 20)
    }

    pub async fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel().await)
    }

    pub async fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel().await)
    }

    pub async fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel().await)
    }

    /// A plain HTTP/1.1 request; returns (status, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.http_with(method, path, &[], body)
    }

    /// A plain HTTP/1.1 request with extra headers; returns (status, body).
    pub fn http_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
        (status, body)
    }
}

/// Decode an HTTP/1.1 chunked body.
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            out.push_str(&rest[..rest.len().min(n)]);
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.kill9();
    }
}

/// `bytes::Bytes` from a str.
pub fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}
