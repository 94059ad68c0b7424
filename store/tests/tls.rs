//! TLS on both ports, through etcdctl and curl: a 3-member cluster whose peers talk over
//! `--peer-auto-tls` and whose clients must present a certificate signed by the trusted CA and
//! not revoked by the CRL; with auth on, the certificate's CN is the user.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{BIN, free_addrs};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The files a TLS test needs: CA, server certificate, client certificates (one revoked), CRL.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().to_string()
    }

    fn new(server_ips: &[String]) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca.distinguished_name.push(DnType::CommonName, "keel test CA");
        write("ca.pem", ca.self_signed(&ca_key).expect("ca").pem());
        let issuer = Issuer::new(ca, &ca_key);
        let leaf = |name: &str, cn: &str, sans: Vec<String>, serial: u64| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(sans).expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.serial_number = Some(SerialNumber::from(serial));
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            write(&format!("{name}.pem"), p.signed_by(&key, &issuer).expect("sign").pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        };
        let mut sans = server_ips.to_vec();
        sans.push("localhost".into());
        leaf("server", "keel", sans.clone(), 10);
        leaf("peer", "peer", sans.clone(), 11);
        leaf("intruder", "intruder", sans, 12);
        leaf("root", "root", Vec::new(), 20);
        leaf("revoked", "root", Vec::new(), 30);
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(30u64),
                revocation_time: rcgen::date_time_ymd(2026, 1, 2),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        write("crl.pem", crl.signed_by(&issuer).expect("crl").pem().expect("pem"));
        Pki { dir }
    }
}

/// One member process, stopped by PID when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!(
                "--- {} ---\n{}",
                self.log.display(),
                log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start member `name` with its data and log in `dir`, and `args` (URLs, TLS flags, …).
fn start(dir: &Path, name: &str, args: &[String]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(BIN)
        .args(["--name", name, "--logger", "capnslog", "--data-dir"])
        .arg(dir.join(format!("{name}.etcd")))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("spawn keel-store");
    Proc { child, log }
}

/// `--listen-…` and `--advertise-…` flags for a member on `client` and `peer`.
fn urls(client: &str, peer: &str, cluster: &str) -> Vec<String> {
    ["--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer]
        .into_iter()
        .chain(["--initial-advertise-peer-urls", peer, "--initial-cluster", cluster])
        .map(str::to_string)
        .collect()
}

fn spawn(dir: &Path, name: &str, client: SocketAddr, peer: SocketAddr, cluster: &str, pki: &Pki) -> Proc {
    let mut args = urls(&format!("https://{client}"), &format!("https://{peer}"), cluster);
    args.extend(["--peer-auto-tls", "--cert-file", &pki.path("server.pem"), "--key-file", &pki.path("server-key.pem")].map(String::from));
    args.extend(
        ["--trusted-ca-file", &pki.path("ca.pem"), "--client-cert-auth", "--client-crl-file", &pki.path("crl.pem")].map(String::from),
    );
    start(dir, name, &args)
}

/// etcdctl with `args`; (success, stdout, stderr).
fn etcdctl(args: &[&str]) -> (bool, String, String) {
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--dial-timeout", "3s", "--command-timeout", "10s"])
        .args(args)
        .output()
        .expect("etcdctl (apt-get install etcd-client)");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
}

/// etcdctl over TLS with the given certificate (`None`: no client certificate).
fn ctl(pki: &Pki, endpoints: &str, cert: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let (ca, cert_file, key_file) =
        (pki.path("ca.pem"), cert.map(|c| pki.path(&format!("{c}.pem"))), cert.map(|c| pki.path(&format!("{c}-key.pem"))));
    let mut all = vec!["--endpoints", endpoints, "--cacert", &ca];
    if let (Some(c), Some(k)) = (&cert_file, &key_file) {
        all.extend(["--cert", c.as_str(), "--key", k.as_str()]);
    }
    all.extend(args);
    etcdctl(&all)
}

#[test]
fn three_members_with_peer_auto_tls_and_client_certificates() {
    let addrs: Vec<Vec<SocketAddr>> = (0..3).map(|_| free_addrs(2)).collect();
    let ips: Vec<String> = addrs.iter().map(|a| a[0].ip().to_string()).collect();
    let pki = Pki::new(&ips);
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("m{i}=https://{}", a[1])).collect();
    let cluster = cluster.join(",");
    let procs: Vec<Proc> = addrs.iter().enumerate().map(|(i, a)| spawn(dir.path(), &format!("m{i}"), a[0], a[1], &cluster, &pki)).collect();
    let endpoints: Vec<String> = addrs.iter().map(|a| format!("https://{}", a[0])).collect();
    let all = endpoints.join(",");

    // Up when every member answers a linearizable read over TLS.
    let until = Instant::now() + Duration::from_secs(40);
    while !endpoints.iter().all(|ep| ctl(&pki, ep, Some("root"), &["get", "ready"]).0) {
        assert!(Instant::now() < until, "the TLS cluster did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    for p in &procs {
        let log = std::fs::read_to_string(&p.log).expect("log");
        assert!(log.contains("serving peer traffic securely") && log.contains("serving client traffic securely"), "{log}");
        assert!(!log.contains("insecurely"), "{log}");
    }
    // Writes through one member, reads through every other.
    let (okay, out, err) = ctl(&pki, &endpoints[0], Some("root"), &["put", "secret", "v1"]);
    assert!(okay && out.trim() == "OK", "{out}{err}");
    for ep in &endpoints {
        let (okay, out, err) = ctl(&pki, ep, Some("root"), &["get", "secret", "--print-value-only"]);
        assert!(okay && out == "v1\n", "{ep}: {out}{err}");
    }
    let (okay, out, err) = ctl(&pki, &all, Some("root"), &["member", "list"]);
    assert!(okay && out.lines().count() == 3 && out.matches("https://").count() == 6, "{out}{err}");
    assert!(ctl(&pki, &all, Some("root"), &["endpoint", "health"]).0);
    // Commands that dial each endpoint on its own send the https:// URL as the HTTP/2 authority.
    let (okay, out, err) = ctl(&pki, &endpoints[0], Some("root"), &["endpoint", "status", "--cluster"]);
    assert!(okay && out.lines().count() == 3, "{out}{err}");
    let (okay, out, err) = ctl(&pki, &endpoints[1], Some("root"), &["endpoint", "hashkv", "--cluster"]);
    assert!(okay && out.lines().count() == 3, "{out}{err}");
    let (okay, out, err) = ctl(&pki, &all, Some("root"), &["defrag"]);
    assert!(okay && out.matches("Finished defragmenting etcd member[https://").count() == 3, "{out}{err}");
    let snap = dir.path().join("tls-snap.db");
    let (okay, out, err) = ctl(&pki, &endpoints[2], Some("root"), &["snapshot", "save", snap.to_str().expect("path")]);
    assert!(okay && out.contains("Snapshot saved at"), "{out}{err}");

    // No client certificate, or a revoked one: the connection is refused.
    let (okay, _, err) = ctl(&pki, &endpoints[1], None, &["get", "secret"]);
    assert!(!okay, "served without a client certificate: {err}");
    let (okay, _, err) = ctl(&pki, &endpoints[1], Some("revoked"), &["get", "secret"]);
    assert!(!okay, "served a revoked certificate: {err}");
    let log = std::fs::read_to_string(&procs[1].log).expect("log");
    assert!(log.contains("rejected connection"), "{log}");
    assert!(log.contains("no certificates"), "the certificate-less client is refused for that:\n{log}");
    assert!(log.contains("Revoked"), "the revoked certificate is refused for being revoked:\n{log}");

    // The HTTP endpoints share the TLS listener.
    let curl = |cert: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "5", "--cacert", &pki.path("ca.pem")]);
        if let Some(cert) = cert {
            c.args(["--cert", &pki.path(&format!("{cert}.pem")), "--key", &pki.path(&format!("{cert}-key.pem"))]);
        }
        c.arg(format!("{}/health", endpoints[2])).output().expect("curl (apt-get install curl)")
    };
    let o = curl(Some("root"));
    assert!(String::from_utf8_lossy(&o.stdout).contains(r#""health":"true""#), "{o:?}");
    assert!(!curl(None).status.success(), "curl without a certificate was served");

    // With auth on, the certificate's CN is the user: "root" needs no password.
    for args in [&["user", "add", "root", "--no-password"][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]] {
        let (okay, out, err) = ctl(&pki, &endpoints[0], Some("root"), args);
        assert!(okay, "{args:?}: {out}{err}");
    }
    let (okay, out, err) = ctl(&pki, &endpoints[2], Some("root"), &["put", "secret", "v2"]);
    assert!(okay && out.trim() == "OK", "{out}{err}");
    let (okay, _, err) = ctl(&pki, &endpoints[2], Some("root"), &["--user", "root:whatever", "get", "secret"]);
    assert!(!okay && err.contains("authentication failed"), "a no-password user cannot log in with a password: {err}");
    drop(procs);
}

#[test]
fn auto_tls_serves_clients_that_skip_verification_only() {
    let a = free_addrs(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = format!("http://{}", a[2]);
    let (client, peer) = (format!("https://{}", a[0]), format!("http://{}", a[1]));
    let mut args = urls(&client, &peer, &format!("a={peer}"));
    args.extend(["--auto-tls", "--listen-metrics-urls", &metrics].map(String::from));
    let _p = start(dir.path(), "a", &args);
    let run = |args: &[&str]| etcdctl(&[&["--endpoints", &client][..], args].concat());
    let until = Instant::now() + Duration::from_secs(30);
    while !run(&["--insecure-transport=false", "--insecure-skip-tls-verify", "put", "k", "v"]).0 {
        assert!(Instant::now() < until, "auto-TLS member not serving");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (okay, out, err) = run(&["--insecure-transport=false", "--insecure-skip-tls-verify", "get", "k", "--print-value-only"]);
    assert!(okay && out == "v\n", "{out}{err}");
    assert!(dir.path().join("a.etcd/fixtures/client/cert.pem").exists(), "the generated certificate is kept in the data dir");
    let (okay, _, _) = run(&["--insecure-transport=false", "get", "k"]);
    assert!(!okay, "a self-signed certificate must not verify");
    // The metrics port serves metrics and health, not the API (it has no client TLS).
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(curl(&[&format!("{metrics}/metrics")]), "200");
    assert_eq!(curl(&[&format!("{metrics}/health")]), "200");
    assert_eq!(curl(&["-X", "POST", "-d", r#"{"key":"aw=="}"#, &format!("{metrics}/v3/kv/range")]), "404");
}

#[test]
fn peers_with_ca_signed_certificates_must_carry_the_allowed_cn() {
    let addrs: Vec<Vec<SocketAddr>> = (0..3).map(|_| free_addrs(2)).collect();
    let ips: Vec<String> = addrs.iter().map(|a| a[1].ip().to_string()).collect();
    let pki = Pki::new(&ips);
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("m{i}=https://{}", a[1])).collect();
    let cluster = cluster.join(",");
    // m2 holds a certificate from the same CA, but with the wrong CN.
    let procs: Vec<Proc> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let cert = if i == 2 { "intruder" } else { "peer" };
            let mut args = urls(&format!("http://{}", a[0]), &format!("https://{}", a[1]), &cluster);
            let (c, k) = (pki.path(&format!("{cert}.pem")), pki.path(&format!("{cert}-key.pem")));
            args.extend(["--peer-cert-file", &c, "--peer-key-file", &k, "--peer-trusted-ca-file", &pki.path("ca.pem")].map(String::from));
            args.extend(["--peer-client-cert-auth", "--peer-cert-allowed-cn", "peer"].map(String::from));
            start(dir.path(), &format!("m{i}"), &args)
        })
        .collect();
    let plain = |i: usize, args: &[&str]| {
        let (ok, out, _) = etcdctl(&[&["--endpoints", &addrs[i][0].to_string()][..], args].concat());
        (ok, out)
    };
    // The two members with the allowed CN form a quorum and replicate to each other.
    let until = Instant::now() + Duration::from_secs(40);
    while !plain(0, &["put", "k", "v"]).0 {
        assert!(Instant::now() < until, "the two good members did not form a quorum");
        std::thread::sleep(Duration::from_millis(200));
    }
    let until = Instant::now() + Duration::from_secs(20);
    while plain(1, &["get", "k", "--print-value-only"]).1 != "v\n" {
        assert!(Instant::now() < until, "m1 did not serve the write");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The intruder's connections are refused for their CN, so it cannot even publish itself.
    let refused = procs[..2].iter().any(|p| std::fs::read_to_string(&p.log).unwrap_or_default().contains("CommonName"));
    assert!(refused, "no member logged refusing the intruder's certificate");
    assert!(!plain(2, &["get", "k"]).0, "the intruder joined and serves clients");
}

#[test]
fn a_peer_whose_certificate_the_peer_crl_revokes_is_refused() {
    let addrs: Vec<Vec<SocketAddr>> = (0..3).map(|_| free_addrs(2)).collect();
    let ips: Vec<String> = addrs.iter().map(|a| a[1].ip().to_string()).collect();
    let pki = Pki::new(&ips);
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("m{i}=https://{}", a[1])).collect();
    let cluster = cluster.join(",");
    // m2's certificate is signed by the same CA but revoked by the CRL every member loads.
    let procs: Vec<Proc> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let cert = if i == 2 { "revoked" } else { "peer" };
            let mut args = urls(&format!("http://{}", a[0]), &format!("https://{}", a[1]), &cluster);
            let (c, k) = (pki.path(&format!("{cert}.pem")), pki.path(&format!("{cert}-key.pem")));
            args.extend(["--peer-cert-file", &c, "--peer-key-file", &k, "--peer-trusted-ca-file", &pki.path("ca.pem")].map(String::from));
            args.extend(["--peer-client-cert-auth", "--peer-crl-file", &pki.path("crl.pem")].map(String::from));
            start(dir.path(), &format!("m{i}"), &args)
        })
        .collect();
    let plain = |i: usize, args: &[&str]| etcdctl(&[&["--endpoints", &addrs[i][0].to_string()][..], args].concat()).0;
    let until = Instant::now() + Duration::from_secs(40);
    while !plain(0, &["put", "k", "v"]) {
        assert!(Instant::now() < until, "the two members with valid certificates did not form a quorum");
        std::thread::sleep(Duration::from_millis(200));
    }
    let until = Instant::now() + Duration::from_secs(20);
    let revoked = || procs[..2].iter().any(|p| std::fs::read_to_string(&p.log).unwrap_or_default().contains("Revoked"));
    while !revoked() {
        assert!(Instant::now() < until, "no member logged refusing the revoked peer certificate");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!plain(2, &["get", "k"]), "the member with a revoked certificate joined and serves clients");
}
