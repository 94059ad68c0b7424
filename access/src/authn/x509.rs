//! Client certificates (`--client-ca-file`): the TLS verifier the apiserver's rustls config
//! uses, and the user a verified chain names (kube's `CommonNameUserConversion`: CN is the user,
//! each O is a group).
//!
//! Invariants:
//! - A client may connect without a certificate (it then authenticates by token or is
//!   anonymous); a certificate it presents must chain to the client CA, be valid now and allow
//!   client authentication, or the handshake fails. (kube verifies in the authenticator and
//!   answers 401; rustls verifies in the handshake, so a bad certificate is a TLS alert.)
//! - A verified certificate with an empty CN authenticates nobody (kube's behaviour), and the
//!   request falls through to tokens and anonymous.

use crate::error::Error;
use crate::user::UserInfo;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

/// Parses `--client-ca-file` (one or more PEM certificates).
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| Error::Certificate(format!("client CA: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Certificate("client CA: no certificates found".into()));
    }
    Ok(certs)
}

/// The rustls verifier for `--client-ca-file`: anonymous connections are allowed, presented
/// certificates must verify against the CA.
pub fn client_cert_verifier(ca_pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca_certificates(ca_pem)? {
        roots.add(cert).map_err(|e| Error::Certificate(format!("client CA: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(rustls::crypto::ring::default_provider()))
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Certificate(format!("client CA: {e}")))
}

/// The user a verified peer chain names (its first certificate): CN as the name, O as groups.
/// None when the chain is empty, unparsable, or the CN is empty.
pub fn user_from_chain(chain: &[CertificateDer<'_>]) -> Option<UserInfo> {
    use x509_parser::prelude::FromDer;
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next().and_then(|a| a.as_str().ok())?.to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
    Some(UserInfo { name, groups, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClientIdentity, ClusterCa};

    #[test]
    fn the_chain_names_the_user_and_groups() {
        let ca = ClusterCa::generate("keel-ca").unwrap();
        let admin = ca.issue_client(&ClientIdentity::new("kubernetes-admin", &["system:masters"])).unwrap();
        let der = CertificateDer::from_pem_slice(admin.cert_pem.as_bytes()).unwrap();
        let u = user_from_chain(&[der]).unwrap();
        assert_eq!(u.name, "kubernetes-admin");
        assert_eq!(u.groups, ["system:masters"]);
        let kubelet = ca.issue_client(&ClientIdentity::new("system:node:keel-1", &["system:nodes", "extra"])).unwrap();
        let u = user_from_chain(&[CertificateDer::from_pem_slice(kubelet.cert_pem.as_bytes()).unwrap()]).unwrap();
        assert_eq!(u.groups, ["system:nodes", "extra"]);
        assert!(user_from_chain(&[]).is_none());
        assert!(client_cert_verifier(ca.cert_pem().as_bytes()).is_ok());
        assert!(client_cert_verifier(b"junk").is_err());
    }
}
