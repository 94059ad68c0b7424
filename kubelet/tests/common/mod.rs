//! Shared pieces of the kubelet's black-box tests: a kubelet started with test-unique host
//! names (bridge, cgroup folder, pod CIDR, root dir) and a guard that removes everything it
//! left on the host (`keel-kubelet reset`), certificates for the kubelet's HTTPS server and its
//! client, and a WebSocket exec client.
#![allow(dead_code, clippy::disallowed_methods)]

use keel_testkit::{Cluster, bin};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What one test's kubelet uses on the host.
pub struct Host {
    /// `--root-dir`.
    pub root: PathBuf,
    /// `--bridge-name`.
    pub bridge: String,
    /// `--cgroup-root`.
    pub cgroup: String,
    /// `--pod-cidr`.
    pub cidr: String,
    /// The CIDR's first three octets, for checks.
    pub prefix: String,
    _dir: tempfile::TempDir,
}

impl Host {
    /// Unique per process and `idx`.
    pub fn new(idx: u32) -> Host {
        let pid = std::process::id();
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = format!("10.{}.{}", 240 + idx, pid % 250);
        Host {
            root: dir.path().join("root"),
            bridge: format!("kt{}x{idx}", pid % 100_000),
            cgroup: format!("keel-test-{pid}-{idx}"),
            cidr: format!("{prefix}.0/24"),
            prefix,
            _dir: dir,
        }
    }

    /// A folder of this host's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        let p = self._dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// The kubelet flags for this host.
    pub fn flags(&self, node: &str, port: u16, certs: &Certs, manifests: &Path) -> Vec<String> {
        [
            "--hostname-override",
            node,
            "--node-ip",
            "127.0.0.1",
            "--pod-cidr",
            &self.cidr,
            "--bridge-name",
            &self.bridge,
            "--cgroup-root",
            &self.cgroup,
            "--root-dir",
            &self.root.to_string_lossy(),
            "--address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--sync-frequency",
            "500ms",
            "--restart-backoff",
            "1s",
            "--node-status-update-frequency",
            "1s",
            "--pod-manifest-path",
            &manifests.to_string_lossy(),
            "--file-check-frequency",
            "1s",
            "--tls-cert-file",
            &certs.server_cert.to_string_lossy(),
            "--tls-private-key-file",
            &certs.server_key.to_string_lossy(),
            "--client-ca-file",
            &certs.ca_cert.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::process::Command::new(bin("keel-kubelet"))
            .args(["reset", "--root-dir"])
            .arg(&self.root)
            .args(["--cgroup-root", &self.cgroup, "--bridge-name", &self.bridge, "--pod-cidr", &self.cidr])
            .status();
    }
}

/// A CA, the kubelet's serving certificate, and a client certificate (as the apiserver's
/// `--kubelet-client-certificate` would be), as PEM files.
pub struct Certs {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Certs {
    pub fn new(dir: &Path) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "keel-test-ca");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params")
            .signed_by(&server_key, &issuer)
            .expect("server cert");
        let client_key = KeyPair::generate().expect("key");
        let mut cp = CertificateParams::new(Vec::<String>::new()).expect("params");
        cp.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        let client = cp.signed_by(&client_key, &issuer).expect("client cert");
        let w = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("write pem");
            p
        };
        Certs {
            ca_cert: w("ca.crt", ca.pem()),
            server_cert: w("server.crt", server.pem()),
            server_key: w("server.key", server_key.serialize_pem()),
            client_cert: w("client.crt", client.pem()),
            client_key: w("client.key", client_key.serialize_pem()),
            ca_pem: ca.pem(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// curl against the kubelet with the client certificate: (status, body).
    pub fn curl(&self, port: u16, path: &str, extra: &[&str]) -> (u16, String) {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20", "--cacert"])
            .arg(&self.ca_cert)
            .arg("--cert")
            .arg(&self.client_cert)
            .arg("--key")
            .arg(&self.client_key)
            .args(extra)
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = s.rsplit_once('\n').unwrap_or((&s, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// curl without a client certificate: its exit code (35/56: the handshake was refused).
    pub fn curl_anonymous(&self, port: u16, path: &str) -> i32 {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "10", "--cacert"])
            .arg(&self.ca_cert)
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .status()
            .map(|s| s.code().unwrap_or(-1))
            .unwrap_or(-1)
    }

    /// Runs `command` through the kubelet's `/exec` over WebSocket (v5.channel.k8s.io): stdout,
    /// stderr and the Status JSON of channel 3.
    pub async fn exec(&self, port: u16, ns: &str, pod: &str, container: &str, command: &[&str]) -> (String, String, String) {
        use futures::{SinkExt, StreamExt};
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("ca")).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![CertificateDer::from_pem_slice(self.client_cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes()).expect("key");
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client auth");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("tls");
        let enc = |s: &str| {
            s.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        };
        let q: String = command.iter().map(|c| format!("command={}", enc(c))).collect::<Vec<_>>().join("&");
        let url = format!("wss://127.0.0.1:{port}/exec/{ns}/{pod}/{container}?{q}&stdout=1&stderr=1");
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().expect("header"));
        let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.expect("websocket");
        assert_eq!(resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some("v5.channel.k8s.io"));
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
        let read = async {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Binary(b) = m {
                    match b.first() {
                        Some(1) => out.extend_from_slice(&b[1..]),
                        Some(2) => err.extend_from_slice(&b[1..]),
                        Some(3) => status.extend_from_slice(&b[1..]),
                        _ => {}
                    }
                }
            }
            let _ = ws.close(None).await;
        };
        tokio::time::timeout(Duration::from_secs(30), read).await.expect("exec finished");
        let _ = ws.send(Message::Close(None)).await;
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
            String::from_utf8_lossy(&status).into_owned(),
        )
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `kubectl get <what> -o jsonpath=<path>`, empty on error.
pub fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args: Vec<&str> = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &jp]);
    let out = c.kubectl(&args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` up to `secs` seconds; panics with the cluster's logs when it never holds.
pub fn wait_for<T>(c: &Cluster, secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
    match keel_testkit::eventually(Duration::from_secs(secs), f) {
        Some(v) => v,
        None => panic!("timed out waiting for {what}\n{}", c.logs()),
    }
}
