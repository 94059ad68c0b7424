//! The narrow interface: everything the apiserver's flags configure ([`AccessConfig`] →
//! [`Access`]), and the whole front of the request path in one call ([`Access::check`]:
//! authenticate, impersonate, authorize), so the apiserver's middleware is a few lines.
//!
//! Invariant: [`Access::check`] runs kube's filters in kube's order and answers with either the
//! acting user and its attributes, or the error to write (401, 403, 500) together with what the
//! audit line needs.

use crate::admission::{self, Plugin};
use crate::attributes::Attributes;
use crate::authn::keys::{signing_key_from_pem, verifying_keys_from_pem};
use crate::authn::serviceaccount::{ObjectLookup, ServiceAccountAuthenticator, TokenIssuer};
use crate::authn::token_file::TokenFile;
use crate::authn::{Authenticator, Credentials, Method, impersonation, x509};
use crate::authz::{self, Authorizer, Chain, Mode};
use crate::error::Error;
use crate::node::SharedGraph;
use crate::rbac::SharedPolicy;
use crate::user::UserInfo;
use k8s_openapi::jiff::Timestamp;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The apiserver's security flags, with kube's names and defaults.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
    /// `--token-auth-file`.
    pub token_auth_file: Option<PathBuf>,
    /// `--service-account-signing-key-file`.
    pub service_account_signing_key_file: Option<PathBuf>,
    /// `--service-account-key-file` (repeatable; default: the signing key).
    pub service_account_key_files: Vec<PathBuf>,
    /// `--service-account-issuer` (repeatable; the first issues).
    pub service_account_issuers: Vec<String>,
    /// `--api-audiences` (default: the issuers).
    pub api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration`, in seconds.
    pub service_account_max_token_expiration: Option<i64>,
    /// `--service-account-extend-token-expiration`.
    pub service_account_extend_token_expiration: bool,
    /// `--anonymous-auth`.
    pub anonymous_auth: bool,
    /// `--authorization-mode`.
    pub authorization_mode: String,
    /// `--enable-admission-plugins`.
    pub enable_admission_plugins: String,
    /// `--disable-admission-plugins`.
    pub disable_admission_plugins: String,
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            client_ca_file: None,
            token_auth_file: None,
            service_account_signing_key_file: None,
            service_account_key_files: Vec::new(),
            service_account_issuers: Vec::new(),
            api_audiences: Vec::new(),
            service_account_max_token_expiration: None,
            service_account_extend_token_expiration: true,
            anonymous_auth: true,
            authorization_mode: "AlwaysAllow".into(),
            enable_admission_plugins: String::new(),
            disable_admission_plugins: String::new(),
        }
    }
}

/// Admission plugins of kube's that Keel accepts on the command line but does not run.
pub const ACCEPTED_PLUGINS: &[&str] = &[
    "TaintNodesByCondition",
    "Priority",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "PodSecurity",
];

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Everything keel-access holds for one apiserver.
pub struct Access {
    /// The authenticators.
    pub authenticator: Authenticator,
    /// The authorizer chain of `--authorization-mode`.
    pub chain: Chain,
    /// The RBAC policy (fed by the apiserver's watch of RBAC objects).
    pub policy: SharedPolicy,
    /// The node graph (fed by the watch of pods and persistent volumes).
    pub graph: SharedGraph,
    /// TokenRequest issuing, when a signing key is configured.
    pub issuer: Option<TokenIssuer>,
    /// The TLS client-certificate verifier, when a client CA is configured.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The admission plugins to run.
    pub plugins: Vec<Plugin>,
    /// The authorization modes.
    pub modes: Vec<Mode>,
}

/// One request's head, as the apiserver has it.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// URL path.
    pub path: &'a str,
    /// Raw query (without `?`).
    pub query: &'a str,
    /// Every header, in order (names in any case).
    pub headers: &'a [(&'a str, &'a str)],
    /// The client chain rustls verified.
    pub peer_certificates: Option<&'a [CertificateDer<'a>]>,
}

/// A request that may proceed.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// The authorization attributes; `user` is the acting (possibly impersonated) user.
    pub attributes: Attributes,
    /// Who authenticated (differs from the acting user when impersonating).
    pub authenticated: UserInfo,
    /// Whether the acting user is impersonated.
    pub impersonated: bool,
    /// How the authenticated user proved itself.
    pub method: Method,
    /// The authorizer's reason (audit annotation `authorization.k8s.io/reason`).
    pub reason: String,
}

/// A request refused before its handler: write `error` (its code and Status), audit the rest.
#[derive(Debug)]
pub struct Refused {
    /// What to answer.
    pub error: Error,
    /// The request's attributes (`user` is the acting user when known).
    pub attributes: Attributes,
    /// Who authenticated, when authentication succeeded.
    pub authenticated: Option<UserInfo>,
    /// The authorizer's reason, when authorization refused.
    pub reason: Option<String>,
}

impl Access {
    /// Builds everything the flags name, reading the files they point at.
    pub fn from_config(cfg: &AccessConfig) -> Result<Access, Error> {
        let client_verifier = match &cfg.client_ca_file {
            Some(p) => Some(x509::client_cert_verifier(&read(p)?)?),
            None => None,
        };
        let token_file = cfg.token_auth_file.as_deref().map(TokenFile::load).transpose()?;
        let signing = match &cfg.service_account_signing_key_file {
            Some(p) => Some(signing_key_from_pem(&read(p)?)?),
            None => None,
        };
        let mut keys = Vec::new();
        for p in &cfg.service_account_key_files {
            keys.extend(verifying_keys_from_pem(&read(p)?)?);
        }
        if keys.is_empty()
            && let Some(k) = &signing
        {
            keys.push(k.verifying_key());
        }
        if (signing.is_some() || !keys.is_empty()) && cfg.service_account_issuers.is_empty() {
            return Err(Error::BadRequest("service-account-issuer is a required flag".into()));
        }
        let service_accounts =
            (!keys.is_empty()).then(|| ServiceAccountAuthenticator::new(keys, &cfg.service_account_issuers, &cfg.api_audiences));
        let issuer = signing.map(|k| {
            let mut i = TokenIssuer::new(k, &cfg.service_account_issuers[0], &cfg.api_audiences);
            i.max_expiration_seconds = cfg.service_account_max_token_expiration;
            i.extend_expiration = cfg.service_account_extend_token_expiration;
            i
        });
        let modes = authz::parse_modes(&cfg.authorization_mode)?;
        let policy = SharedPolicy::default();
        let graph = SharedGraph::default();
        let chain = Chain::new(&modes, &policy, &graph);
        let plugins = admission::enabled_plugins(&cfg.enable_admission_plugins, &cfg.disable_admission_plugins, ACCEPTED_PLUGINS)?;
        Ok(Access {
            authenticator: Authenticator { anonymous: cfg.anonymous_auth, token_file, service_accounts },
            chain,
            policy,
            graph,
            issuer,
            client_verifier,
            plugins,
            modes,
        })
    }

    /// Authenticates, impersonates and authorizes one request (kube's filters, in order).
    pub fn check(&self, req: &RequestHead<'_>, lookup: &dyn ObjectLookup, now: Timestamp) -> Result<Allowed, Box<Refused>> {
        let mut attributes = Attributes::from_request(req.method, req.path, req.query);
        let authorization = req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| *v);
        let creds = Credentials { peer_certificates: req.peer_certificates, authorization };
        let authn = match self.authenticator.authenticate(&creds, lookup, now) {
            Ok(a) => a,
            Err(error) => return Err(Box::new(Refused { error, attributes, authenticated: None, reason: None })),
        };
        let acting = match impersonation::impersonate(&self.chain, &authn.user, req.headers.iter().copied()) {
            Ok(i) => i,
            Err(error) => {
                attributes.user = authn.user.clone();
                return Err(Box::new(Refused { error, attributes, authenticated: Some(authn.user), reason: None }));
            }
        };
        let impersonated = acting.is_some();
        attributes.user = acting.unwrap_or_else(|| authn.user.clone());
        let verdict = self.chain.authorize(&attributes);
        if !verdict.allowed() {
            let error = authz::forbidden(&attributes, &verdict.reason);
            return Err(Box::new(Refused { error, attributes, authenticated: Some(authn.user), reason: Some(verdict.reason) }));
        }
        Ok(Allowed { attributes, authenticated: authn.user, impersonated, method: authn.method, reason: verdict.reason })
    }

    /// Whether a plugin is enabled.
    pub fn admits_with(&self, plugin: Plugin) -> bool {
        self.plugins.contains(&plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::serviceaccount::ObjectRef;
    use crate::rbac::bootstrap::default_policy;

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

    fn access() -> Access {
        let dir = std::env::temp_dir().join(format!("keel-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, "admin-token,admin,1,system:masters\njane-token,jane,2\n").unwrap();
        let key = dir.join("sa.key");
        std::fs::write(&key, crate::authn::keys::generate_signing_key_pem().unwrap()).unwrap();
        let cfg = AccessConfig {
            token_auth_file: Some(tokens),
            service_account_signing_key_file: Some(key),
            service_account_issuers: vec!["https://kubernetes.default.svc.cluster.local".into()],
            authorization_mode: "Node,RBAC".into(),
            enable_admission_plugins: "NodeRestriction".into(),
            ..Default::default()
        };
        let a = Access::from_config(&cfg).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let defaults = default_policy(true).into_policy();
        a.policy.update(|p| *p = defaults);
        a
    }

    fn head<'a>(method: &'a str, path: &'a str, headers: &'a [(&'a str, &'a str)]) -> RequestHead<'a> {
        RequestHead { method, path, query: "", headers, peer_certificates: None }
    }

    #[test]
    fn the_request_front_is_kubes() {
        let a = access();
        assert!(a.issuer.is_some() && a.authenticator.service_accounts.is_some());
        assert!(a.admits_with(Plugin::NodeRestriction));
        let now = Timestamp::UNIX_EPOCH;
        let ok = a.check(&head("GET", "/api/v1/namespaces/dev/pods", &[("Authorization", "Bearer admin-token")]), &Nothing, now).unwrap();
        assert_eq!(ok.attributes.verb, "list");
        let refused =
            a.check(&head("GET", "/api/v1/namespaces/dev/pods", &[("authorization", "Bearer jane-token")]), &Nothing, now).unwrap_err();
        assert_eq!(
            refused.error.to_string(),
            r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "dev""#
        );
        let bad = a.check(&head("GET", "/api", &[("Authorization", "Bearer nope")]), &Nothing, now).unwrap_err();
        assert_eq!(bad.error.code(), 401);
        let anon = a.check(&head("GET", "/healthz", &[]), &Nothing, now).unwrap();
        assert_eq!(anon.method, Method::Anonymous);
        assert_eq!(a.check(&head("GET", "/api", &[]), &Nothing, now).unwrap_err().error.code(), 403);
        let as_jane = a
            .check(
                &head("GET", "/api/v1/namespaces/dev/pods", &[("Authorization", "Bearer admin-token"), ("Impersonate-User", "jane")]),
                &Nothing,
                now,
            )
            .unwrap_err();
        assert_eq!(as_jane.authenticated.as_ref().unwrap().name, "admin");
        assert_eq!(as_jane.attributes.user.name, "jane");
        let jane_as = a
            .check(&head("GET", "/api", &[("Authorization", "Bearer jane-token"), ("Impersonate-User", "admin")]), &Nothing, now)
            .unwrap_err();
        assert_eq!(
            jane_as.error.to_string(),
            r#"users "admin" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
    }

    #[test]
    fn flags_are_checked_like_kube() {
        let missing_issuer = AccessConfig { service_account_signing_key_file: Some("/nonexistent".into()), ..Default::default() };
        assert!(matches!(Access::from_config(&missing_issuer), Err(Error::Io { .. })));
        assert!(Access::from_config(&AccessConfig { authorization_mode: "ABAC".into(), ..Default::default() }).is_err());
        let open = Access::from_config(&AccessConfig::default()).unwrap();
        assert_eq!(open.modes, [Mode::AlwaysAllow]);
        assert!(open.issuer.is_none() && open.client_verifier.is_none());
    }
}
