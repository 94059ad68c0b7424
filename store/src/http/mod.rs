//! HTTP on the client port, beside gRPC, as etcd serves it: `/health`, `/livez`, `/readyz`,
//! `/version`, `/metrics`, and the JSON gateway under `/v3/` ([`gateway`]).
//!
//! - [`gateway`]: etcd's grpc-gateway routes over the same service code as gRPC.

pub mod gateway;

use crate::server::Services;
use crate::server::context::Context;
use crate::server::maintenance::{ETCD_CLUSTER_VERSION, ETCD_VERSION};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_proto::etcdserverpb::RangeRequest;
use std::sync::Arc;

/// Everything the HTTP handlers reach.
#[derive(Clone)]
pub struct HttpState {
    /// The member the services serve.
    pub ctx: Arc<Context>,
    /// The services the gateway calls.
    pub services: Services,
}

/// Health, version and metrics.
fn status_routes() -> Router<HttpState> {
    Router::new()
        .route("/health", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(livez))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
}

/// The router of `--listen-metrics-urls`: metrics and health only, as etcd serves there (no
/// gateway, no gRPC: that port has no client TLS).
pub fn metrics_router(state: HttpState) -> Router {
    status_routes().with_state(state)
}

/// The router for every HTTP path on the client port.
pub fn router(state: HttpState) -> Router {
    status_routes().merge(gateway::routes()).with_state(state)
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn health(State(st): State<HttpState>) -> Response {
    if st.ctx.applied.no_space() {
        return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false","reason":"ALARM NOSPACE"}"#.into());
    }
    // Like etcd's QGET: a linearizable read through the same path clients use, given 1 s.
    let probe = RangeRequest { key: bytes::Bytes::from_static(b"health"), ..Default::default() };
    let anyone = crate::auth::Caller::default();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(1), st.services.kv.range(&probe, &anyone)).await;
    match answer.unwrap_or(Err(crate::error::Error::Timeout)) {
        // With auth on, an anonymous read is refused after the read went through: healthy
        // (etcd's rule).
        Ok(_) | Err(crate::error::Error::UserEmpty | crate::error::Error::PermissionDenied) => {
            json(StatusCode::OK, r#"{"health":"true","reason":""}"#.into())
        }
        Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"health": "false", "reason": e.to_string()}).to_string()),
    }
}

async fn livez() -> Response {
    (StatusCode::OK, "ok").into_response()
}

async fn version() -> Response {
    json(StatusCode::OK, serde_json::json!({"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION}).to_string())
}

async fn metrics(State(st): State<HttpState>) -> Response {
    let (a, r) = (&st.ctx.applied, &st.ctx.replica);
    let (has_leader, is_leader) = (r.leader_id().is_some(), r.is_leader());
    let gauges = [
        ("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database in bytes.", a.backend.size_bytes() as f64),
        ("etcd_debugging_mvcc_current_revision", "The current revision of the store.", a.visible().0 as f64),
        ("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", a.hub.watcher_count() as f64),
        ("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", f64::from(u8::from(has_leader))),
        ("etcd_server_is_leader", "Whether or not this member is a leader.", f64::from(u8::from(is_leader))),
        ("keel_applied_index", "Commands applied by this member.", a.applied_index().0 as f64),
    ];
    (StatusCode::OK, [(CONTENT_TYPE, "text/plain; version=0.0.4")], st.ctx.metrics.render(&gauges)).into_response()
}
