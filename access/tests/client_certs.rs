//! The client-certificate verifier in real TLS handshakes (rustls client and server in memory):
//! no certificate connects (anonymous), a certificate from the cluster CA connects and names its
//! user, a certificate from another CA does not connect.

use keel_access::authn::x509::{client_cert_verifier, user_from_chain};
use keel_access::pki::{ClientIdentity, ClusterCa, IssuedCert};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server(ca: &ClusterCa) -> (Arc<ServerConfig>, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    let der = cert.der().clone();
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_cert_verifier(ca.cert_pem().as_bytes()).unwrap())
        .with_single_cert(vec![der.clone()], PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap())
        .unwrap();
    (Arc::new(cfg), der)
}

fn client(server_cert: &CertificateDer<'static>, identity: Option<&IssuedCert>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(server_cert.clone()).unwrap();
    let b = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    Arc::new(match identity {
        None => b.with_no_client_auth(),
        Some(id) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// Runs the handshake; Ok(the server's view of the peer chain) or Err(the server's error).
fn handshake(server_cfg: Arc<ServerConfig>, client_cfg: Arc<ClientConfig>) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
    let mut s = ServerConnection::new(server_cfg).unwrap();
    let mut c = ClientConnection::new(client_cfg, "localhost".try_into().unwrap()).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().map_err(|e| e.to_string())?;
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).unwrap();
        }
        let mut rd = &back[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().map_err(|e| e.to_string())?;
        if !s.is_handshaking() && !c.is_handshaking() {
            return Ok(s.peer_certificates().map(|p| p.to_vec()));
        }
    }
    Err("handshake did not finish".into())
}

#[test]
fn anonymous_clients_connect_without_a_certificate() {
    let ca = ClusterCa::generate("keel-ca").unwrap();
    let (srv, cert) = server(&ca);
    assert_eq!(handshake(srv, client(&cert, None)).unwrap(), None);
}

#[test]
fn a_certificate_from_the_cluster_ca_names_its_user() {
    let ca = ClusterCa::generate("keel-ca").unwrap();
    let (srv, cert) = server(&ca);
    let admin = ca.issue_client(&ClientIdentity::admin()).unwrap();
    let chain = handshake(srv, client(&cert, Some(&admin))).unwrap().unwrap();
    let user = user_from_chain(&chain).unwrap();
    assert_eq!((user.name.as_str(), user.groups.as_slice()), ("kubernetes-admin", &["system:masters".to_string()][..]));
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let ca = ClusterCa::generate("keel-ca").unwrap();
    let other = ClusterCa::generate("evil-ca").unwrap();
    let (srv, cert) = server(&ca);
    let forged = other.issue_client(&ClientIdentity::admin()).unwrap();
    let err = handshake(srv, client(&cert, Some(&forged))).unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("invalid peer certificate"), "{err}");
}

#[test]
fn a_reloaded_ca_issues_certificates_the_original_accepts() {
    let ca = ClusterCa::generate("keel-ca").unwrap();
    let again = ClusterCa::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
    let (srv, cert) = server(&ca);
    let kubelet = again.issue_client(&ClientIdentity::kubelet("keel-1")).unwrap();
    let chain = handshake(srv, client(&cert, Some(&kubelet))).unwrap().unwrap();
    assert_eq!(user_from_chain(&chain).unwrap().node_name(), Some("keel-1"));
}
