//! What the security tests share: a cluster CA whose client certificates the apiserver trusts
//! (`--client-ca-file`), a `--token-auth-file` that makes the kubeconfig's `keel-admin` token
//! an admin (system:masters), identities issued by that CA, and curl as one of them.

#![allow(dead_code)] // each test crate uses its own part

use keel_access::pki::{ClientIdentity, ClusterCa};
use keel_testkit::{Cluster, text};

/// The CA and token file, in a folder that lives as long as this value.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: ClusterCa,
    /// `--client-ca-file`.
    pub ca_file: String,
    /// `--token-auth-file`: `keel-admin` (system:masters) and `jane-token` (jane in devs, qa).
    pub tokens: String,
}

/// A client certificate and its key, as files.
pub struct Identity {
    /// Certificate (PEM) path.
    pub cert: String,
    /// Key (PEM) path.
    pub key: String,
}

impl Identity {
    /// curl's arguments to present it.
    pub fn args(&self) -> Vec<&str> {
        vec!["--cert", &self.cert, "--key", &self.key]
    }
}

impl Pki {
    /// A fresh CA and token file.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, "keel-admin,keel-admin,uid-0,system:masters\njane-token,jane,uid-1,\"devs,qa\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let ca = ClusterCa::generate("test-ca").unwrap_or_else(|e| panic!("{e}"));
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca.cert_pem()).unwrap_or_else(|e| panic!("{e}"));
        let s = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
        Pki { ca_file: s(ca_file), tokens: s(tokens), ca, dir }
    }

    /// A client certificate for `who`, written as `<name>.crt` and `<name>.key`.
    pub fn identity(&self, name: &str, who: ClientIdentity) -> Identity {
        let issued = self.ca.issue_client(&who).unwrap_or_else(|e| panic!("{e}"));
        let (cert, key) = (self.dir.path().join(format!("{name}.crt")), self.dir.path().join(format!("{name}.key")));
        std::fs::write(&cert, issued.cert_pem).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&key, issued.key_pem).unwrap_or_else(|e| panic!("{e}"));
        Identity { cert: cert.to_string_lossy().into_owned(), key: key.to_string_lossy().into_owned() }
    }

    /// The apiserver flags that trust this CA and token file, with `mode` as
    /// `--authorization-mode` and `extra` after.
    pub fn flags<'a>(&'a self, mode: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut f = vec!["--token-auth-file", &self.tokens, "--client-ca-file", &self.ca_file, "--authorization-mode", mode];
        f.extend_from_slice(extra);
        f
    }
}

/// curl on the cluster's HTTPS port with `args` (credentials, `-X`, `-d`, ...): the status
/// code and body.
pub fn curl(c: &Cluster, args: &[&str], path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"])
        .args(args)
        .arg(format!("https://{}{path}", c.https))
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let s = text(&out.stdout);
    let (body, code) = s.rsplit_once('\n').unwrap_or((&s, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The `message` of a Status body (empty if it is not one).
pub fn message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["message"].as_str().map(str::to_string)).unwrap_or_default()
}
