//! Authentication: who a request is from, as kube-apiserver's authenticator union decides it.
//!
//! Invariants (kube's):
//! - Order: the verified client certificate (CN/O), then the bearer token (`--token-auth-file`,
//!   then ServiceAccount JWTs); the first that names a user wins.
//! - A request that presents a bearer token nobody accepts is 401, even with anonymous access
//!   on; only a request with no credentials at all becomes `system:anonymous`
//!   (`system:unauthenticated`) — or 401 with `--anonymous-auth=false`.
//! - Every authenticated user but the anonymous one gets `system:authenticated`.
//! - A 401 body never says why ([`crate::Error::status`] writes kube's bare `Unauthorized`).

pub mod impersonation;
pub mod keys;
pub mod serviceaccount;
pub mod token_file;
pub mod x509;

use crate::error::Error;
use crate::user::UserInfo;
use k8s_openapi::jiff::Timestamp;
use rustls_pki_types::CertificateDer;
use serviceaccount::{ObjectLookup, ServiceAccountAuthenticator};
use token_file::TokenFile;

/// What a request presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The client certificate chain rustls verified (leaf first), if any.
    pub peer_certificates: Option<&'a [CertificateDer<'a>]>,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
}

/// How the user was authenticated (for audit and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Client certificate.
    X509,
    /// `--token-auth-file`.
    TokenFile,
    /// ServiceAccount token.
    ServiceAccount,
    /// No credentials, anonymous access.
    Anonymous,
}

/// The outcome of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user (with `system:authenticated` added).
    pub user: UserInfo,
    /// How.
    pub method: Method,
}

/// The authenticators `--client-ca-file`, `--token-auth-file`, `--service-account-key-file` and
/// `--anonymous-auth` configure. (The client CA is enforced by the TLS verifier,
/// [`x509::client_cert_verifier`]; this only reads the chain it verified.)
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// `--anonymous-auth` (kube's default: true).
    pub anonymous: bool,
    /// `--token-auth-file`.
    pub token_file: Option<TokenFile>,
    /// ServiceAccount tokens.
    pub service_accounts: Option<ServiceAccountAuthenticator>,
}

impl Default for Authenticator {
    fn default() -> Authenticator {
        Authenticator { anonymous: true, token_file: None, service_accounts: None }
    }
}

/// The token of an `Authorization: Bearer <token>` header (kube's `bearertoken`: the scheme is
/// case-insensitive, anything else is not a bearer token).
pub fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Authenticator {
    /// Authenticates one request. `lookup` finds the objects service account tokens name; `now`
    /// is the apiserver's clock.
    pub fn authenticate(&self, creds: &Credentials<'_>, lookup: &dyn ObjectLookup, now: Timestamp) -> Result<Authenticated, Error> {
        if let Some(user) = creds.peer_certificates.and_then(x509::user_from_chain) {
            return Ok(Authenticated { user: user.with_authenticated_group(), method: Method::X509 });
        }
        if let Some(token) = creds.authorization.and_then(bearer_token) {
            if let Some(user) = self.token_file.as_ref().and_then(|f| f.user(token)) {
                return Ok(Authenticated { user: user.clone().with_authenticated_group(), method: Method::TokenFile });
            }
            if let Some(sa) = &self.service_accounts
                && let Some(user) = sa.authenticate(token, lookup, now)?
            {
                return Ok(Authenticated { user: user.with_authenticated_group(), method: Method::ServiceAccount });
            }
            return Err(Error::Unauthenticated("invalid bearer token".into()));
        }
        if self.anonymous {
            return Ok(Authenticated { user: UserInfo::anonymous(), method: Method::Anonymous });
        }
        Err(Error::Unauthenticated("no credentials".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::serviceaccount::ObjectRef;
    use crate::pki::{ClientIdentity, ClusterCa};
    use rustls_pki_types::pem::PemObject;

    struct Nothing;
    impl ObjectLookup for Nothing {
        fn service_account(&self, _: &str, _: &str) -> Option<ObjectRef> {
            None
        }
        fn pod(&self, _: &str, _: &str) -> Option<ObjectRef> {
            None
        }
        fn secret(&self, _: &str, _: &str) -> Option<ObjectRef> {
            None
        }
        fn node(&self, _: &str) -> Option<ObjectRef> {
            None
        }
    }

    fn authn() -> Authenticator {
        Authenticator { token_file: Some(TokenFile::parse("t", "secret,jane,1001,\"devs\"\n").unwrap()), ..Default::default() }
    }

    fn now() -> Timestamp {
        Timestamp::UNIX_EPOCH
    }

    #[test]
    fn bearer_tokens_parse_like_kube() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("  bearer abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer abc def"), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic YWxpY2U6cHc="), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn token_file_users_are_authenticated() {
        let a = authn().authenticate(&Credentials { authorization: Some("Bearer secret"), ..Default::default() }, &Nothing, now()).unwrap();
        assert_eq!(a.method, Method::TokenFile);
        assert_eq!(
            a.user,
            UserInfo {
                name: "jane".into(),
                uid: "1001".into(),
                groups: vec!["devs".into(), "system:authenticated".into()],
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_wrong_token_is_401_even_with_anonymous_on() {
        let err =
            authn().authenticate(&Credentials { authorization: Some("Bearer nope"), ..Default::default() }, &Nothing, now()).unwrap_err();
        assert_eq!(err.code(), 401);
        assert_eq!(err.status().message.as_deref(), Some("Unauthorized"));
    }

    #[test]
    fn no_credentials_is_anonymous_or_401() {
        let a = authn().authenticate(&Credentials::default(), &Nothing, now()).unwrap();
        assert_eq!((a.user, a.method), (UserInfo::anonymous(), Method::Anonymous));
        // A non-bearer Authorization header is no credential at all.
        let basic = Credentials { authorization: Some("Basic eDp5"), ..Default::default() };
        assert_eq!(authn().authenticate(&basic, &Nothing, now()).unwrap().method, Method::Anonymous);
        let closed = Authenticator { anonymous: false, ..authn() };
        assert_eq!(closed.authenticate(&Credentials::default(), &Nothing, now()).unwrap_err().code(), 401);
    }

    #[test]
    fn a_client_certificate_wins_over_a_token() {
        let ca = ClusterCa::generate("ca").unwrap();
        let cert = ca.issue_client(&ClientIdentity::admin()).unwrap();
        let chain = [CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
        let creds = Credentials { peer_certificates: Some(&chain), authorization: Some("Bearer nope") };
        let a = authn().authenticate(&creds, &Nothing, now()).unwrap();
        assert_eq!(a.method, Method::X509);
        assert_eq!(a.user.groups, ["system:masters", "system:authenticated"]);
    }
}
