//! The TLS the apiserver speaks to kubelets: it presents `--kubelet-client-certificate` /
//! `--kubelet-client-key` (a kubelet with `--client-ca-file` refuses the handshake otherwise)
//! and verifies the kubelet's serving certificate against `--kubelet-certificate-authority`, or,
//! without one, not at all: kube-apiserver's default, since kubelets usually serve self-signed
//! certificates. HTTP/1.1 only (ALPN), because exec upgrades the connection.

use crate::error::ApiError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn bad(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{what}: {e}"))
}

/// Accepts any serving certificate (no `--kubelet-certificate-authority`), while still
/// checking the handshake's signatures.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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

/// The client configuration from the flags' files (each optional).
pub fn client_config(cert_key: Option<(&Path, &Path)>, ca: Option<&Path>) -> Result<Arc<ClientConfig>, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| bad("kubelet TLS", e))?;
    let builder = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad("--kubelet-certificate-authority", e))? {
                roots
                    .add(c.map_err(|e| bad("--kubelet-certificate-authority", e))?)
                    .map_err(|e| bad("--kubelet-certificate-authority", e))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified(provider))),
    };
    let mut config = match cert_key {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("--kubelet-client-certificate", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("--kubelet-client-certificate", e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("--kubelet-client-key", e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| bad("--kubelet-client-certificate", e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
