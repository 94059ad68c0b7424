//! A test cluster: `members` store processes (keel-store, or the real etcd) on one loopback
//! address, `apiservers` keel-apiservers over all of them, and whatever components a test adds
//! with [`Cluster::spawn`]. Everything is stopped by PID when the cluster is dropped.

use crate::net::{free_addrs, wait_port};
use crate::proc::Proc;
use crate::{bin, text};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Which store the apiservers talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// keel-store members.
    Keel,
    /// The real etcd (Debian's etcd-server, `etcd` on the PATH).
    Etcd,
}

impl std::str::FromStr for Backend {
    type Err = String;

    /// `keel` or `etcd` (the benchmarks' `--backend`).
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "keel" => Ok(Backend::Keel),
            "etcd" => Ok(Backend::Etcd),
            other => Err(format!("--backend {other}: keel or etcd")),
        }
    }
}

/// How to start a [`Cluster`].
#[derive(Clone, Debug)]
pub struct Builder {
    members: usize,
    apiservers: usize,
    backend: Backend,
    apiserver_flags: Vec<String>,
    store_flags: Vec<String>,
    secure: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { members: 1, apiservers: 1, backend: Backend::Keel, apiserver_flags: Vec::new(), store_flags: Vec::new(), secure: false }
    }
}

impl Builder {
    /// Store members (default 1).
    pub fn members(mut self, n: usize) -> Self {
        self.members = n.max(1);
        self
    }

    /// Apiservers, each over every member (default 1; 0 starts only the store).
    pub fn apiservers(mut self, n: usize) -> Self {
        self.apiservers = n;
        self
    }

    /// keel-store or the real etcd.
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }

    /// Extra flags for every apiserver.
    pub fn apiserver_flags(mut self, flags: &[&str]) -> Self {
        self.apiserver_flags.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    /// Extra flags for every store member.
    pub fn store_flags(mut self, flags: &[&str]) -> Self {
        self.store_flags.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    /// Secured as `keel up` runs it: a client CA (`--client-ca-file`), `--authorization-mode
    /// Node,RBAC`, and an admin kubeconfig with a client certificate (`kubernetes-admin` in
    /// `system:masters`); other users come from [`Cluster::kubeconfig_for`].
    pub fn secure(mut self, on: bool) -> Self {
        self.secure = on;
        self
    }

    /// Starts the members, then the apiservers, and waits until each listens.
    pub fn start(self) -> Cluster {
        Cluster::start_from(self)
    }
}

/// One apiserver's addresses.
#[derive(Clone, Copy, Debug)]
pub struct ApiAddrs {
    /// HTTPS (the kubeconfig's server).
    pub https: SocketAddr,
    /// Plain HTTP on 127.0.0.1 (`--insecure-port`), for curl.
    pub http: SocketAddr,
}

/// Store members, apiservers and the components a test started, all real processes.
pub struct Cluster {
    /// Store members, in `--initial-cluster` order.
    pub stores: Vec<Proc>,
    /// Client addresses of the members (`http://` URLs are built from these).
    pub store_addrs: Vec<SocketAddr>,
    /// Apiservers.
    pub apiservers: Vec<Proc>,
    /// Their addresses, in the same order.
    pub api_addrs: Vec<ApiAddrs>,
    /// Components started with [`Cluster::spawn`].
    pub components: Vec<Proc>,
    /// The first apiserver's HTTPS address (the kubeconfig's server).
    pub https: SocketAddr,
    /// The first apiserver's plain-HTTP address.
    pub http: SocketAddr,
    /// The first store member's client address.
    pub store_addr: SocketAddr,
    /// The admin kubeconfig (written by the first apiserver, or, secured, with an admin client
    /// certificate).
    pub kubeconfig: PathBuf,
    /// The client CA of a secured cluster.
    ca: Option<keel_access::pki::ClusterCa>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// One keel-store member and one apiserver.
    pub fn start() -> Cluster {
        Builder::default().start()
    }

    /// How to start something bigger.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// One member and one apiserver with extra apiserver flags.
    pub fn start_with(api_flags: &[&str]) -> Cluster {
        Builder::default().apiserver_flags(api_flags).start()
    }

    /// One `backend` member and one apiserver with `api_flags`.
    pub fn start_on(backend: Backend, api_flags: &[&str]) -> Cluster {
        Builder::default().backend(backend).apiserver_flags(api_flags).start()
    }

    fn start_from(b: Builder) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs = free_addrs(2 * b.members + 2 * b.apiservers);
        let (store_part, api_part) = addrs.split_at(2 * b.members);
        let clients: Vec<SocketAddr> = store_part.iter().step_by(2).copied().collect();
        let peers: Vec<SocketAddr> = store_part.iter().skip(1).step_by(2).copied().collect();
        let initial = (0..b.members).map(|i| format!("s{}=http://{}", i + 1, peers[i])).collect::<Vec<_>>().join(",");
        let program = match b.backend {
            Backend::Keel => bin("keel-store"),
            Backend::Etcd => PathBuf::from("etcd"),
        };
        let mut stores = Vec::new();
        for i in 0..b.members {
            let name = format!("s{}", i + 1);
            let mut args: Vec<OsString> = vec!["--name".into(), name.clone().into(), "--data-dir".into(), dir.path().join(&name).into()];
            for (flag, v) in [
                ("--listen-client-urls", format!("http://{}", clients[i])),
                ("--advertise-client-urls", format!("http://{}", clients[i])),
                ("--listen-peer-urls", format!("http://{}", peers[i])),
                ("--initial-advertise-peer-urls", format!("http://{}", peers[i])),
                ("--initial-cluster", initial.clone()),
            ] {
                args.push(flag.into());
                args.push(v.into());
            }
            args.extend(b.store_flags.iter().map(OsString::from));
            let log = dir.path().join(format!("store-{}.log", i + 1));
            stores.push(Proc::start(&format!("store-{}", i + 1), &program, args, &log));
        }
        for (i, a) in clients.iter().enumerate() {
            wait_port(*a, "the store", stores[i].log_path());
        }
        let etcd_servers = clients.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(",");
        let mut apiservers = Vec::new();
        let mut api_addrs = Vec::new();
        let kubeconfig = dir.path().join("kubeconfig");
        let ca = b.secure.then(|| keel_access::pki::ClusterCa::generate("keel-test-client-ca").expect("a client CA"));
        let mut secure_flags: Vec<OsString> = Vec::new();
        if let Some(ca) = &ca {
            let ca_file = dir.path().join("client-ca.crt");
            std::fs::write(&ca_file, ca.cert_pem()).expect("write the client CA");
            secure_flags = vec!["--client-ca-file".into(), ca_file.into(), "--authorization-mode".into(), "Node,RBAC".into()];
        }
        for i in 0..b.apiservers {
            let (https, http) = (api_part[2 * i], api_part[2 * i + 1]);
            let mut args: Vec<OsString> = vec![
                "--etcd-servers".into(),
                etcd_servers.clone().into(),
                "--bind-address".into(),
                https.ip().to_string().into(),
                "--secure-port".into(),
                https.port().to_string().into(),
                "--insecure-port".into(),
                http.port().to_string().into(),
                "--data-dir".into(),
                dir.path().join(format!("apiserver-{}", i + 1)).into(),
            ];
            if i == 0 {
                args.push("--write-kubeconfig".into());
                args.push(kubeconfig.clone().into());
            } else {
                // Every apiserver serves with the first one's certificates, as apiservers behind
                // one load balancer do.
                let certs = dir.path().join("apiserver-1").join("certificates");
                args.push("--cert-dir".into());
                args.push(certs.into());
            }
            args.extend(secure_flags.iter().cloned());
            args.extend(b.apiserver_flags.iter().map(OsString::from));
            let log = dir.path().join(format!("apiserver-{}.log", i + 1));
            let p = Proc::start(&format!("apiserver-{}", i + 1), bin("keel-apiserver"), args, &log);
            wait_port(https, "keel-apiserver", &log);
            wait_port(SocketAddr::from(([127, 0, 0, 1], http.port())), "keel-apiserver (http)", &log);
            apiservers.push(p);
            api_addrs.push(ApiAddrs { https, http });
        }
        let first = api_addrs.first().copied().unwrap_or(ApiAddrs { https: clients[0], http: clients[0] });
        if let (Some(ca), false) = (&ca, apiservers.is_empty()) {
            let who = keel_access::pki::ClientIdentity::admin();
            std::fs::write(&kubeconfig, user_kubeconfig(dir.path(), ca, first.https, &who)).expect("write the admin kubeconfig");
        }
        Cluster {
            stores,
            store_addrs: clients.clone(),
            apiservers,
            api_addrs,
            components: Vec::new(),
            https: first.https,
            http: first.http,
            store_addr: clients[0],
            kubeconfig,
            ca,
            dir,
        }
    }

    /// A kubeconfig for `user` in `groups` (a client certificate from the cluster's CA), for
    /// `kubectl --kubeconfig` or [`Cluster::kubectl_with`]. Only on a [`Builder::secure`] cluster.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        let ca = self.ca.as_ref().expect("kubeconfig_for needs a cluster started with .secure(true)");
        let path = self.dir.path().join(format!("kubeconfig-{}", user.replace(':', "_")));
        let who = keel_access::pki::ClientIdentity::new(user, groups);
        std::fs::write(&path, user_kubeconfig(self.dir.path(), ca, self.https, &who)).expect("write a user kubeconfig");
        path
    }

    /// `--etcd-servers` for this cluster's members.
    pub fn etcd_servers(&self) -> String {
        self.store_addrs.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(",")
    }

    /// Starts workspace binary `name` with `args` (after `--kubeconfig <admin kubeconfig>` when
    /// `with_kubeconfig`), keeps it in [`Cluster::components`] and returns its index there.
    pub fn spawn(&mut self, name: &str, with_kubeconfig: bool, args: &[&str]) -> usize {
        let mut argv: Vec<OsString> = Vec::new();
        if with_kubeconfig {
            argv.push("--kubeconfig".into());
            argv.push(self.kubeconfig.clone().into());
        }
        argv.extend(args.iter().map(OsString::from));
        let n = self.components.len();
        let log = self.dir.path().join(format!("{name}-{n}.log"));
        self.components.push(Proc::start(&format!("{name}-{n}"), bin(name), argv, &log));
        n
    }

    /// A kube client for the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.client_config().await).expect("kube client")
    }

    /// The admin kubeconfig's client configuration, for a client built otherwise (say,
    /// without kube-client's `default_retry` of 429, 503 and 504).
    pub async fn client_config(&self) -> kube::Config {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kubeconfig")
    }

    /// Runs kubectl with this cluster's kubeconfig (and a private discovery cache).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    /// kubectl as someone else: with `kubeconfig` (from [`Cluster::kubeconfig_for`]).
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.run_kubectl(kubeconfig, args, None)
    }

    /// kubectl with `stdin` piped in.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_kubectl(&self.kubeconfig, args, stdin)
    }

    fn run_kubectl(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(kubeconfig).arg("--cache-dir").arg(self.dir.path().join("kube-cache")).args(args);
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

    /// A raw HTTP request on the first apiserver's plain port (curl): status code and body.
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

    /// Starts kubectl in the background (e.g. `get -w`), its stdout into `out`; the caller
    /// stops it (or it dies with the apiservers).
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

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for p in self.stores.iter().chain(&self.apiservers).chain(&self.components) {
            let log = p.log();
            let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            s.push_str(&format!("==== {} (last 40 lines)\n{tail}\n", p.name));
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Components first, then apiservers, then the store: each is a client of the next.
        self.components.clear();
        self.apiservers.clear();
        self.stores.clear();
    }
}

/// The kubeconfig text for `who` on the apiserver at `https`, trusting the first apiserver's
/// serving CA (every apiserver of a cluster serves with it).
fn user_kubeconfig(dir: &Path, ca: &keel_access::pki::ClusterCa, https: SocketAddr, who: &keel_access::pki::ClientIdentity) -> String {
    let serving_ca =
        std::fs::read_to_string(dir.join("apiserver-1").join("certificates").join("ca.crt")).expect("the apiserver's serving CA");
    let cert = ca.issue_client(who).expect("a client certificate");
    keel_component::kubeconfig::with_client_certificate(&format!("https://{https}"), &serving_ca, &who.user, &cert.cert_pem, &cert.key_pem)
}

/// Waits for `child` up to `limit`; kills it and panics if it hangs.
pub fn wait_timeout(mut child: Child, limit: Duration, what: &str) -> Output {
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
