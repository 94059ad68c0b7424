//! Who each part of the cluster is to the apiservers, as kubeadm sets it up: a client CA
//! (`DIR/pki/ca.crt`, made on the first `keel up` and kept after, passed to every apiserver as
//! `--client-ca-file`), and one kubeconfig per identity, each with a client certificate that CA
//! signed:
//!
//! | kubeconfig | user (CN) | groups (O) | held to |
//! |---|---|---|---|
//! | `DIR/kubeconfig` | `kubernetes-admin` | `system:masters` | everything |
//! | `DIR/scheduler.kubeconfig` | `system:kube-scheduler` | | kube's `system:kube-scheduler` |
//! | `DIR/controller-manager.kubeconfig` | `system:kube-controller-manager` | | its role and the `system:controller:*` roles |
//! | `DIR/kubelet-i.kubeconfig` | `system:node:keel-i` | `system:nodes` | the Node authorizer |
//! | `DIR/kubelet-simulated.kubeconfig` | `keel:simulated-nodes` | `system:masters` | everything (see below) |
//!
//! A kubelet with `--simulated-nodes N` is N nodes under one identity, which the Node
//! authorizer (one node per identity) cannot hold; it gets an admin identity, as kwok's node
//! simulator runs with admin credentials.
//!
//! Certificates are issued afresh on every `keel up` (the CA stays, so copies of an older
//! kubeconfig keep working); the CA's key is readable by root only.
//!
//! Service accounts: `DIR/pki/sa.key` (a P-256 key, made once, root only) signs every
//! apiserver's ServiceAccount tokens (`--service-account-signing-key-file`, issuer
//! [`SERVICE_ACCOUNT_ISSUER`], kubeadm's), so a token one apiserver issued is valid on all.

use keel_access::pki::{ClientIdentity, ClusterCa};
use std::path::{Path, PathBuf};

/// The client CA's certificate (`--client-ca-file`).
pub fn ca_file(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("ca.crt")
}

/// The kubeconfig a part runs with (`kubelet-2`, `scheduler-1`, …; the admin's for anything
/// else).
pub fn kubeconfig_of(data_dir: &Path, part: &str) -> PathBuf {
    let file = match part {
        p if p.starts_with("scheduler-") => "scheduler.kubeconfig".to_string(),
        p if p.starts_with("controller-manager-") => "controller-manager.kubeconfig".to_string(),
        p if p.starts_with("kubelet-") => format!("{p}.kubeconfig"),
        _ => return crate::plan::kubeconfig(data_dir),
    };
    data_dir.join(file)
}

/// Who the part named `part` is (the node name of `kubelet-i` is `keel-i`, as the plan's
/// `--hostname-override`).
pub fn identity_of(part: &str) -> ClientIdentity {
    match part {
        p if p.starts_with("scheduler-") => ClientIdentity::scheduler(),
        p if p.starts_with("controller-manager-") => ClientIdentity::controller_manager(),
        "kubelet-simulated" => ClientIdentity::new("keel:simulated-nodes", &["system:masters"]),
        p if p.starts_with("kubelet-") => ClientIdentity::kubelet(&format!("keel-{}", &p["kubelet-".len()..])),
        _ => ClientIdentity::admin(),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

/// The client CA of the cluster in `data_dir`: read back, or made (and written) on first use.
pub fn ensure_ca(data_dir: &Path) -> Result<ClusterCa, String> {
    let (crt, key) = (ca_file(data_dir), data_dir.join("pki").join("ca.key"));
    match (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
        (Ok(c), Ok(k)) => ClusterCa::from_pem(&c, &k).map_err(|e| format!("{}: {e}", crt.display())),
        _ => {
            let ca = ClusterCa::generate("keel-client-ca").map_err(|e| e.to_string())?;
            std::fs::create_dir_all(data_dir.join("pki")).map_err(|e| format!("creating {}/pki: {e}", data_dir.display()))?;
            write_private(&key, &ca.key_pem()).map_err(|e| format!("writing {}: {e}", key.display()))?;
            std::fs::write(&crt, ca.cert_pem()).map_err(|e| format!("writing {}: {e}", crt.display()))?;
            Ok(ca)
        }
    }
}

/// The issuer (`iss`) of the cluster's ServiceAccount tokens, as kubeadm's default.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The ServiceAccount token signing key (`--service-account-signing-key-file`).
pub fn service_account_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("sa.key")
}

/// The signing key of the cluster in `data_dir`: kept if present, made (root only) otherwise.
pub fn ensure_service_account_key(data_dir: &Path) -> Result<PathBuf, String> {
    let key = service_account_key_file(data_dir);
    if key.exists() {
        return Ok(key);
    }
    let pem = keel_access::authn::keys::generate_signing_key_pem().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(data_dir.join("pki")).map_err(|e| format!("creating {}/pki: {e}", data_dir.display()))?;
    write_private(&key, &pem).map_err(|e| format!("writing {}: {e}", key.display()))?;
    Ok(key)
}

/// Writes the kubeconfig of every part in `parts` (and the admin's), each pointed at `server`
/// and trusting the apiservers' serving CA `server_ca_pem`.
pub fn write_kubeconfigs(data_dir: &Path, ca: &ClusterCa, server: &str, server_ca_pem: &str, parts: &[String]) -> Result<(), String> {
    let mut done: Vec<PathBuf> = Vec::new();
    for part in std::iter::once("admin").chain(parts.iter().map(String::as_str)) {
        let path = kubeconfig_of(data_dir, part);
        if done.contains(&path) {
            continue;
        }
        let who = identity_of(part);
        let cert = ca.issue_client(&who).map_err(|e| format!("a certificate for {}: {e}", who.user))?;
        write_private(
            &path,
            &keel_component::kubeconfig::with_client_certificate(server, server_ca_pem, &who.user, &cert.cert_pem, &cert.key_pem),
        )
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
        done.push(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_has_kubeadms_identity_and_its_own_kubeconfig() {
        let d = Path::new("/d");
        let table: &[(&str, &str, &[&str], &str)] = &[
            ("admin", "kubernetes-admin", &["system:masters"], "/d/kubeconfig"),
            ("scheduler-2", "system:kube-scheduler", &[], "/d/scheduler.kubeconfig"),
            ("controller-manager-1", "system:kube-controller-manager", &[], "/d/controller-manager.kubeconfig"),
            ("kubelet-3", "system:node:keel-3", &["system:nodes"], "/d/kubelet-3.kubeconfig"),
            ("kubelet-simulated", "keel:simulated-nodes", &["system:masters"], "/d/kubelet-simulated.kubeconfig"),
        ];
        for (part, user, groups, file) in table {
            let who = identity_of(part);
            assert_eq!(who.user, *user, "{part}");
            assert_eq!(who.groups, groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(), "{part}");
            assert_eq!(kubeconfig_of(d, part), PathBuf::from(file), "{part}");
        }
    }

    #[test]
    fn the_ca_is_made_once_and_read_back_and_kubeconfigs_carry_certificates_it_signed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure_ca(dir.path()).expect("made");
        let again = ensure_ca(dir.path()).expect("read back");
        assert_eq!(first.cert_pem(), again.cert_pem(), "the CA survives a restart");
        let parts = ["scheduler-1", "scheduler-2", "kubelet-1"].map(String::from);
        write_kubeconfigs(dir.path(), &again, "https://127.0.0.1:6443", "SERVING CA", &parts).expect("written");
        let text = std::fs::read_to_string(dir.path().join("kubelet-1.kubeconfig")).expect("kubelet kubeconfig");
        assert!(text.contains("current-context: system:node:keel-1@keel"), "{text}");
        let data = text.lines().find_map(|l| l.trim().strip_prefix("client-certificate-data: ")).expect("a certificate");
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD.decode(data).expect("base64");
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
        let who = keel_access::authn::x509::user_from_chain(&[der]).expect("an identity");
        assert_eq!(who.name, "system:node:keel-1");
        assert!(dir.path().join("scheduler.kubeconfig").exists() && dir.path().join("kubeconfig").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("pki/ca.key")).expect("key").permissions());
        let sa = ensure_service_account_key(dir.path()).expect("sa key");
        let first = std::fs::read(&sa).expect("sa key written");
        assert!(keel_access::authn::keys::signing_key_from_pem(&first).is_ok(), "a key the apiserver loads");
        assert_eq!(
            ensure_service_account_key(dir.path()).and_then(|p| std::fs::read(p).map_err(|e| e.to_string())),
            Ok(first),
            "made once"
        );
        let sa_mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sa).expect("sa").permissions());
        assert_eq!(sa_mode & 0o777, 0o600, "the signing key is root's only");
        assert_eq!(mode & 0o077, 0, "the CA key is private");
    }
}
