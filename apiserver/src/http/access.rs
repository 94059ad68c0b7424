//! Authentication and authorization in front of every route, as kube-apiserver's filter chain
//! (authentication → impersonation → authorization, then the handler), decided by keel-access
//! ([`keel_access::Access::check`]): x509 client certificates (`--client-ca-file`, CN the
//! user, O the groups), `--token-auth-file` bearer tokens, anonymous requests
//! (`--anonymous-auth`), `Impersonate-*` headers, and the `--authorization-mode` chain. A
//! refusal is kube's Status: 401 for bad credentials, 403 with kube's message
//! (`pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the
//! namespace "dev"`).
//!
//! Keel differs from kube in one way for now: the front is on only when one of those flags is
//! given (see `main.rs`), because the kubeconfigs Keel writes carry a token nobody checks yet.
//! `RBAC` decides over the RBAC objects the feeders of [`crate::rest::rbac`] keep in keel-access's
//! policy, `Node` over the graph [`crate::rest::node_graph`] keeps from the pods. The acting
//! user goes on to the handlers as a [`Requester`] in the request's extensions.
//!
//! ServiceAccount tokens name objects (the service account, and the pod, secret or node a token
//! is bound to) that must still exist with the uid the token carries. keel-access asks for them
//! synchronously; the front answers from what it has found so far, else from the watch caches
//! in place ([`Objects::cached`]), so a token whose objects are cached is checked (its signature
//! verified) once. Only when keel-access asked for something neither holds does the front find
//! those asynchronously through [`Objects::find`] (the caches, then a live store read, as kube
//! falls back to a live lookup) and check again. A request without such a token asks for
//! nothing, so it costs one check as before.

use crate::http::audit::{Failure, Subject};
use crate::http::serve::PeerCertificates;
use crate::seams::Clock;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use keel_access::authn::serviceaccount::{ObjectLookup, ObjectRef};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the front needs: keel-access's state, the clock (token expiry) and where the objects
/// tokens name are found.
pub struct Front {
    /// Built from the flags once.
    pub access: Arc<keel_access::Access>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// The service accounts, pods, secrets and nodes tokens name (None: none are found, so
    /// every ServiceAccount token is refused).
    pub objects: Option<Arc<dyn Objects>>,
}

/// The kinds of objects a ServiceAccount token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Named {
    /// The token's service account.
    ServiceAccount,
    /// The pod it is bound to.
    Pod,
    /// The secret it is bound to.
    Secret,
    /// The node it is bound to (cluster-scoped: empty namespace).
    Node,
}

/// Where the front finds the objects tokens name.
pub trait Objects: Send + Sync {
    /// The object of `kind` called `name` in `namespace` (empty for nodes) if what is at hand
    /// without waiting (a started watch cache) holds it; `None` says only "not at hand", and
    /// the front then asks [`Objects::find`].
    fn cached(&self, kind: Named, namespace: &str, name: &str) -> Option<ObjectRef>;
    /// The object of `kind` called `name` in `namespace` (empty for nodes), if it exists.
    fn find<'a>(&'a self, kind: Named, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Option<ObjectRef>>;
}

type Key = (Named, String, String);

/// A lookup over what has been found so far, then what [`Objects::cached`] holds; what
/// keel-access asks for beyond both is noted (and answered "absent" for now).
struct Found<'a> {
    found: &'a BTreeMap<Key, Option<ObjectRef>>,
    objects: Option<&'a dyn Objects>,
    missing: std::sync::Mutex<Vec<Key>>,
}

impl Found<'_> {
    fn get(&self, kind: Named, ns: &str, name: &str) -> Option<ObjectRef> {
        let key = (kind, ns.to_string(), name.to_string());
        if let Some(v) = self.found.get(&key) {
            return v.clone();
        }
        if let Some(v) = self.objects.and_then(|o| o.cached(kind, ns, name)) {
            return Some(v);
        }
        self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(key);
        None
    }
}

impl ObjectLookup for Found<'_> {
    fn service_account(&self, ns: &str, name: &str) -> Option<ObjectRef> {
        self.get(Named::ServiceAccount, ns, name)
    }
    fn pod(&self, ns: &str, name: &str) -> Option<ObjectRef> {
        self.get(Named::Pod, ns, name)
    }
    fn secret(&self, ns: &str, name: &str) -> Option<ObjectRef> {
        self.get(Named::Secret, ns, name)
    }
    fn node(&self, name: &str) -> Option<ObjectRef> {
        self.get(Named::Node, "", name)
    }
}

/// A token names at most a service account, a pod, a secret and a node: after this many rounds
/// of finding, every lookup has been answered.
const FIND_ROUNDS: usize = 5;

/// keel-access's verdict on `head`, finding the objects a token names as it asks for them.
async fn decide(front: &Front, head: &keel_access::RequestHead<'_>) -> Result<keel_access::Allowed, Box<keel_access::Refused>> {
    decide_counted(front, head).await.0
}

/// [`decide`], and how many times it ran keel-access's check (1 unless a named object was not
/// at hand in the caches).
async fn decide_counted(
    front: &Front,
    head: &keel_access::RequestHead<'_>,
) -> (Result<keel_access::Allowed, Box<keel_access::Refused>>, usize) {
    let now = front.clock.now();
    let mut found = BTreeMap::new();
    let mut round = 0;
    loop {
        round += 1;
        let lookup = Found { found: &found, objects: front.objects.as_deref(), missing: std::sync::Mutex::new(Vec::new()) };
        let verdict = front.access.check(head, &lookup, now);
        let missing = lookup.missing.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(objects) = front.objects.as_ref().filter(|_| !missing.is_empty() && round < FIND_ROUNDS) else { return (verdict, round) };
        for (kind, ns, name) in missing {
            let v = objects.find(kind, &ns, &name).await;
            found.insert((kind, ns, name), v);
        }
    }
}

/// The request's authorization attributes with the user it acts as (after impersonation), put
/// in the request's extensions for the handlers (admission that depends on the user:
/// NodeRestriction, RBAC escalation checks; the review endpoints).
#[derive(Clone, Debug)]
pub struct Requester(pub Arc<keel_access::attributes::Attributes>);

/// The middleware: the request goes on only if keel-access allows it.
pub async fn check(State(front): State<Arc<Front>>, mut req: Request, next: Next) -> Response {
    let verdict = {
        // Owned copies: the lookups may await, and the request (its body) is not Sync.
        let owned: Vec<(String, String)> =
            req.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))).collect();
        let headers: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let peer = req.extensions().get::<PeerCertificates>().map(|p| p.0.clone());
        let (method, path, query) =
            (req.method().as_str().to_string(), req.uri().path().to_string(), req.uri().query().unwrap_or_default().to_string());
        let head = keel_access::RequestHead {
            method: &method,
            path: &path,
            query: &query,
            headers: &headers,
            peer_certificates: peer.as_deref().map(Vec::as_slice),
        };
        decide(&front, &head).await
    };
    match verdict {
        Ok(allowed) => {
            let attributes = Arc::new(allowed.attributes);
            req.extensions_mut().insert(Requester(attributes.clone()));
            let mut response = next.run(req).await;
            let impersonated = allowed.impersonated.then(|| attributes.user.clone());
            let decision = Some(("allow", allowed.reason));
            response.extensions_mut().insert(Subject { attributes, user: allowed.authenticated, impersonated, decision });
            response
        }
        Err(refused) => {
            let refused = *refused;
            let code = StatusCode::from_u16(refused.error.code()).unwrap_or(StatusCode::FORBIDDEN);
            let status = refused.error.status();
            let mut response = (code, [(header::CONTENT_TYPE, "application/json")], refused.error.status_json()).into_response();
            let user = refused.authenticated.unwrap_or_default();
            // The acting user differs from who authenticated only when impersonating.
            let impersonated = (refused.attributes.user != user).then(|| refused.attributes.user.clone()).filter(|u| !u.name.is_empty());
            let decision = refused.reason.map(|r| ("forbid", r));
            let failure = serde_json::to_value(&status).unwrap_or_default();
            response.extensions_mut().insert(Failure(Arc::new(failure)));
            response.extensions_mut().insert(Subject { attributes: Arc::new(refused.attributes), user, impersonated, decision });
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct At(jiff::Timestamp);
    impl Clock for At {
        fn now(&self) -> jiff::Timestamp {
            self.0
        }
    }

    /// The service account `dev/builder` (uid `sa-uid`), in the cache or only in the store.
    struct World {
        in_cache: bool,
        finds: AtomicUsize,
    }
    fn builder() -> ObjectRef {
        ObjectRef { uid: "sa-uid".into(), ..Default::default() }
    }
    impl Objects for World {
        fn cached(&self, kind: Named, ns: &str, name: &str) -> Option<ObjectRef> {
            (self.in_cache && (kind, ns, name) == (Named::ServiceAccount, "dev", "builder")).then(builder)
        }
        fn find<'a>(&'a self, kind: Named, ns: &'a str, name: &'a str) -> BoxFuture<'a, Option<ObjectRef>> {
            self.finds.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { ((kind, ns, name) == (Named::ServiceAccount, "dev", "builder")).then(builder) })
        }
    }
    impl ObjectLookup for World {
        fn service_account(&self, ns: &str, name: &str) -> Option<ObjectRef> {
            self.cached(Named::ServiceAccount, ns, name)
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

    fn access() -> keel_access::Access {
        let dir = std::env::temp_dir().join(format!("keel-apiserver-front-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("sa.key");
        std::fs::write(&key, keel_access::authn::keys::generate_signing_key_pem().unwrap()).unwrap();
        let cfg = keel_access::AccessConfig {
            service_account_signing_key_file: Some(key),
            service_account_issuers: vec!["https://kubernetes.default.svc.cluster.local".into()],
            authorization_mode: "AlwaysAllow".into(),
            ..Default::default()
        };
        let a = keel_access::Access::from_config(&cfg).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        a
    }

    #[tokio::test]
    async fn a_token_whose_objects_are_cached_is_checked_once_and_a_miss_goes_to_find() {
        let access = Arc::new(access());
        let now = jiff::Timestamp::UNIX_EPOCH;
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "builder", "namespace": "dev", "uid": "sa-uid"}})).unwrap();
        let req: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
        let seen = World { in_cache: true, finds: AtomicUsize::new(0) };
        let issuer = access.issuer.as_ref().unwrap();
        let token = issuer.token_request(&sa, req, &seen, now, "jti").unwrap().status.unwrap().token;
        let bearer = format!("Bearer {token}");
        let headers = [("authorization", bearer.as_str())];
        let head = keel_access::RequestHead {
            method: "GET",
            path: "/api/v1/namespaces/dev/pods",
            query: "",
            headers: &headers,
            peer_certificates: None,
        };
        // (in the cache, checks, finds): a cached object costs one check and no find; one only
        // the store has costs a find and a second check; both authenticate the service account.
        for (in_cache, checks, finds) in [(true, 1, 0), (false, 2, 1)] {
            let world = Arc::new(World { in_cache, finds: AtomicUsize::new(0) });
            let front = Front { access: access.clone(), clock: Arc::new(At(now)), objects: Some(world.clone()) };
            let (verdict, rounds) = decide_counted(&front, &head).await;
            let allowed = verdict.map_err(|r| r.error.to_string()).unwrap();
            assert_eq!(allowed.attributes.user.name, "system:serviceaccount:dev:builder", "in cache: {in_cache}");
            assert_eq!((rounds, world.finds.load(Ordering::SeqCst)), (checks, finds), "in cache: {in_cache}");
        }
    }
}
