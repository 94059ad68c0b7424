//! ServiceAccount tokens for projected `serviceAccountToken` sources (kubelet's
//! `pkg/kubelet/token` token manager). One TokenRequest per (namespace, service account,
//! audiences, expirationSeconds, bound pod), bound to the pod (`kind: Pod, apiVersion: v1`, name,
//! uid), cached and reused until [`requires_refresh`]: older than 80 % of its TTL (less a jitter of
//! up to 10 s) or than 24 h.
//!
//! Invariants (kube's):
//! - a failed refresh keeps serving the cached token while it has not expired; a failure with no
//!   usable token is the volume's error (the worker makes it a `FailedMount` event and the
//!   container waits in `ContainerCreating`), never a crash;
//! - failures are retried with the volume manager's backoff (500 ms doubling to 2 m 2 s) per key,
//!   so a refused request is not repeated on every one-second sync;
//! - each pod worker holds its pod's cache, so the pod's tokens go when the pod goes (kube's
//!   `DeleteServiceAccountToken`); expired ones go on the next request (kube's cleanup).

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::Pod;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// `ServiceAccountTokenProjection.expirationSeconds`' default (kube's API defaulting).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// A token older than this is refreshed whatever its TTL (kube's `maxTTL`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The largest refresh jitter (kube's `maxJitter`).
pub const MAX_JITTER: Duration = Duration::from_secs(10);
/// First retry delay after a failed request (kube's `initialDurationBeforeRetry`).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay (kube's `maxDurationBeforeRetry`, 2 m 2 s).
pub const MAX_BACKOFF: Duration = Duration::from_secs(122);

/// What one projection of one pod asks for: the token manager's cache key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenKey {
    /// The pod's namespace.
    pub namespace: String,
    /// `spec.serviceAccountName` (`default` when empty).
    pub service_account: String,
    /// The projection's audience (none: the apiserver's own audiences).
    pub audiences: Vec<String>,
    /// The projection's `expirationSeconds`.
    pub expiration_seconds: i64,
    /// The bound pod's name.
    pub pod_name: String,
    /// The bound pod's uid.
    pub pod_uid: String,
}

impl TokenKey {
    /// The TokenRequest kubelet sends for this key.
    pub fn request(&self) -> TokenRequest {
        TokenRequest {
            spec: TokenRequestSpec {
                audiences: self.audiences.clone(),
                expiration_seconds: Some(self.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.pod_name.clone()),
                    uid: Some(self.pod_uid.clone()),
                }),
            },
            ..Default::default()
        }
    }

    /// The key of the projection asking for `audience` and `expiration_seconds` in `pod`.
    pub fn of(pod: &Pod, audience: &str, expiration_seconds: i64) -> TokenKey {
        let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).filter(|s| !s.is_empty());
        TokenKey {
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            service_account: sa.unwrap_or_else(|| "default".into()),
            audiences: if audience.is_empty() { Vec::new() } else { vec![audience.to_string()] },
            expiration_seconds,
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// The (audience, expirationSeconds) of every `serviceAccountToken` projection in `pod`.
pub fn projections(pod: &Pod) -> BTreeSet<(String, i64)> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let sources = volumes.filter_map(|v| v.projected.as_ref()).flat_map(|p| p.sources.iter().flatten());
    sources
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| (t.audience.clone().unwrap_or_default(), t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS)))
        .collect()
}

/// A token the apiserver issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// `status.expirationTimestamp`.
    pub expires: Timestamp,
    /// The answer's `spec.expirationSeconds` (what was granted).
    pub expiration_seconds: Option<i64>,
}

impl Issued {
    /// The issued token in an answered TokenRequest.
    pub fn from_answer(tr: &TokenRequest) -> Option<Issued> {
        let status = tr.status.as_ref()?;
        Some(Issued { token: status.token.clone(), expires: status.expiration_timestamp.0, expiration_seconds: tr.spec.expiration_seconds })
    }
}

/// kube's `expired`: now is past the expiration.
pub fn expired(t: &Issued, now: Timestamp) -> bool {
    now > t.expires
}

/// kube's `requiresRefresh`: older than 24 h (less `jitter`), or within 20 % of its TTL (plus
/// `jitter`) of expiring. Without a granted TTL it is never refreshed early.
pub fn requires_refresh(t: &Issued, now: Timestamp, jitter: Duration) -> bool {
    let Some(ttl) = t.expiration_seconds else { return false };
    let secs = |s: i64| jiff::SignedDuration::from_secs(s);
    let jitter = secs(jitter.as_secs() as i64);
    let issued_at = t.expires.saturating_sub(secs(ttl)).unwrap_or(t.expires);
    let max_ttl = secs(MAX_TTL.as_secs() as i64);
    if now > issued_at.saturating_add(max_ttl - jitter).unwrap_or(Timestamp::MAX) {
        return true;
    }
    now > t.expires.saturating_sub(secs(ttl * 20 / 100) + jitter).unwrap_or(Timestamp::MIN)
}

#[derive(Debug, Default)]
struct Entry {
    issued: Option<Issued>,
    /// The last failure, when the next request may go, and the delay after that.
    failure: Option<(String, Instant, Duration)>,
}

/// A token cache (one per pod worker).
pub struct TokenManager {
    cache: Mutex<BTreeMap<TokenKey, Entry>>,
    rng: Mutex<rand::rngs::StdRng>,
}

impl TokenManager {
    /// An empty cache; `seed` drives the refresh jitter.
    pub fn new(seed: u64) -> TokenManager {
        TokenManager { cache: Mutex::new(BTreeMap::new()), rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)) }
    }

    fn jitter(&self) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_secs(rng.random_range(0..MAX_JITTER.as_secs()))
    }

    /// The token for `key`: the cached one while it needs no refresh, else a new one from
    /// `fetch` (the TokenRequest; its error as text). A failed refresh falls back to the cached
    /// token until it expires.
    pub async fn get<F, Fut>(&self, key: &TokenKey, now: Timestamp, fetch: F) -> Result<String, String>
    where
        F: FnOnce(TokenRequest) -> Fut,
        Fut: Future<Output = Result<TokenRequest, String>>,
    {
        let mono = Instant::now();
        let jitter = self.jitter();
        let cached = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.retain(|k, e| k == key || !e.issued.as_ref().is_some_and(|t| expired(t, now)));
            let entry = cache.entry(key.clone()).or_default();
            let cached = entry.issued.clone().filter(|t| !expired(t, now));
            if let Some(t) = cached.as_ref().filter(|t| !requires_refresh(t, now, jitter)) {
                return Ok(t.token.clone());
            }
            if let Some((why, until, _)) = &entry.failure
                && mono < *until
            {
                return match cached {
                    Some(t) => Ok(t.token),
                    None => Err(why.clone()),
                };
            }
            cached
        };
        let answer = fetch(key.request())
            .await
            .and_then(|tr| Issued::from_answer(&tr).ok_or_else(|| "the TokenRequest answer has no status".to_string()));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.entry(key.clone()).or_default();
        match answer {
            Ok(t) => {
                entry.failure = None;
                let token = t.token.clone();
                entry.issued = Some(t);
                Ok(token)
            }
            Err(e) => {
                let delay = entry.failure.as_ref().map(|f| (f.2 * 2).min(MAX_BACKOFF)).unwrap_or(INITIAL_BACKOFF);
                let why = match (&cached, &entry.issued) {
                    (None, Some(_)) => format!("token for service account {:?} expired and refresh failed: {e}", key.service_account),
                    _ => format!("failed to fetch token: {e}"),
                };
                entry.failure = Some((why.clone(), mono + delay, delay));
                match cached {
                    Some(t) => {
                        tracing::warn!(namespace = %key.namespace, pod = %key.pod_name, error = %e, "couldn't refresh a service account token; using the cached one");
                        Ok(t.token)
                    }
                    None => Err(why),
                }
            }
        }
    }

    /// How many tokens are cached (for tests and metrics).
    pub fn len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
