//! The serving certificate: from `--tls-cert-file`/`--tls-private-key-file` when given, else a
//! CA and a serving certificate generated into `--cert-dir` on first start (and reused after),
//! as kube-apiserver does. The CA is what a kubeconfig trusts (`certificate-authority-data`).

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the serving identity comes from.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The serving certificate chain (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The CA that signed it, if this server generated it.
    pub ca: Option<PathBuf>,
}

/// The names every generated serving certificate carries.
const DEFAULT_NAMES: &[&str] = &["localhost", "127.0.0.1", "kubernetes", "kubernetes.default"];

/// The file that records which names the serving certificate in a folder was made for.
const NAMES_FILE: &str = "apiserver.names";

fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(rcgen::DnType::CommonName, "keel-ca");
    Ok(ca)
}

/// The files in `dir`: a CA and a serving certificate for `hosts` (names and IPs: the bind
/// address, `--tls-sans`, a load balancer's address) and the default names. Generated on first
/// start and reused after; when a host is asked for that the serving certificate lacks, a new
/// one is signed by the same CA (so kubeconfigs that trust the CA keep working).
pub fn ensure_generated(dir: &Path, hosts: &[String]) -> Result<CertFiles, String> {
    let files = CertFiles { cert: dir.join("apiserver.crt"), key: dir.join("apiserver.key"), ca: Some(dir.join("ca.crt")) };
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // Several apiservers may share `dir` and start at once (`keel up`): one at a time looks and
    // writes, under an exclusive lock the kernel drops if its holder dies, and every file is
    // replaced whole (written aside, then renamed), so no one reads a half-written certificate.
    let lock_path = dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let recorded = std::fs::read_to_string(dir.join(NAMES_FILE)).unwrap_or_default();
    let covered = |n: &String| recorded.lines().any(|l| l == n);
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    names.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    if files.cert.exists() && files.key.exists() && names.iter().all(covered) {
        return Ok(files);
    }
    // A new certificate keeps every name an earlier one covered: the other apiservers sharing
    // the folder still present theirs after a restart.
    names.extend(recorded.lines().filter(|l| !l.is_empty()).map(str::to_string));
    names.sort();
    names.dedup();
    let err = |e: rcgen::Error| e.to_string();
    let write = |p: &Path, s: &str| {
        let aside = p.with_extension("tmp");
        std::fs::write(&aside, s).and_then(|()| std::fs::rename(&aside, p)).map_err(|e| format!("writing {}: {e}", p.display()))
    };
    let (ca_crt, ca_key_file) = (dir.join("ca.crt"), dir.join("ca.key"));
    let ca_key = match std::fs::read_to_string(&ca_key_file) {
        Ok(pem) if ca_crt.exists() => rcgen::KeyPair::from_pem(&pem).map_err(err)?,
        _ => {
            let key = rcgen::KeyPair::generate().map_err(err)?;
            write(&ca_key_file, &key.serialize_pem())?;
            write(&ca_crt, &ca_params().map_err(err)?.self_signed(&key).map_err(err)?.pem())?;
            key
        }
    };
    // The same subject and key as the stored CA certificate: what it signs verifies against it.
    let issuer = rcgen::Issuer::new(ca_params().map_err(err)?, &ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut leaf = rcgen::CertificateParams::new(names.clone()).map_err(err)?;
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert_pem = leaf.signed_by(&key, &issuer).map_err(err)?.pem();
    // Each file is whole, but the pair is only consistent under the lock: `server_config`
    // reads the two under it too.
    write(&files.key, &key.serialize_pem())?;
    write(&files.cert, &cert_pem)?;
    write(&dir.join(NAMES_FILE), &names.join("\n"))?;
    Ok(files)
}

/// The rustls server config for `files` (ALPN h2 and HTTP/1.1: kubectl speaks both), asking
/// clients for a certificate through `client_verifier` (`--client-ca-file`) when given.
pub fn server_config(
    files: &CertFiles,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, String> {
    // A generated folder is shared (see `ensure_generated`): read key and certificate as one
    // pair under its lock. Given files (`--tls-cert-file`) have no lock.
    let lock = files.cert.parent().map(|d| d.join(".lock")).and_then(|p| std::fs::File::open(p).ok());
    if let Some(l) = &lock {
        rustix::fs::flock(l, rustix::fs::FlockOperation::LockShared).map_err(|e| format!("locking the certificate folder: {e}"))?;
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading {}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| format!("reading {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let mut cfg = match client_verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(chain, key)
    .map_err(|e| format!("serving certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    fn read(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap_or_default()
    }

    /// Whether the serving certificate in `files` verifies for `name` against the CA.
    fn verifies(files: &CertFiles, name: &str) -> bool {
        let Some(ca) = &files.ca else { return false };
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).into_iter().flatten().flatten() {
            let _ = roots.add(c);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let Ok(verifier) = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build() else {
            return false;
        };
        let Some(leaf) = CertificateDer::pem_file_iter(&files.cert).ok().and_then(|mut it| it.next()).and_then(Result::ok) else {
            return false;
        };
        let Ok(server) = rustls::pki_types::ServerName::try_from(name.to_string()) else { return false };
        // A fixed instant inside the certificates' validity (rcgen's default runs to 4096).
        let at = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_900_000_000));
        verifier.verify_server_cert(&leaf, &[], &server, &[], at).is_ok()
    }

    #[test]
    fn certificates_are_generated_once_and_load() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = ensure_generated(dir.path(), &["10.0.0.1".into()]).unwrap_or_else(|e| panic!("{e}"));
        let first = read(&files.cert);
        let again = ensure_generated(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&again.cert), first, "reused, not regenerated");
        assert!(server_config(&files, None).is_ok());
        assert!(verifies(&files, "10.0.0.1") && verifies(&files, "localhost"));
        assert!(!verifies(&files, "10.0.0.2"), "the check can fail");
    }

    #[test]
    fn an_extra_san_gets_a_new_serving_certificate_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = ensure_generated(dir.path(), &["127.0.0.2".into()]).unwrap_or_else(|e| panic!("{e}"));
        let ca = files.ca.as_ref().map(|c| read(c)).unwrap_or_default();
        let balancer =
            ensure_generated(dir.path(), &["127.0.0.2".into(), "lb.example".into(), "10.9.9.9".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(balancer.ca.as_ref().map(|c| read(c)).unwrap_or_default(), ca, "the CA stays");
        assert!(verifies(&balancer, "lb.example") && verifies(&balancer, "10.9.9.9") && verifies(&balancer, "127.0.0.2"));
    }

    /// `keel up` starts apiservers that share one folder at once, each with its own address: none
    /// may read a half-written or mismatched pair, and the last certificate covers them all.
    #[test]
    fn apiservers_sharing_the_folder_start_at_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = ensure_generated(dir.path(), &["127.0.0.1".into()]).unwrap_or_else(|e| panic!("{e}"));
        let ca = first.ca.as_ref().map(|c| read(c)).unwrap_or_default();
        std::thread::scope(|s| {
            let starts: Vec<_> = (2..=6)
                .map(|i| {
                    let dir = dir.path();
                    s.spawn(move || {
                        let files = ensure_generated(dir, &[format!("127.0.0.{i}")])?;
                        server_config(&files, None).map(|_| ())
                    })
                })
                .collect();
            for (i, start) in starts.into_iter().enumerate() {
                let res = start.join().unwrap_or_else(|_| Err("panicked".into()));
                assert_eq!(res, Ok(()), "apiserver {} started", i + 2);
            }
        });
        let last = ensure_generated(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(last.ca.as_ref().map(|c| read(c)).unwrap_or_default(), ca, "one CA for all");
        for i in 1..=6 {
            assert!(verifies(&last, &format!("127.0.0.{i}")), "127.0.0.{i} still covered");
        }
    }
}
