//! Kubeconfig text for a client-certificate identity, as kubeadm writes `admin.conf`: one
//! cluster (`keel`, its server and serving CA), one user with the certificate and key inline,
//! one context `<user>@keel` that is current. `keel up` writes one per component and tests write
//! one per user; both read it back with [`crate::client::from_kubeconfig`] or kubectl.

use base64::Engine as _;

/// The kubeconfig for `user` holding `cert_pem`/`key_pem`, pointed at `server` and trusting
/// `server_ca_pem`.
pub fn with_client_certificate(server: &str, server_ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {user}@keel\n  context:\n    cluster: keel\n    user: {user}\ncurrent-context: {user}@keel\n",
        b64(server_ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_it_back_as_one_user_in_one_current_context() {
        let text = with_client_certificate("https://127.0.0.1:6443", "CA", "jane", "CERT", "KEY");
        let kc = kube::config::Kubeconfig::from_yaml(&text).expect("parses as a kubeconfig");
        assert_eq!(kc.current_context.as_deref(), Some("jane@keel"));
        let user = kc.auth_infos[0].auth_info.as_ref().expect("a user");
        let cert = user.client_certificate_data.as_deref().expect("a certificate");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(cert).expect("base64"), b"CERT");
        let cluster = kc.clusters[0].cluster.as_ref().expect("a cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    }
}
