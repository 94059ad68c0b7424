//! TLS with rustls on the client and the peer port, from etcd's flags: certificates from files or
//! generated at start (`--auto-tls`, `--peer-auto-tls`), client certificates checked against a
//! CA and a CRL, and for peers an allowed common name.
//!
//! - [`conn`]: accepted connections (plain or TLS) with the client's certificate CN, and the
//!   connector peers dial each other with.
//! - [`authority`]: the HTTP/2 frame scanner every accepted connection's requests pass through,
//!   so etcdctl 3.4's `--endpoints=http://…` (a URL as `:authority`) reaches the server.
//! - [`hpack`]: its pure core, a mirror of the server's header decoder that rewrites such values.
//!
//! One crypto provider (ring) serves every config, so no process-wide default is needed.

pub mod authority;
pub mod conn;
pub mod hpack;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS flags of one side (clients or peers), as etcd names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFlags {
    /// `--cert-file` / `--peer-cert-file`.
    pub cert_file: Option<PathBuf>,
    /// `--key-file` / `--peer-key-file`.
    pub key_file: Option<PathBuf>,
    /// `--trusted-ca-file` / `--peer-trusted-ca-file`.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
    /// `--client-crl-file` / `--peer-crl-file`.
    pub crl_file: Option<PathBuf>,
    /// `--auto-tls` / `--peer-auto-tls`.
    pub auto_tls: bool,
    /// `--peer-cert-allowed-cn`.
    pub allowed_cn: Option<String>,
}

/// A certificate chain and its key.
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key.
    pub key: PrivateKeyDer<'static>,
    /// Generated at start (`--auto-tls`): nobody can verify it, so peers skip verification.
    pub self_signed: bool,
}

impl Identity {
    /// A second copy (the peer port serves and dials with the same certificate).
    pub fn duplicate(&self) -> Identity {
        Identity { chain: self.chain.clone(), key: self.key.clone_key(), self_signed: self.self_signed }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

fn read_roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).map_err(|e| format!("trusted CA {}: {e}", ca.display()))?;
    }
    Ok(roots)
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading the CRL {}: {e}", path.display()))
}

impl TlsFlags {
    /// True when this side serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.auto_tls
    }

    /// The certificate to present: from the files, else (with auto TLS) one generated now for
    /// `hosts` and written under `auto_dir` as etcd does.
    pub fn identity(&self, hosts: &[String], auto_dir: &Path) -> Result<Identity, String> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading the key {}: {e}", key.display()))?;
                Ok(Identity { chain, key, self_signed: false })
            }
            (Some(_), None) | (None, Some(_)) => Err("a certificate file needs its key file and the other way round".into()),
            (None, None) if self.auto_tls => self_signed(hosts, auto_dir),
            (None, None) => Err("TLS needs a certificate (--cert-file/--key-file) or auto TLS".into()),
        }
    }

    /// The server config: ALPN h2 and HTTP/1.1 (gRPC and the HTTP endpoints share the port);
    /// client certificates verified against the trusted CA (and CRL) when one is given,
    /// required with client-cert-auth.
    pub fn server_config(&self, id: Identity) -> Result<Arc<ServerConfig>, String> {
        if self.trusted_ca_file.is_none() && self.crl_file.is_some() {
            return Err("a CRL file needs a trusted CA file".into());
        }
        if self.allowed_cn.is_some() && !(self.client_cert_auth && self.trusted_ca_file.is_some()) {
            return Err("an allowed CN needs client certificate authentication and a trusted CA file".into());
        }
        let provider = provider();
        let verifier: Arc<dyn ClientCertVerifier> = match &self.trusted_ca_file {
            Some(ca) => {
                let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider.clone());
                if let Some(crl) = &self.crl_file {
                    // As etcd: the CRL lists revoked client certificates; intermediates and
                    // certificates it does not cover are not refused for lack of a CRL.
                    b = b.with_crls(read_crls(crl)?).only_check_end_entity_revocation().allow_unknown_revocation_status();
                }
                if !self.client_cert_auth {
                    b = b.allow_unauthenticated();
                }
                b.build().map_err(|e| format!("client certificate verifier: {e}"))?
            }
            None if self.client_cert_auth => return Err("client certificate authentication needs a trusted CA file".into()),
            None => Arc::new(NoClientAuth),
        };
        let verifier = match &self.allowed_cn {
            Some(cn) => Arc::new(AllowedCn { inner: verifier, cn: cn.clone() }) as Arc<dyn ClientCertVerifier>,
            None => verifier,
        };
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(id.chain, id.key)
            .map_err(|e| format!("certificate and key: {e}"))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The config a member dials its peers with: it presents its own certificate, and checks
    /// theirs against the trusted CA, or (auto TLS without a CA, as etcd) not at all. Certificate
    /// files without a trusted CA are refused: nothing could check the peers.
    pub fn client_config(&self, id: Identity) -> Result<Arc<ClientConfig>, String> {
        if self.trusted_ca_file.is_none() && !id.self_signed {
            return Err("peer certificate files need a trusted CA file to check the other members with".into());
        }
        let provider = provider();
        let b = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
        let b = match &self.trusted_ca_file {
            Some(ca) => b.with_root_certificates(read_roots(ca)?),
            None => b.dangerous().with_custom_certificate_verifier(Arc::new(AnyServerCert(provider))),
        };
        let mut cfg = b.with_client_auth_cert(id.chain, id.key).map_err(|e| format!("certificate and key: {e}"))?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// A self-signed certificate for `hosts` (IP addresses and names), written to `dir` as
/// `cert.pem` and `key.pem`.
fn self_signed(hosts: &[String], dir: &Path) -> Result<Identity, String> {
    let mut names: Vec<String> = hosts.to_vec();
    names.push("localhost".into());
    names.sort();
    names.dedup();
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "keel autogenerated cert");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(dir.join("cert.pem"), cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    Ok(Identity { chain: vec![cert.der().clone()], key, self_signed: true })
}

/// The common name of a DER certificate's subject.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject().iter_common_name().next()?.as_str().ok().map(str::to_string)
}

/// `--peer-cert-allowed-cn`: a verified client certificate must also carry this CN.
#[derive(Debug)]
struct AllowedCn {
    inner: Arc<dyn ClientCertVerifier>,
    cn: String,
}

impl ClientCertVerifier for AllowedCn {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        match common_name(end_entity) {
            Some(cn) if cn == self.cn => Ok(ok),
            other => Err(rustls::Error::General(format!("CommonName authentication failed: {other:?} is not {:?}", self.cn))),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any server certificate (but still checks the handshake signature): what etcd does
/// between members with auto TLS, whose certificates nobody can verify.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tls_generates_a_usable_certificate_and_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let flags = TlsFlags { auto_tls: true, ..Default::default() };
        let id = flags.identity(&["127.0.0.7".into()], dir.path()).unwrap();
        assert!(id.self_signed);
        assert!(dir.path().join("cert.pem").exists() && dir.path().join("key.pem").exists());
        flags.server_config(id).unwrap();
        let id = flags.identity(&[], dir.path()).unwrap();
        flags.client_config(id).unwrap();
    }

    /// A CA in `dir` (`ca.pem`) and leaf certificates `<name>.pem`/`<name>-key.pem` with the
    /// given CNs, all valid for 127.0.0.1.
    fn pki(dir: &Path, cns: &[&str]) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca, &ca_key);
        for cn in cns {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, *cn);
            std::fs::write(dir.join(format!("{cn}.pem")), p.signed_by(&key, &issuer).unwrap().pem()).unwrap();
            std::fs::write(dir.join(format!("{cn}-key.pem")), key.serialize_pem()).unwrap();
        }
    }

    fn flags(dir: &Path, cn: &str) -> TlsFlags {
        TlsFlags {
            cert_file: Some(dir.join(format!("{cn}.pem"))),
            key_file: Some(dir.join(format!("{cn}-key.pem"))),
            trusted_ca_file: Some(dir.join("ca.pem")),
            client_cert_auth: true,
            allowed_cn: Some("m1".into()),
            ..Default::default()
        }
    }

    /// Handshake a peer presenting `client_cn`'s certificate with a server allowing CN m1.
    async fn handshake(dir: &Path, client_cn: &str) -> Result<Option<String>, String> {
        let server = flags(dir, "m1");
        let server_cfg = server.server_config(server.identity(&[], dir).unwrap()).unwrap();
        let client = flags(dir, client_cn);
        let client_cfg = client.client_config(client.identity(&[], dir).unwrap()).unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let dial = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut s = tokio_rustls::TlsConnector::from(client_cfg).connect(name, a).await?;
            // The server's verdict on the client certificate arrives after the client's side
            // of the handshake; reading surfaces it.
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf).await?;
            Ok::<_, std::io::Error>(())
        });
        let accepted = tokio_rustls::TlsAcceptor::from(server_cfg).accept(b).await.map_err(|e| e.to_string());
        let cn = accepted.map(|s| {
            let (_, session) = s.get_ref();
            session.peer_certificates().and_then(|c| c.first()).and_then(|c| common_name(c))
        });
        dial.abort();
        cn
    }

    #[tokio::test]
    async fn peer_cert_allowed_cn_refuses_other_names_and_client_cn_is_read() {
        let dir = tempfile::tempdir().unwrap();
        pki(dir.path(), &["m1", "intruder"]);
        assert_eq!(handshake(dir.path(), "m1").await, Ok(Some("m1".to_string())));
        let refused = handshake(dir.path(), "intruder").await.unwrap_err();
        assert!(refused.contains("CommonName"), "{refused}");
    }

    #[test]
    fn bad_combinations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TlsFlags::default().identity(&[], dir.path()).is_err());
        let half = TlsFlags { cert_file: Some(dir.path().join("c")), ..Default::default() };
        assert!(half.identity(&[], dir.path()).is_err());
        let flags = TlsFlags { auto_tls: true, client_cert_auth: true, ..Default::default() };
        let id = flags.identity(&[], dir.path()).unwrap();
        assert!(flags.server_config(id).err().unwrap_or_default().contains("trusted CA"));
        let missing =
            TlsFlags { cert_file: Some("/nonexistent.pem".into()), key_file: Some("/nonexistent.key".into()), ..Default::default() };
        assert!(missing.identity(&[], dir.path()).err().unwrap_or_default().contains("/nonexistent.pem"));
    }
}
