//! The REST layer: what each request does, over the registry (per-kind rules) and storage.
//!
//! - [`object`]: get, create (and the built-in namespaces), update, patch; [`apply`]:
//!   server-side apply (also of `/status`); [`delete`] (DELETE, the namespace lifecycle) and
//!   [`deletion`] (what a delete does to one object: graceful, finalizers); every change of a stored object goes through [`guarded::guarded_update`], the one
//!   read → compute → guarded write → retry loop;
//! - [`list`] (paged lists at one revision, deletecollection), [`watch`] (event streams from
//!   the watch cache), [`scale`], [`pods`] (binding, eviction), [`services`] (ClusterIP and
//!   NodePort allocation in the Service's write, the `default/kubernetes` Service and Endpoints);
//! - what kubelets answer: [`connect`] (`pods/log`, `pods/exec`, `nodes/proxy`) and
//!   [`metrics`] (metrics.k8s.io), through [`crate::kubelet`];
//! - [`quota`]: ResourceQuota charges written in the object's own Txn;
//! - [`token`]: ServiceAccount tokens (TokenRequest, and the objects tokens name);
//! - [`rbac`]: the default RBAC policy and the feeders of keel-access's policy, [`escalation`]:
//!   nobody grants what they do not hold; [`node_graph`]:
//!   the Node authorizer's graph from the pods; both through [`feed`];
//! - [`admission`]: kube's admission steps (Priority, DefaultTolerationSeconds, TaintNodesByCondition,
//!   one default PriorityClass) and [`node_restriction`] (kubelets keep to their own Node and pods);
//! - pure cores: [`patch`] (merge, JSON and strategic patches), [`smp`], [`managed`]
//!   (managedFields and server-side apply).
//!
//! [`Api`] holds what the handlers share and implements [`crate::http::Backend`].

pub mod admission;
pub mod apply;
pub mod connect;
pub mod delete;
pub mod deletion;
pub mod escalation;
pub mod feed;
pub mod guarded;
pub mod list;
pub mod managed;
pub mod metrics;
pub mod node_graph;
pub mod node_restriction;
pub mod object;
pub mod patch;
pub mod pods;
pub mod quota;
pub mod rbac;
pub mod scale;
pub mod services;
pub mod smp;
pub mod token;
pub mod watch;

use crate::error::ApiError;
use crate::http::request::{Call, Output};
use crate::http::{Backend, json, table};
use crate::registry::Subresource;
use crate::seams::{Clock, Ids};
use crate::storage::cache::Caches;
use crate::storage::leases::EventLeases;
use crate::storage::{Store, Stored, keys};
use crate::tasks::Spawner;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// What the handlers share: the store and its caches, the seams, the settings.
pub struct Api {
    /// The store.
    pub store: Store,
    /// One store watch per resource for every client watch.
    pub caches: Caches,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// uids and name suffixes.
    pub ids: Ids,
    /// The address clients reach this server at (legacy `/api` reports it).
    pub advertise: String,
    /// How long a watch without `timeoutSeconds` stays open.
    pub watch_timeout: Duration,
    /// The leases events expire with.
    pub event_leases: EventLeases,
    /// Where watch streams and background deletions run (the server's task set).
    pub spawner: Spawner,
    /// Seconds of the tolerations of not-ready and unreachable nodes a pod gets by default.
    pub default_toleration_seconds: (i64, i64),
    /// The admission plugins that run ([`admission::PLUGINS`] by kube's names).
    pub admission_plugins: std::collections::BTreeSet<String>,
    /// The client to kubelets (logs, exec, node proxy, metrics).
    pub kubelets: crate::kubelet::KubeletClient,
    /// `--service-cluster-ip-range` and `--service-node-port-range`.
    pub service_ranges: crate::registry::service_alloc::Ranges,
    /// keel-access (authorizers, RBAC policy), when authentication is on: RBAC writes are
    /// checked against it ([`escalation`]).
    pub access: Option<Arc<keel_access::Access>>,
}

impl Api {
    /// Now, as Kubernetes writes timestamps (RFC 3339, seconds).
    pub fn now_rfc3339(&self) -> String {
        self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Now, in seconds.
    pub fn now_secs(&self) -> i64 {
        self.clock.now().as_second()
    }

    /// One object answered as JSON, or as a one-row Table when kubectl asks for one.
    pub fn answer(&self, call: &Call, code: StatusCode, obj: &Value) -> Response {
        let mut response = match call.output {
            Output::Table => {
                let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
                json(code, &table::table(call.target.res, std::slice::from_ref(obj), rv, None, self.now_secs()))
            }
            Output::Json => json(code, obj),
        };
        // A create names its object in the body; the audit line's objectRef names it too.
        if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) {
            response.extensions_mut().insert(crate::http::audit::ObjectName(name.to_string()));
        }
        response
    }

    /// What `s` holds, as an object of the call's resource (converted from the stored version).
    pub fn view(&self, call: &Call, s: &Stored) -> Result<Value, ApiError> {
        Ok(call.target.res.strategy.from_storage(crate::storage::decode(s)?))
    }

    /// The object the call's path names: its key and what is stored (404 if nothing).
    pub async fn read(&self, call: &Call) -> Result<(String, Stored), ApiError> {
        let name = call.name()?;
        let k = keys::key(call.target.res, call.target.namespace.as_deref(), name);
        match self.store.get(&k).await? {
            Some(s) => Ok((k, s)),
            None => Err(not_found(call, name)),
        }
    }

    async fn dispatch(self: Arc<Self>, method: Method, call: Call) -> Result<Response, ApiError> {
        let api = &self;
        match (call.target.sub, &method) {
            (Some(Subresource::Binding), &Method::POST) => return pods::bind(api, &call).await,
            (Some(Subresource::Eviction), &Method::POST) => return pods::evict(api, &call).await,
            (Some(Subresource::Binding | Subresource::Eviction), _) => return Err(ApiError::MethodNotAllowed),
            (Some(Subresource::Scale), &Method::GET) => return scale::get(api, &call).await,
            (Some(Subresource::Scale), &Method::PUT | &Method::PATCH) => return scale::set(api, &call).await,
            (Some(Subresource::Scale), _) => return Err(ApiError::MethodNotAllowed),
            (Some(Subresource::Finalize), &Method::PUT) => return delete::finalize(api, &call).await,
            (Some(Subresource::Finalize), _) => return Err(ApiError::MethodNotAllowed),
            (Some(Subresource::Token), &Method::POST) => return token::create(api, &call).await,
            (Some(Subresource::Token), _) => return Err(ApiError::MethodNotAllowed),
            _ => {}
        }
        match (method, call.target.name.is_some()) {
            (Method::GET, false) if call.flag("watch") => watch::serve(self.clone(), call).await,
            (Method::GET, false) => list::list(api, &call).await,
            (Method::GET, true) => object::get(api, &call).await,
            (Method::POST, false) => object::create(api, &call).await,
            (Method::PUT, true) => object::update(api, &call).await,
            (Method::PATCH, true) => object::patch(api, &call).await,
            (Method::DELETE, true) => delete::delete(api, &call).await,
            (Method::DELETE, false) => list::delete_collection(api, &call).await,
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

/// 404 for the object the call names.
pub fn not_found(call: &Call, name: &str) -> ApiError {
    ApiError::NotFound { resource: call.target.res.qualified(), name: name.into() }
}

/// 409 Conflict for the object the call names.
pub fn conflict(call: &Call) -> ApiError {
    ApiError::Conflict { resource: call.target.res.qualified(), name: call.target.name.clone().unwrap_or_default() }
}

impl Backend for Api {
    fn resource(self: Arc<Self>, method: Method, call: Call) -> BoxFuture<'static, Result<Response, ApiError>> {
        Box::pin(self.dispatch(method, call))
    }

    fn connect(self: Arc<Self>, method: Method, call: Call, parts: http::request::Parts) -> BoxFuture<'static, Result<Response, ApiError>> {
        Box::pin(async move { connect::serve(&self, method, call, parts).await })
    }

    fn metrics(
        self: Arc<Self>,
        target: crate::http::MetricsTarget,
        query: crate::http::request::Query,
    ) -> BoxFuture<'static, Result<Response, ApiError>> {
        Box::pin(async move { metrics::serve(&self, target, query).await })
    }

    fn health(self: Arc<Self>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move { self.store.revision().await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn advertise(&self) -> &str {
        &self.advertise
    }
}
