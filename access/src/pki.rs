//! The cluster's client CA and the client certificates `keel up` writes into kubeconfigs: the
//! admin (`kubernetes-admin` in `system:masters`), the scheduler (`system:kube-scheduler`), the
//! controller-manager (`system:kube-controller-manager`) and each kubelet
//! (`system:node:<name>` in `system:nodes`), as kubeadm issues them.
//!
//! Invariant: a certificate issued here verifies against [`ClusterCa::cert_pem`] for client
//! authentication, and [`crate::authn::x509::user_from_chain`] reads back its identity.

use crate::error::Error;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// Who a client certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The CN: the user name.
    pub user: String,
    /// The O values: the groups.
    pub groups: Vec<String>,
}

impl ClientIdentity {
    /// An identity with groups.
    pub fn new(user: &str, groups: &[&str]) -> ClientIdentity {
        ClientIdentity { user: user.into(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    /// kubeadm's admin: `kubernetes-admin` in `system:masters`.
    pub fn admin() -> ClientIdentity {
        ClientIdentity::new("kubernetes-admin", &[crate::user::SYSTEM_MASTERS])
    }

    /// The scheduler.
    pub fn scheduler() -> ClientIdentity {
        ClientIdentity::new(crate::user::KUBE_SCHEDULER, &[])
    }

    /// The controller-manager.
    pub fn controller_manager() -> ClientIdentity {
        ClientIdentity::new(crate::user::KUBE_CONTROLLER_MANAGER, &[])
    }

    /// The kubelet of `node`.
    pub fn kubelet(node: &str) -> ClientIdentity {
        ClientIdentity::new(&format!("{}{node}", crate::user::NODE_USER_PREFIX), &[crate::user::NODES_GROUP])
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

/// The CA behind `--client-ca-file`.
pub struct ClusterCa {
    cert_pem: String,
    key: KeyPair,
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Certificate(e.to_string())
}

impl ClusterCa {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<ClusterCa, Error> {
        let key = KeyPair::generate().map_err(bad)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(bad)?;
        Ok(ClusterCa { cert_pem: cert.pem(), key })
    }

    /// A CA from its files (what `keel up` wrote earlier).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, Error> {
        let key = KeyPair::from_pem(key_pem).map_err(bad)?;
        // Check the pair parses as a CA now rather than at the first issue.
        Issuer::from_ca_cert_pem(cert_pem, &key).map_err(bad)?;
        Ok(ClusterCa { cert_pem: cert_pem.to_string(), key })
    }

    /// The CA certificate (`--client-ca-file`).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A client certificate for `who`.
    pub fn issue_client(&self, who: &ClientIdentity) -> Result<IssuedCert, Error> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(bad)?;
        let key = KeyPair::generate().map_err(bad)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
        // rcgen keeps one value per attribute type; a second O goes in under O's OID (2.5.4.10),
        // which is the same attribute on the wire.
        let mut dn = DistinguishedName::new();
        match who.groups.as_slice() {
            [] => {}
            [one] => dn.push(DnType::OrganizationName, one.as_str()),
            [one, two] => {
                dn.push(DnType::OrganizationName, one.as_str());
                dn.push(DnType::CustomDnType(vec![2, 5, 4, 10]), two.as_str());
            }
            _ => return Err(Error::Certificate("a client certificate carries at most two groups".into())),
        }
        dn.push(DnType::CommonName, who.user.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).map_err(bad)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}
