//! ServiceAccount tokens: issuing them for `POST .../serviceaccounts/<name>/token`
//! (TokenRequest) and authenticating them, as kube does (`pkg/serviceaccount`, the token
//! subresource in `pkg/registry/core/serviceaccount/storage/token.go`).
//!
//! Invariants (kube's):
//! - Claims: `iss`, `sub` = `system:serviceaccount:<ns>:<name>`, `aud`, `exp`, `nbf`, `iat`,
//!   `jti`, and `kubernetes.io` {namespace, serviceaccount{name,uid}, pod|secret|node{name,uid},
//!   warnafter}; the header names the signing key (`kid`).
//! - A token is ours when its `iss` is one of `--service-account-issuer`; any other token is left
//!   to the other authenticators. Ours must verify against a `--service-account-key-file` key,
//!   share an audience with the apiserver's audiences, not be expired or not yet valid (60 s of
//!   leeway, go-jose's default), and name a service account (and bound pod/secret/node) that
//!   still exists with the same uid and is not being deleted.
//! - TokenRequest: audiences default to the apiserver's; expirationSeconds defaults to 3600, must
//!   be at least 600 and at most 2^32, is cut to `--service-account-max-token-expiration`; a
//!   pod-bound token asked for 3607 s (kubelet's projected volume) is issued for a year with a
//!   `warnafter` at the requested time when `--service-account-extend-token-expiration` is on.
//! - Time is passed in (the apiserver's clock), never read here.

use crate::authn::keys::{SigningKey, VerifyingKey};
use crate::error::{Cause, Error};
use crate::gostr::{quote, quote_list};
use crate::user::{UserInfo, extra, service_account_groups, service_account_username};
use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};

/// The expiration kubelet asks for in the projected token volume (kube's
/// `WarnOnlyBoundTokenExpirationSeconds`).
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
/// How long such a token really lives when extension is on (kube's `ExpirationExtensionSeconds`).
pub const EXPIRATION_EXTENSION_SECONDS: i64 = 24 * 365 * 60 * 60;
const MIN_TOKEN_AGE_SECONDS: i64 = 10 * 60;
const MAX_TOKEN_AGE_SECONDS: i64 = 1 << 32;
const LEEWAY_SECONDS: i64 = 60;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Ref {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uid: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default)]
    serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warnafter: Option<i64>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    aud: Vec<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(rename = "kubernetes.io", default)]
    kubernetes: KubernetesClaims,
}

/// An object a token may be bound to, as the apiserver's caches know it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.deletionTimestamp`.
    pub deletion: Option<Timestamp>,
    /// For pods: `spec.serviceAccountName`.
    pub service_account_name: String,
    /// For pods: `spec.nodeName`.
    pub node_name: String,
}

/// How the token code finds the objects tokens name (the apiserver answers from its caches).
pub trait ObjectLookup {
    /// A ServiceAccount.
    fn service_account(&self, namespace: &str, name: &str) -> Option<ObjectRef>;
    /// A Pod.
    fn pod(&self, namespace: &str, name: &str) -> Option<ObjectRef>;
    /// A Secret.
    fn secret(&self, namespace: &str, name: &str) -> Option<ObjectRef>;
    /// A Node.
    fn node(&self, name: &str) -> Option<ObjectRef>;
}

/// Issues tokens (`--service-account-signing-key-file`, `--service-account-issuer`).
#[derive(Debug)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration` (None: no limit).
    pub max_expiration_seconds: Option<i64>,
    /// `--service-account-extend-token-expiration` (default true, as kube).
    pub extend_expiration: bool,
}

fn invalid_token_request(name: &str, field: &str, value: impl std::fmt::Display, detail: &str, reason: &str) -> Error {
    Error::Invalid {
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: name.into(),
        causes: vec![Cause { reason: reason.into(), message: format!("Invalid value: {value}: {detail}"), field: field.into() }],
    }
}

fn add_seconds(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(Timestamp::MAX)
}

impl TokenIssuer {
    /// An issuer signing with `key` as `issuer`; `api_audiences` (`--api-audiences`) default to
    /// the issuer.
    pub fn new(key: SigningKey, issuer: &str, api_audiences: &[String]) -> TokenIssuer {
        let api_audiences = if api_audiences.is_empty() { vec![issuer.to_string()] } else { api_audiences.to_vec() };
        TokenIssuer { key, issuer: issuer.to_string(), api_audiences, max_expiration_seconds: None, extend_expiration: true }
    }

    /// The apiserver's audiences.
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    /// Serves `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token` for the ServiceAccount
    /// `sa` (the apiserver looked it up: 404 when absent). `jti` is a fresh random id.
    pub fn token_request(
        &self,
        sa: &ServiceAccount,
        mut req: TokenRequest,
        lookup: &dyn ObjectLookup,
        now: Timestamp,
        jti: &str,
    ) -> Result<TokenRequest, Error> {
        let sa_name = sa.metadata.name.clone().unwrap_or_default();
        let sa_ns = sa.metadata.namespace.clone().unwrap_or_default();
        if let Some(n) = req.metadata.name.as_deref().filter(|n| !n.is_empty() && *n != sa_name) {
            return Err(invalid_token_request(
                &sa_name,
                "metadata.name",
                quote(n),
                "must match the service account name if specified",
                "FieldValueInvalid",
            ));
        }
        if let Some(n) = req.metadata.namespace.as_deref().filter(|n| !n.is_empty() && *n != sa_ns) {
            return Err(invalid_token_request(
                &sa_name,
                "metadata.namespace",
                quote(n),
                "must match the service account namespace if specified",
                "FieldValueInvalid",
            ));
        }
        if req.spec.audiences.is_empty() {
            req.spec.audiences = self.api_audiences.clone();
        }
        req.metadata.name = Some(sa_name.clone());
        req.metadata.namespace = Some(sa_ns.clone());
        req.metadata.creation_timestamp = Some(Time(now));
        req.status = None;
        let mut expiration = req.spec.expiration_seconds.unwrap_or(3600);
        if expiration < MIN_TOKEN_AGE_SECONDS {
            return Err(invalid_token_request(
                "",
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration less than 10 minutes",
                "FieldValueInvalid",
            ));
        }
        if expiration > MAX_TOKEN_AGE_SECONDS {
            return Err(invalid_token_request(
                "",
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration larger than 2^32 seconds",
                "FieldValueTooLong",
            ));
        }

        let mut kube = KubernetesClaims {
            namespace: sa_ns.clone(),
            serviceaccount: Ref { name: sa_name.clone(), uid: sa.metadata.uid.clone().unwrap_or_default() },
            ..Default::default()
        };
        let mut pod_bound = false;
        if let Some(r) = &req.spec.bound_object_ref {
            let kind = r.kind.as_deref().unwrap_or("");
            let name = r.name.as_deref().unwrap_or("");
            let group = r.api_version.as_deref().and_then(|v| v.split_once('/')).map(|(g, _)| g).unwrap_or("");
            let found = match (group, kind) {
                ("", "Pod") => {
                    let pod = lookup.pod(&sa_ns, name).ok_or_else(|| Error::NotFound {
                        group: String::new(),
                        resource: "pods".into(),
                        name: name.into(),
                    })?;
                    if pod.service_account_name != sa_name {
                        return Err(Error::BadRequest(format!(
                            "cannot bind token for serviceaccount {} to pod running with different serviceaccount name.",
                            quote(&sa_name)
                        )));
                    }
                    if !pod.node_name.is_empty() {
                        let uid = lookup.node(&pod.node_name).map(|n| n.uid).unwrap_or_default();
                        kube.node = Some(Ref { name: pod.node_name.clone(), uid });
                    }
                    kube.pod = Some(Ref { name: name.into(), uid: pod.uid.clone() });
                    pod_bound = true;
                    pod.uid
                }
                ("", "Secret") => {
                    let s = lookup.secret(&sa_ns, name).ok_or_else(|| Error::NotFound {
                        group: String::new(),
                        resource: "secrets".into(),
                        name: name.into(),
                    })?;
                    kube.secret = Some(Ref { name: name.into(), uid: s.uid.clone() });
                    s.uid
                }
                ("", "Node") => {
                    let n = lookup.node(name).ok_or_else(|| Error::NotFound {
                        group: String::new(),
                        resource: "nodes".into(),
                        name: name.into(),
                    })?;
                    kube.node = Some(Ref { name: name.into(), uid: n.uid.clone() });
                    n.uid
                }
                _ => {
                    let gvk = if group.is_empty() { format!("/, Kind={kind}") } else { format!("{group}/, Kind={kind}") };
                    return Err(Error::BadRequest(format!("cannot bind token to object of type {gvk}")));
                }
            };
            if let Some(uid) = r.uid.as_deref().filter(|u| !u.is_empty())
                && uid != found
            {
                return Err(Error::BadRequest(format!(
                    "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                )));
            }
        }
        if let Some(max) = self.max_expiration_seconds
            && max > 0
            && expiration > max
        {
            expiration = max;
            req.spec.expiration_seconds = Some(max);
        }
        req.spec.expiration_seconds = Some(expiration);
        let mut token_lifetime = expiration;
        let kube_audiences = req.spec.audiences.iter().all(|a| self.api_audiences.contains(a));
        if self.extend_expiration && pod_bound && expiration == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS && kube_audiences {
            kube.warnafter = Some(now.as_second() + expiration);
            token_lifetime = EXPIRATION_EXTENSION_SECONDS;
        }
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: service_account_username(&sa_ns, &sa_name),
            aud: req.spec.audiences.clone(),
            exp: Some(now.as_second() + token_lifetime),
            nbf: Some(now.as_second()),
            iat: Some(now.as_second()),
            jti: (!jti.is_empty()).then(|| jti.to_string()),
            kubernetes: kube,
        };
        let token = self.sign(&claims)?;
        req.status = Some(TokenRequestStatus { token, expiration_timestamp: Time(add_seconds(now, expiration)) });
        Ok(req)
    }

    fn sign(&self, claims: &Claims) -> Result<String, Error> {
        let mut header = jsonwebtoken::Header::new(self.key.algorithm);
        header.typ = None;
        header.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&header, claims, self.key.encoding()).map_err(|e| Error::Signing(e.to_string()))
    }
}

/// Authenticates service account tokens (`--service-account-key-file`, `--service-account-issuer`).
#[derive(Debug, Clone)]
pub struct ServiceAccountAuthenticator {
    keys: Vec<VerifyingKey>,
    issuers: Vec<String>,
    api_audiences: Vec<String>,
}

fn unauthenticated(msg: impl Into<String>) -> Error {
    Error::Unauthenticated(msg.into())
}

fn deleted_before(deletion: Option<Timestamp>, limit: i64) -> bool {
    deletion.is_some_and(|d| d.as_second() < limit)
}

impl ServiceAccountAuthenticator {
    /// Accepts tokens from any of `issuers` (the first is the one this apiserver issues as)
    /// signed by one of `keys`, for one of `api_audiences` (default: the issuers).
    pub fn new(keys: Vec<VerifyingKey>, issuers: &[String], api_audiences: &[String]) -> ServiceAccountAuthenticator {
        let api_audiences = if api_audiences.is_empty() { issuers.to_vec() } else { api_audiences.to_vec() };
        ServiceAccountAuthenticator { keys, issuers: issuers.to_vec(), api_audiences }
    }

    /// `Ok(None)` when the token is not a service account token of ours (another
    /// authenticator may know it), the user when it is valid, `Unauthenticated` otherwise.
    pub fn authenticate(&self, token: &str, lookup: &dyn ObjectLookup, now: Timestamp) -> Result<Option<UserInfo>, Error> {
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Ok(None) };
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else { return Ok(None) };
        let Ok(unverified) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Ok(None) };
        let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or("");
        if !self.issuers.iter().any(|i| i == iss) {
            return Ok(None);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| unauthenticated(e.to_string()))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut candidates: Vec<&VerifyingKey> = self.keys.iter().filter(|k| k.algorithm == header.alg).collect();
        // The key the header names first; kube tries every key.
        candidates.sort_by_key(|k| header.kid.as_deref() != Some(k.kid.as_str()));
        let claims = candidates
            .iter()
            .find_map(|k| jsonwebtoken::decode::<Claims>(token, k.decoding(), &validation).ok())
            .map(|d| d.claims)
            .ok_or_else(|| unauthenticated("invalid signature"))?;

        let token_auds = if claims.aud.is_empty() { self.api_audiences.clone() } else { claims.aud.clone() };
        if !token_auds.iter().any(|a| self.api_audiences.contains(a)) {
            return Err(unauthenticated(format!(
                "token audiences {} is invalid for the target audiences {}",
                quote_list(&token_auds),
                quote_list(&self.api_audiences)
            )));
        }
        let t = now.as_second();
        if claims.nbf.is_some_and(|nbf| t + LEEWAY_SECONDS < nbf) {
            return Err(unauthenticated("service account token is not valid yet"));
        }
        if claims.exp.is_some_and(|exp| t - LEEWAY_SECONDS > exp) {
            return Err(unauthenticated("service account token has expired"));
        }
        if claims.iat.is_some_and(|iat| t + LEEWAY_SECONDS < iat) {
            return Err(unauthenticated("service account token claims could not be validated due to unexpected validation error"));
        }

        let k = &claims.kubernetes;
        let (ns, sa) = (k.namespace.as_str(), &k.serviceaccount);
        if ns.is_empty() || sa.name.is_empty() || claims.sub != service_account_username(ns, &sa.name) {
            return Err(unauthenticated("service account token claims could not be validated"));
        }
        let invalid_if_deleted_before = t - LEEWAY_SECONDS;
        let found = lookup
            .service_account(ns, &sa.name)
            .ok_or_else(|| unauthenticated(format!("serviceaccounts {} not found", quote(&sa.name))))?;
        if deleted_before(found.deletion, invalid_if_deleted_before) {
            return Err(unauthenticated(format!("service account {ns}/{} has been deleted", sa.name)));
        }
        if found.uid != sa.uid {
            return Err(unauthenticated(format!("service account UID ({}) does not match claim ({})", found.uid, sa.uid)));
        }
        if let Some(s) = &k.secret {
            match lookup.secret(ns, &s.name) {
                Some(o) if !deleted_before(o.deletion, invalid_if_deleted_before) && o.uid == s.uid => {}
                Some(o) if o.uid != s.uid && !deleted_before(o.deletion, invalid_if_deleted_before) => {
                    return Err(unauthenticated(format!(
                        "secret UID ({}) does not match service account secret ref claim ({})",
                        o.uid, s.uid
                    )));
                }
                _ => return Err(unauthenticated("service account token has been invalidated")),
            }
        }
        if let Some(p) = &k.pod {
            match lookup.pod(ns, &p.name) {
                Some(o) if !deleted_before(o.deletion, invalid_if_deleted_before) && o.uid == p.uid => {}
                Some(o) if o.uid != p.uid && !deleted_before(o.deletion, invalid_if_deleted_before) => {
                    return Err(unauthenticated(format!("pod UID ({}) does not match service account pod ref claim ({})", o.uid, p.uid)));
                }
                _ => return Err(unauthenticated("service account token has been invalidated")),
            }
        } else if let Some(n) = &k.node {
            match lookup.node(&n.name) {
                Some(o) if !deleted_before(o.deletion, invalid_if_deleted_before) && o.uid == n.uid => {}
                _ => return Err(unauthenticated("service account token has been invalidated")),
            }
        }

        let mut user = UserInfo { name: claims.sub.clone(), uid: sa.uid.clone(), groups: service_account_groups(ns), ..Default::default() };
        if let Some(p) = k.pod.as_ref().filter(|p| !p.name.is_empty() && !p.uid.is_empty()) {
            user.extra.insert(extra::POD_NAME.into(), vec![p.name.clone()]);
            user.extra.insert(extra::POD_UID.into(), vec![p.uid.clone()]);
        }
        if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
            user.extra.insert(extra::CREDENTIAL_ID.into(), vec![format!("JTI={jti}")]);
        }
        if let Some(n) = k.node.as_ref().filter(|n| !n.name.is_empty()) {
            user.extra.insert(extra::NODE_NAME.into(), vec![n.name.clone()]);
            if !n.uid.is_empty() {
                user.extra.insert(extra::NODE_UID.into(), vec![n.uid.clone()]);
            }
        }
        Ok(Some(user))
    }
}

#[cfg(test)]
#[path = "serviceaccount_tests.rs"]
mod tests;
