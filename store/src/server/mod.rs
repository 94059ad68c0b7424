//! The gRPC services: thin shells that validate, call the core (state machine, proposer, watch
//! hub) and map errors. Each service also exposes its calls as plain async methods returning
//! [`crate::error::Result`], so the HTTP gateway serves the very same code.
//!
//! - [`state`]: [`state::Shared`], what all services share.
//! - [`kv`], [`watch`], [`lease`], [`maintenance`], [`cluster`]: etcd's services.
//! - [`lock`], [`election`]: etcd's v3lock and v3election, on the queueing [`recipe`].
//! - [`auth`]: Auth, answering `Unimplemented` (except AuthStatus) until built.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod recipe;
pub mod state;
pub mod watch;

use crate::apply::{Command, FromOutput, Guard};
use crate::error::Error;
use state::Shared;
use std::time::Duration;

/// Wait until a linearizable read may be served on this member (read-index through the leader).
pub async fn read_barrier(shared: &Shared) -> Result<(), Error> {
    let replica = shared.replica()?;
    if shared.bugs.stale_follower_reads && !replica.is_leader() {
        return Ok(());
    }
    replica.read_barrier(tokio::time::Instant::now() + REQUEST_TIMEOUT).await
}
use tonic::Status;

/// How long a request may wait for Raft before the client is told it timed out.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// Run a call that only the leader may serve: `$local` (a future, with the replica bound to
/// `$r`) when this member leads, else `$remote` against the leader's peer service; again when
/// leadership moved meanwhile (nothing was done then), until the request deadline.
macro_rules! on_leader {
    ($shared:expr, |$r:ident| $local:expr, $remote:expr) => {{
        let replica = $shared.replica()?;
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

/// `Unimplemented` for an RPC of etcd's API that Keel does not serve yet (e.g. `"Auth.UserAdd"`).
pub fn unimplemented(rpc: &'static str) -> Status {
    Status::from(Error::Unimplemented(rpc))
}

/// Propose the member's own `cmd` (not checked against auth), wait (up to [`REQUEST_TIMEOUT`])
/// until it is committed and applied, and return its response body with the header at the
/// revision it produced.
pub async fn propose_as<T: FromOutput>(shared: &Shared, cmd: Command) -> Result<T, Error> {
    propose_at(shared, cmd, None).await
}

/// [`propose_as`] for a client's request, logged with the `guard` its rights were checked with
/// ([`crate::auth::Authz::guard`]): applied only if the auth store has not changed since.
pub async fn propose_at<T: FromOutput>(shared: &Shared, cmd: Command, guard: Option<Guard>) -> Result<T, Error> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let applied = shared.replica()?.propose(&cmd, guard.as_ref(), deadline).await?;
    let mut body = T::from_output(applied.output).ok_or_else(|| Error::Storage("a command produced the wrong kind of output".into()))?;
    body.set_header(shared.header(applied.revision));
    Ok(body)
}
