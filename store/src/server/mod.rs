//! The gRPC services: thin shells that validate, call the core (state machine, proposer, watch
//! hub) and map errors. Each service exposes its calls as plain async methods returning
//! [`crate::error::Result`] and taking the [`Caller`]; they check the caller first, through
//! [`context::Context::admit`], so gRPC and the HTTP gateway serve the very same code and the same checks.
//!
//! - [`context`]: [`context::Context`], what all services share.
//! - [`rpc`]: every RPC's access rule, the one authorization point.
//! - [`metrics`]: per-RPC counts and latencies, recorded by one tower layer.
//! - [`grpc_limit`]: the received-message limit, refused in grpc-go's words.
//! - [`kv`], [`watch`], [`lease`], [`maintenance`], [`cluster`], [`auth`]: etcd's services.
//! - [`lock`], [`election`]: etcd's v3lock and v3election, on the queueing [`recipe`].
//! - [`peer`]: the peer service on 2380 (Raft messages, requests forwarded to the leader).

pub mod auth;
pub mod cluster;
pub mod context;
pub mod date;
pub mod election;
pub mod grpc_limit;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod peer;
pub mod recipe;
pub mod rpc;
pub mod watch;

use crate::apply::{Command, FromOutput};
use crate::auth::{Caller, Guard};
use crate::error::{Error, Internal};
use context::Context;
use tonic::Status;

pub use crate::raft::REQUEST_TIMEOUT;

/// The service objects, shared by gRPC and the HTTP gateway.
#[derive(Clone)]
pub struct Services {
    /// KV.
    pub kv: kv::KvService,
    /// Watch.
    pub watch: watch::WatchService,
    /// Lease.
    pub lease: lease::LeaseService,
    /// Cluster.
    pub cluster: cluster::ClusterService,
    /// Maintenance.
    pub maintenance: maintenance::MaintenanceService,
    /// v3lock.
    pub lock: lock::LockService,
    /// v3election.
    pub election: election::ElectionService,
    /// Auth.
    pub auth: auth::AuthService,
}

impl Services {
    /// Every service of the member `ctx` serves; passwords are hashed at `bcrypt_cost`.
    pub fn new(ctx: &std::sync::Arc<Context>, bcrypt_cost: u32) -> Services {
        let kv = kv::KvService::new(ctx.clone());
        let watch = watch::WatchService::new(ctx.clone());
        Services {
            lease: lease::LeaseService::new(ctx.clone()),
            cluster: cluster::ClusterService::new(ctx.clone()),
            maintenance: maintenance::MaintenanceService::new(ctx.clone()),
            lock: lock::LockService::new(kv.clone(), watch.clone()),
            election: election::ElectionService::new(kv.clone(), watch.clone()),
            auth: auth::AuthService::new(ctx.clone(), bcrypt_cost),
            kv,
            watch,
        }
    }
}

/// Run a call that only the leader may serve: `$local` (a future, with the replica bound to
/// `$r`) when this member leads, else `$remote` against the leader's peer service; again when
/// leadership moved meanwhile (nothing was done then), until the request deadline.
macro_rules! on_leader {
    ($ctx:expr, |$r:ident| $local:expr, $remote:expr) => {{
        let replica = &$ctx.replica;
        let until = tokio::time::Instant::now() + $crate::server::REQUEST_TIMEOUT;
        loop {
            let r = if replica.is_leader() {
                let $r = replica;
                $local.await
            } else {
                replica.call_leader(until, $remote).await
            };
            match r {
                Err($crate::error::Error::NotLeader) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use on_leader;

/// Map a core result to a gRPC one.
pub fn grpc<T>(r: Result<T, Error>) -> Result<tonic::Response<T>, Status> {
    r.map(tonic::Response::new).map_err(Status::from)
}

/// Who sent a gRPC request: its `token` metadata and its verified client certificate's CN.
pub fn caller<T>(req: &tonic::Request<T>) -> Caller {
    Caller {
        // etcd's `token`, or (as etcd also accepts) `authorization`.
        token: req
            .metadata()
            .get("token")
            .or_else(|| req.metadata().get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        cert_cn: req.extensions().get::<crate::tls::conn::ConnInfo>().and_then(|c| c.cert_cn.clone()),
        member: false,
    }
}

/// Propose the member's own `cmd` (not checked against auth), wait (up to [`REQUEST_TIMEOUT`])
/// until it is committed and applied, and return its response body with the header at the
/// revision it produced.
pub async fn propose_as<T: FromOutput>(ctx: &Context, cmd: Command) -> Result<T, Error> {
    propose_at(ctx, cmd, None).await
}

/// [`propose_as`] for a client's request, logged with the `guard` its rights were checked with
/// ([`crate::auth::Authz::guard`]): applied only if the auth store has not changed since.
pub async fn propose_at<T: FromOutput>(ctx: &Context, cmd: Command, guard: Option<Guard>) -> Result<T, Error> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let outcome = ctx.replica.propose(&cmd, guard.as_ref(), deadline).await?;
    let mut body = T::from_output(outcome.output).ok_or(Internal::WrongOutput)?;
    body.set_header(ctx.header(outcome.revision));
    Ok(body)
}
