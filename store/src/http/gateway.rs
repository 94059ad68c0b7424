//! etcd's JSON gateway: `POST /v3/<service>/<method>` with a proto3-JSON body (bytes base64,
//! 64-bit integers as strings), answered by the same service code as gRPC. Errors come back as
//! `{"error":…,"message":…,"code":…}` with grpc-gateway's HTTP status for the gRPC code.
//! Streams (`/v3/watch`, `/v3/lease/keepalive`) answer one `{"result":…}` JSON line per message.

use super::HttpState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use keel_proto::etcdserverpb as pb;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use tonic::Code;

/// grpc-gateway's HTTP status for a gRPC code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        // grpc-gateway v1, which etcd 3.4 serves with.
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_response(code: Code, message: &str) -> Response {
    let body = serde_json::json!({"error": message, "message": message, "code": code as i32});
    (http_status(code), [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error(e: Error) -> Response {
    error_response(e.code(), &e.to_string())
}

/// A body that is not valid JSON for the request, as grpc-gateway reports it.
struct BadBody(Code, String);

impl BadBody {
    fn response(self) -> Response {
        error_response(self.0, &self.1)
    }
}

fn parse<Req: DeserializeOwned + Default>(body: &[u8]) -> std::result::Result<Req, BadBody> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Req::default());
    }
    serde_json::from_slice(body).map_err(|e| BadBody(Code::InvalidArgument, e.to_string()))
}

fn ok<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => (StatusCode::OK, [(CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => error_response(Code::Internal, &e.to_string()),
    }
}

async fn unary<Req, Resp, F, Fut>(body: Bytes, f: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp>>,
{
    match parse::<Req>(&body) {
        Ok(req) => match f(req).await {
            Ok(resp) => ok(&resp),
            Err(e) => error(e),
        },
        Err(bad) => bad.response(),
    }
}

/// Who sent a gateway request: its `Authorization` header is the token (etcd's gateway passes
/// it on as gRPC `token` metadata; client certificates do not authenticate here).
fn caller(headers: &HeaderMap) -> Caller {
    Caller { token: headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string), ..Default::default() }
}

macro_rules! route {
    ($router:ident, $path:literal, $req:ty, |$st:ident, $r:ident, $c:ident| $body:expr) => {
        $router = $router.route(
            $path,
            post(|State($st): State<HttpState>, headers: HeaderMap, body: Bytes| async move {
                let $c = caller(&headers);
                unary(body, |$r: $req| async move { $body }).await
            }),
        );
    };
}

/// Every `/v3/` route.
pub fn routes() -> Router<HttpState> {
    let mut r = Router::new();
    route!(r, "/v3/kv/range", pb::RangeRequest, |st, req, c| st.services.kv.range(&req, &c).await);
    route!(r, "/v3/kv/put", pb::PutRequest, |st, req, c| st.services.kv.put(req, &c).await);
    route!(r, "/v3/kv/deleterange", pb::DeleteRangeRequest, |st, req, c| st.services.kv.delete_range(req, &c).await);
    route!(r, "/v3/kv/txn", pb::TxnRequest, |st, req, c| st.services.kv.txn(req, &c).await);
    route!(r, "/v3/kv/compaction", pb::CompactionRequest, |st, req, c| st.services.kv.compact(req, &c).await);
    route!(r, "/v3/lease/grant", pb::LeaseGrantRequest, |st, req, _c| st.services.lease.grant(req).await);
    route!(r, "/v3/lease/revoke", pb::LeaseRevokeRequest, |st, req, c| st.services.lease.revoke(req, &c).await);
    route!(r, "/v3/kv/lease/revoke", pb::LeaseRevokeRequest, |st, req, c| st.services.lease.revoke(req, &c).await);
    route!(r, "/v3/lease/timetolive", pb::LeaseTimeToLiveRequest, |st, req, c| st.services.lease.time_to_live(&req, &c).await);
    route!(r, "/v3/kv/lease/timetolive", pb::LeaseTimeToLiveRequest, |st, req, c| st.services.lease.time_to_live(&req, &c).await);
    route!(r, "/v3/lease/leases", pb::LeaseLeasesRequest, |st, _req, _c| st.services.lease.leases());
    route!(r, "/v3/kv/lease/leases", pb::LeaseLeasesRequest, |st, _req, _c| st.services.lease.leases());
    route!(r, "/v3/cluster/member/list", pb::MemberListRequest, |st, req, _c| st.services.cluster.member_list(&req).await);
    route!(r, "/v3/cluster/member/add", pb::MemberAddRequest, |st, req, c| st.services.cluster.member_add(req, &c).await);
    route!(r, "/v3/cluster/member/remove", pb::MemberRemoveRequest, |st, req, c| st.services.cluster.member_remove(req, &c).await);
    route!(r, "/v3/cluster/member/update", pb::MemberUpdateRequest, |st, req, c| st.services.cluster.member_update(req, &c).await);
    route!(r, "/v3/cluster/member/promote", pb::MemberPromoteRequest, |st, req, c| st.services.cluster.member_promote(req, &c).await);
    route!(r, "/v3/maintenance/defragment", pb::DefragmentRequest, |st, _req, c| st.services.maintenance.defragment(&c).await);
    route!(r, "/v3/maintenance/transfer-leadership", pb::MoveLeaderRequest, |st, req, c| st
        .services
        .maintenance
        .move_leader(&req, &c)
        .await);
    route!(r, "/v3/maintenance/status", pb::StatusRequest, |st, _req, _c| st.services.maintenance.status());
    route!(r, "/v3/maintenance/alarm", pb::AlarmRequest, |st, req, c| st.services.maintenance.alarm(req, &c).await);
    route!(r, "/v3/maintenance/hash", pb::HashRequest, |st, _req, c| st.services.maintenance.hash(&c).await);
    route!(r, "/v3/maintenance/hashkv", pb::HashKvRequest, |st, req, c| st.services.maintenance.hash_kv(&req, &c).await);
    route!(r, "/v3/lock/lock", keel_proto::v3lockpb::LockRequest, |st, req, c| st.services.lock.lock(req, &c).await);
    route!(r, "/v3/lock/unlock", keel_proto::v3lockpb::UnlockRequest, |st, req, c| st.services.lock.unlock(req, &c).await);
    route!(r, "/v3/election/campaign", keel_proto::v3electionpb::CampaignRequest, |st, req, c| st
        .services
        .election
        .campaign(req, &c)
        .await);
    route!(r, "/v3/election/proclaim", keel_proto::v3electionpb::ProclaimRequest, |st, req, c| st
        .services
        .election
        .proclaim(req, &c)
        .await);
    route!(r, "/v3/election/leader", keel_proto::v3electionpb::LeaderRequest, |st, req, c| st.services.election.leader(&req, &c).await);
    route!(r, "/v3/election/resign", keel_proto::v3electionpb::ResignRequest, |st, req, c| st.services.election.resign(req, &c).await);
    route!(r, "/v3/auth/enable", pb::AuthEnableRequest, |st, _req, c| st.services.auth.enable(&c).await);
    route!(r, "/v3/auth/disable", pb::AuthDisableRequest, |st, _req, c| st.services.auth.disable(&c).await);
    route!(r, "/v3/auth/status", pb::AuthStatusRequest, |st, _req, _c| st.services.auth.status().await);
    route!(r, "/v3/auth/authenticate", pb::AuthenticateRequest, |st, req, _c| st.services.auth.authenticate(req).await);
    route!(r, "/v3/auth/user/add", pb::AuthUserAddRequest, |st, req, c| st.services.auth.user_add(&c, req).await);
    route!(r, "/v3/auth/user/get", pb::AuthUserGetRequest, |st, req, c| st.services.auth.user_get(&c, req).await);
    route!(r, "/v3/auth/user/list", pb::AuthUserListRequest, |st, _req, c| st.services.auth.user_list(&c).await);
    route!(r, "/v3/auth/user/delete", pb::AuthUserDeleteRequest, |st, req, c| st.services.auth.user_delete(&c, req).await);
    route!(r, "/v3/auth/user/changepw", pb::AuthUserChangePasswordRequest, |st, req, c| st
        .services
        .auth
        .user_change_password(&c, req)
        .await);
    route!(r, "/v3/auth/user/grant", pb::AuthUserGrantRoleRequest, |st, req, c| st.services.auth.user_grant_role(&c, req).await);
    route!(r, "/v3/auth/user/revoke", pb::AuthUserRevokeRoleRequest, |st, req, c| st.services.auth.user_revoke_role(&c, req).await);
    route!(r, "/v3/auth/role/add", pb::AuthRoleAddRequest, |st, req, c| st.services.auth.role_add(&c, req).await);
    route!(r, "/v3/auth/role/get", pb::AuthRoleGetRequest, |st, req, c| st.services.auth.role_get(&c, req).await);
    route!(r, "/v3/auth/role/list", pb::AuthRoleListRequest, |st, _req, c| st.services.auth.role_list(&c).await);
    route!(r, "/v3/auth/role/delete", pb::AuthRoleDeleteRequest, |st, req, c| st.services.auth.role_delete(&c, req).await);
    route!(r, "/v3/auth/role/grant", pb::AuthRoleGrantPermissionRequest, |st, req, c| st
        .services
        .auth
        .role_grant_permission(&c, req)
        .await);
    route!(r, "/v3/auth/role/revoke", pb::AuthRoleRevokePermissionRequest, |st, req, c| st
        .services
        .auth
        .role_revoke_permission(&c, req)
        .await);
    for (path, rpc) in [("/v3/maintenance/snapshot", "Maintenance.Snapshot"), ("/v3/maintenance/downgrade", "Maintenance.Downgrade")] {
        r = r.route(path, post(move || async move { error(Error::Unimplemented(rpc)) }));
    }
    r.route("/v3/watch", post(watch)).route("/v3/election/observe", post(observe)).route("/v3/lease/keepalive", post(keep_alive))
}

/// Parse a body holding one or more JSON objects.
fn parse_many<Req: DeserializeOwned>(body: &[u8]) -> std::result::Result<Vec<Req>, BadBody> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Req>()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| BadBody(Code::Unknown, e.to_string()))
}

fn result_line<T: Serialize>(item: std::result::Result<T, tonic::Status>) -> Bytes {
    let v = match item {
        Ok(m) => serde_json::json!({ "result": m }),
        Err(s) => {
            serde_json::json!({"error": {"grpc_code": s.code() as i32, "http_code": http_status(s.code()).as_u16(), "message": s.message(), "http_status": http_status(s.code()).canonical_reason()}})
        }
    };
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

async fn watch(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let reqs: Vec<pb::WatchRequest> = match parse_many(&body) {
        Ok(r) => r,
        Err(bad) => return bad.response(),
    };
    // The requests, then silence: the stream stays open until the client hangs up.
    let input = futures::stream::iter(reqs.into_iter().map(Ok)).chain(futures::stream::pending());
    let out = match st.services.watch.open(Box::pin(input), caller(&headers)) {
        Ok(stream) => stream.map(|item| Ok::<_, std::convert::Infallible>(result_line(item))),
        Err(status) => return error_response(status.code(), status.message()),
    };
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], Body::from_stream(out)).into_response()
}

async fn keep_alive(State(st): State<HttpState>, body: Bytes) -> Response {
    let reqs: Vec<pb::LeaseKeepAliveRequest> = match parse_many(&body) {
        Ok(r) => r,
        Err(bad) => return bad.response(),
    };
    let mut lines: Vec<std::result::Result<Bytes, std::convert::Infallible>> = Vec::with_capacity(reqs.len());
    for r in &reqs {
        lines.push(Ok(result_line(st.services.lease.keep_alive_once(crate::types::LeaseId(r.id)).await.map_err(tonic::Status::from))));
    }
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], Body::from_stream(futures::stream::iter(lines))).into_response()
}

async fn observe(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let req: keel_proto::v3electionpb::LeaderRequest = match parse(&body) {
        Ok(r) => r,
        Err(bad) => return bad.response(),
    };
    let out = match st.services.election.observe(req, caller(&headers)) {
        Ok(stream) => stream.map(|item| Ok::<_, std::convert::Infallible>(result_line(item))),
        Err(e) => return error(e),
    };
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], Body::from_stream(out)).into_response()
}
