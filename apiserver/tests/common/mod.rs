//! Test harness: a real `keel-store` member and a real `keel-apiserver` on loopback, started
//! the way users start them, driven with the installed `kubectl` (and `curl` for raw HTTP), and
//! stopped by PID when the test ends (also when it panics).
#![allow(dead_code)]
// Tests wait on the real clock for real processes.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The apiserver under test.
pub const APISERVER: &str = env!("CARGO_BIN_EXE_keel-apiserver");

/// The store binary, built by `cargo build --workspace` next to the apiserver.
pub fn store_bin() -> PathBuf {
    let p = Path::new(APISERVER).with_file_name("keel-store");
    assert!(p.exists(), "{} is missing: build the workspace first (cargo build --workspace)", p.display());
    p
}

/// `n` free ports on one random loopback address (so tests side by side never collide).
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let r = h.finish();
    let ip = Ipv4Addr::new(127, 1 + (r % 255) as u8, (r >> 8) as u8, 1 + ((r >> 16) % 254) as u8);
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind((ip, 0)).expect("bind an ephemeral port")).collect();
    held.iter().map(|l| l.local_addr().expect("local addr")).collect()
}

fn wait_port(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}: {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which store the apiserver talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A keel-store member.
    Keel,
    /// The real etcd (Debian's etcd-server, `etcd` on the PATH).
    Etcd,
}

/// A store member and an apiserver in front of it.
pub struct Cluster {
    store: Option<Child>,
    api: Option<Child>,
    /// The apiserver's HTTPS address.
    pub https: SocketAddr,
    /// The apiserver's plain-HTTP development address.
    pub http: SocketAddr,
    /// The store's client address.
    pub store_addr: SocketAddr,
    /// The kubeconfig the apiserver wrote.
    pub kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts both and waits until kubectl can talk to the apiserver.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// [`Cluster::start`] with extra apiserver flags.
    pub fn start_with(api_flags: &[&str]) -> Cluster {
        Cluster::start_on(Backend::Keel, api_flags)
    }

    /// Starts `backend` and an apiserver (with `api_flags`) in front of it.
    pub fn start_on(backend: Backend, api_flags: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = free_addrs(4);
        let (store_addr, peer, https, http) = (a[0], a[1], a[2], a[3]);
        let store_log = dir.path().join("store.log");
        let program = match backend {
            Backend::Keel => store_bin(),
            Backend::Etcd => PathBuf::from("etcd"),
        };
        let store = Command::new(program)
            .args(["--name", "s1", "--data-dir"])
            .arg(dir.path().join("store"))
            .args(["--listen-client-urls", &format!("http://{store_addr}"), "--advertise-client-urls", &format!("http://{store_addr}")])
            .args(["--listen-peer-urls", &format!("http://{peer}"), "--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("s1=http://{peer}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&store_log).expect("store log"))
            .spawn()
            .expect("start the store (keel-store, or etcd from Debian's etcd-server)");
        let mut c = Cluster { store: Some(store), api: None, https, http, store_addr, kubeconfig: dir.path().join("kubeconfig"), dir };
        wait_port(store_addr, "keel-store", &store_log);
        let api_log = c.dir.path().join("apiserver.log");
        let api = Command::new(APISERVER)
            .args(["--etcd-servers", &format!("http://{store_addr}")])
            .args(["--bind-address", &https.ip().to_string(), "--secure-port", &https.port().to_string()])
            .args(["--insecure-port", &http.port().to_string()])
            .arg("--data-dir")
            .arg(c.dir.path().join("apiserver"))
            .arg("--write-kubeconfig")
            .arg(&c.kubeconfig)
            .args(api_flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&api_log).expect("apiserver log"))
            .spawn()
            .expect("start keel-apiserver");
        c.api = Some(api);
        wait_port(https, "keel-apiserver", &api_log);
        // The plain port listens on 127.0.0.1 only.
        wait_port(SocketAddr::from(([127, 0, 0, 1], http.port())), "keel-apiserver (http)", &api_log);
        c
    }

    /// Runs kubectl with this cluster's kubeconfig (and a private discovery cache).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    /// kubectl with `stdin` piped in.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(self.dir.path().join("kube-cache")).args(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl (is it installed?)");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).expect("write kubectl stdin");
        }
        wait_timeout(child, Duration::from_secs(60), "kubectl")
    }

    /// kubectl that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// kubectl that must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should have failed: {}", text(&out.stdout));
        text(&out.stderr)
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let out = self.kubectl_in(&args, Some(yaml));
        assert!(out.status.success(), "kubectl apply failed: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// A raw HTTP request on the plain port (curl): status code and body.
    pub fn http(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.http.port());
        let body_file = self.dir.path().join("body");
        std::fs::write(&body_file, body).expect("write body");
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", &format!("Content-Type: {content_type}")]);
        if !body.is_empty() {
            cmd.arg("--data-binary").arg(format!("@{}", body_file.display()));
        }
        cmd.arg(url).stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = wait_timeout(cmd.spawn().expect("run curl"), Duration::from_secs(30), "curl");
        let s = text(&out.stdout);
        let (body, code) = s.rsplit_once('\n').unwrap_or((&s, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Starts kubectl in the background (e.g. `get -w`); it is stopped with the cluster.
    pub fn spawn_kubectl(&self, args: &[&str], out: &Path) -> Child {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdout(std::fs::File::create(out).expect("watch output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("run kubectl")
    }

    /// A file in the cluster's temporary folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn wait_timeout(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collect output"),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!("{what} hung: {}{}", text(&out.stdout), text(&out.stderr));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in [self.api.take(), self.store.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `f` until it returns Some, for up to `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
