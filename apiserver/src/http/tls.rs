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

/// The files in `dir`, generated for `hosts` (names and IPs) if they are not there yet.
pub fn ensure_generated(dir: &Path, hosts: &[String]) -> Result<CertFiles, String> {
    let files = CertFiles { cert: dir.join("apiserver.crt"), key: dir.join("apiserver.key"), ca: Some(dir.join("ca.crt")) };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(rcgen::DnType::CommonName, "keel-ca");
    let ca_pem = ca.self_signed(&ca_key).map_err(err)?.pem();
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "kubernetes".to_string(), "kubernetes.default".to_string()];
    names.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    names.dedup();
    let mut leaf = rcgen::CertificateParams::new(names).map_err(err)?;
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert_pem = leaf.signed_by(&key, &issuer).map_err(err)?.pem();
    let write = |p: &Path, s: &str| std::fs::write(p, s).map_err(|e| format!("writing {}: {e}", p.display()));
    if let Some(ca) = &files.ca {
        write(ca, &ca_pem)?;
    }
    write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
    write(&files.key, &key.serialize_pem())?;
    write(&files.cert, &cert_pem)?;
    Ok(files)
}

/// The rustls server config for `files` (ALPN h2 and HTTP/1.1: kubectl speaks both).
pub fn server_config(files: &CertFiles) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading {}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| format!("reading {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_generated_once_and_load() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = ensure_generated(dir.path(), &["10.0.0.1".into()]).unwrap_or_else(|e| panic!("{e}"));
        let first = std::fs::read(&files.cert).unwrap_or_default();
        let again = ensure_generated(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&again.cert).unwrap_or_default(), first, "reused, not regenerated");
        assert!(server_config(&files).is_ok());
    }
}
