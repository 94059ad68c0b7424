//! The Auth service: changes go through Raft as [`AuthCommand`]s (passwords hashed here with
//! bcrypt first, so no member ever logs or stores them plain); reads come from this member's
//! auth store after a read barrier. While auth is on, changes and listings need the root role;
//! a user may read itself and the roles it holds (etcd's rules).
//!
//! Who sent a request is read by [`super::caller`] (gRPC: token metadata, client certificate
//! CN) or by the gateway (the `Authorization` header).

use super::context::Context;
use super::rpc::Rpc;
use super::{caller, grpc, propose_at};
use crate::apply::Command;
use crate::auth::{Authz, Caller};
use crate::error::{Error, Internal, Result};
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::auth_server::Auth;
use keel_proto::keelpeerpb::auth_command::Change;
use keel_proto::keelpeerpb::{AuthApplied, AuthCommand, SimpleToken};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// etcd's Auth service.
#[derive(Clone)]
pub struct AuthService {
    ctx: Arc<Context>,
    bcrypt_cost: u32,
    /// A hash (at `bcrypt_cost`) checked when the user is unknown, made on first use.
    unknown_user: Arc<std::sync::OnceLock<String>>,
}

async fn hash(password: String, cost: u32) -> Result<String> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(Error::task)?
        .map_err(|e| Internal::Hash(e.to_string()).into())
}

impl AuthService {
    /// The Auth service of the member `ctx` serves, hashing passwords at `bcrypt_cost`
    /// (`--bcrypt-cost`).
    pub fn new(ctx: Arc<Context>, bcrypt_cost: u32) -> Self {
        Self { ctx, bcrypt_cost, unknown_user: Default::default() }
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        self.ctx.header_now()
    }

    /// Check `caller` for a read of the auth store after a read barrier, so it sees every
    /// change acknowledged before.
    async fn authorize(&self, rpc: Rpc, caller: &Caller) -> Result<Authz> {
        self.ctx.gate(rpc, false)?;
        self.ctx.read_barrier().await?;
        self.ctx.admit(rpc, caller).await
    }

    /// Propose `change` on behalf of an admin (`rpc`: the change's RPC, admin-only).
    async fn change(&self, rpc: Rpc, caller: &Caller, change: Change) -> Result<Option<pb::ResponseHeader>> {
        let authz = self.ctx.enter(rpc, caller).await?;
        let _: AuthApplied = propose_at(&self.ctx, Command::Auth(AuthCommand { change: Some(change) }), authz.guard()).await?;
        Ok(self.header())
    }

    /// Auth.AuthEnable.
    pub async fn enable(&self, caller: &Caller) -> Result<pb::AuthEnableResponse> {
        Ok(pb::AuthEnableResponse { header: self.change(Rpc::AuthEnable, caller, Change::Enable(pb::AuthEnableRequest {})).await? })
    }

    /// Auth.AuthDisable.
    pub async fn disable(&self, caller: &Caller) -> Result<pb::AuthDisableResponse> {
        Ok(pb::AuthDisableResponse { header: self.change(Rpc::AuthDisable, caller, Change::Disable(pb::AuthDisableRequest {})).await? })
    }

    /// Auth.AuthStatus.
    pub async fn status(&self) -> Result<pb::AuthStatusResponse> {
        self.ctx.gate(Rpc::AuthStatus, false)?;
        self.ctx.read_barrier().await?;
        let sm = self.ctx.applied.read_state();
        Ok(pb::AuthStatusResponse { header: self.header(), enabled: sm.auth.enabled(), auth_revision: sm.auth.revision() })
    }

    /// Auth.Authenticate: check the password here, then hand out a token (a simple token is
    /// proposed so every member knows it).
    /// The password is checked against the auth store at one revision, and the token is handed
    /// out only if the store is still at that revision when it is applied (else checked again),
    /// so a password changed meanwhile never yields a token.
    pub async fn authenticate(&self, req: pb::AuthenticateRequest) -> Result<pb::AuthenticateResponse> {
        self.ctx.gate(Rpc::Authenticate, false)?;
        for _ in 0..3 {
            self.ctx.read_barrier().await?;
            let (hash, revision, jwt) = {
                let sm = self.ctx.applied.read_state();
                if !sm.auth.enabled() {
                    return Err(Error::AuthNotEnabled);
                }
                // etcd's CheckPassword refuses a `no_password` user in its own words (which
                // tells that the user exists, as etcd's does).
                if sm.auth.user(&req.name).is_some_and(|u| u.no_password) {
                    return Err(Error::NoPasswordUser);
                }
                // Unknown users cost a hash check too, so timing does not tell who exists.
                let hash = sm.auth.user(&req.name).map(|u| u.password_hash.clone());
                (hash, sm.auth.revision(), sm.auth.jwt.clone())
            };
            let password = req.password.clone();
            let (unknown, cost) = (self.unknown_user.clone(), self.bcrypt_cost);
            let ok = tokio::task::spawn_blocking(move || {
                let stand_in = || unknown.get_or_init(|| bcrypt::hash("no such user", cost).unwrap_or_default()).clone();
                let known = hash.is_some();
                let checked = bcrypt::verify(password, &hash.unwrap_or_else(stand_in)).unwrap_or(false);
                known && checked
            })
            .await
            .map_err(Error::task)?;
            if !ok {
                return Err(Error::AuthFailed);
            }
            let token = match &jwt {
                Some(jwt) => jwt.sign(&req.name, revision)?,
                None => {
                    let token = format!("{}.{}", self.ctx.random_letters()?, self.ctx.applied.applied_index().0 + 1);
                    let change = Change::Authenticate(SimpleToken { name: req.name.clone(), token: token.clone() });
                    let cmd = Command::Auth(AuthCommand { change: Some(change) });
                    let guard = crate::auth::Guard { revision, user: String::new() };
                    match propose_at::<AuthApplied>(&self.ctx, cmd, Some(guard)).await {
                        Err(Error::AuthOldRevision) => continue,
                        other => other?,
                    };
                    token
                }
            };
            return Ok(pb::AuthenticateResponse { header: self.header(), token });
        }
        Err(Error::AuthOldRevision)
    }

    /// Auth.UserAdd.
    pub async fn user_add(&self, caller: &Caller, mut req: pb::AuthUserAddRequest) -> Result<pb::AuthUserAddResponse> {
        self.ctx.gate(Rpc::UserAdd, false)?;
        if req.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        self.ctx.admit(Rpc::UserAdd, caller).await?;
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        if !no_password && req.hashed_password.is_empty() {
            req.hashed_password = hash(std::mem::take(&mut req.password), self.bcrypt_cost).await?;
        }
        req.password.clear();
        Ok(pb::AuthUserAddResponse { header: self.change(Rpc::UserAdd, caller, Change::UserAdd(req)).await? })
    }

    /// Auth.UserGet: an admin, or the user itself.
    pub async fn user_get(&self, caller: &Caller, req: pb::AuthUserGetRequest) -> Result<pb::AuthUserGetResponse> {
        let authz = self.authorize(Rpc::UserGet, caller).await?;
        if !authz.is_admin_or(&req.name) {
            authz.check_admin()?;
        }
        let sm = self.ctx.applied.read_state();
        let user = sm.auth.user(&req.name).ok_or(Error::UserNotFound)?;
        Ok(pb::AuthUserGetResponse { header: self.header(), roles: user.roles.iter().cloned().collect() })
    }

    /// Auth.UserList.
    pub async fn user_list(&self, caller: &Caller) -> Result<pb::AuthUserListResponse> {
        self.authorize(Rpc::UserList, caller).await?;
        Ok(pb::AuthUserListResponse { header: self.header(), users: self.ctx.applied.read_state().auth.user_names() })
    }

    /// Auth.UserDelete.
    pub async fn user_delete(&self, caller: &Caller, req: pb::AuthUserDeleteRequest) -> Result<pb::AuthUserDeleteResponse> {
        Ok(pb::AuthUserDeleteResponse { header: self.change(Rpc::UserDelete, caller, Change::UserDelete(req)).await? })
    }

    /// Auth.UserChangePassword.
    pub async fn user_change_password(
        &self,
        caller: &Caller,
        mut req: pb::AuthUserChangePasswordRequest,
    ) -> Result<pb::AuthUserChangePasswordResponse> {
        self.ctx.enter(Rpc::UserChangePassword, caller).await?;
        if req.hashed_password.is_empty() {
            req.hashed_password = hash(std::mem::take(&mut req.password), self.bcrypt_cost).await?;
        }
        req.password.clear();
        Ok(pb::AuthUserChangePasswordResponse {
            header: self.change(Rpc::UserChangePassword, caller, Change::UserChangePassword(req)).await?,
        })
    }

    /// Auth.UserGrantRole.
    pub async fn user_grant_role(&self, caller: &Caller, req: pb::AuthUserGrantRoleRequest) -> Result<pb::AuthUserGrantRoleResponse> {
        Ok(pb::AuthUserGrantRoleResponse { header: self.change(Rpc::UserGrantRole, caller, Change::UserGrantRole(req)).await? })
    }

    /// Auth.UserRevokeRole.
    pub async fn user_revoke_role(&self, caller: &Caller, req: pb::AuthUserRevokeRoleRequest) -> Result<pb::AuthUserRevokeRoleResponse> {
        Ok(pb::AuthUserRevokeRoleResponse { header: self.change(Rpc::UserRevokeRole, caller, Change::UserRevokeRole(req)).await? })
    }

    /// Auth.RoleAdd.
    pub async fn role_add(&self, caller: &Caller, req: pb::AuthRoleAddRequest) -> Result<pb::AuthRoleAddResponse> {
        Ok(pb::AuthRoleAddResponse { header: self.change(Rpc::RoleAdd, caller, Change::RoleAdd(req)).await? })
    }

    /// Auth.RoleGet: an admin, or a holder of the role.
    pub async fn role_get(&self, caller: &Caller, req: pb::AuthRoleGetRequest) -> Result<pb::AuthRoleGetResponse> {
        let authz = self.authorize(Rpc::RoleGet, caller).await?;
        let sm = self.ctx.applied.read_state();
        let holds = authz.user().and_then(|u| sm.auth.user(u)).is_some_and(|u| u.roles.contains(&req.role));
        if !holds {
            authz.check_admin()?;
        }
        let perm = sm.auth.role(&req.role).ok_or(Error::RoleNotFound)?;
        Ok(pb::AuthRoleGetResponse { header: self.header(), perm })
    }

    /// Auth.RoleList.
    pub async fn role_list(&self, caller: &Caller) -> Result<pb::AuthRoleListResponse> {
        self.authorize(Rpc::RoleList, caller).await?;
        Ok(pb::AuthRoleListResponse { header: self.header(), roles: self.ctx.applied.read_state().auth.role_names() })
    }

    /// Auth.RoleDelete.
    pub async fn role_delete(&self, caller: &Caller, req: pb::AuthRoleDeleteRequest) -> Result<pb::AuthRoleDeleteResponse> {
        Ok(pb::AuthRoleDeleteResponse { header: self.change(Rpc::RoleDelete, caller, Change::RoleDelete(req)).await? })
    }

    /// Auth.RoleGrantPermission.
    pub async fn role_grant_permission(
        &self,
        caller: &Caller,
        req: pb::AuthRoleGrantPermissionRequest,
    ) -> Result<pb::AuthRoleGrantPermissionResponse> {
        Ok(pb::AuthRoleGrantPermissionResponse {
            header: self.change(Rpc::RoleGrantPermission, caller, Change::RoleGrantPermission(req)).await?,
        })
    }

    /// Auth.RoleRevokePermission.
    pub async fn role_revoke_permission(
        &self,
        caller: &Caller,
        req: pb::AuthRoleRevokePermissionRequest,
    ) -> Result<pb::AuthRoleRevokePermissionResponse> {
        Ok(pb::AuthRoleRevokePermissionResponse {
            header: self.change(Rpc::RoleRevokePermission, caller, Change::RoleRevokePermission(req)).await?,
        })
    }
}

macro_rules! rpc {
    ($self:ident, $request:ident, |$c:ident, $r:ident| $call:expr) => {{
        let $c = caller(&$request);
        let $r = $request.into_inner();
        grpc($call.await)
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, request: Request<pb::AuthEnableRequest>) -> Result<Response<pb::AuthEnableResponse>, Status> {
        rpc!(self, request, |c, _r| self.enable(&c))
    }
    async fn auth_disable(&self, request: Request<pb::AuthDisableRequest>) -> Result<Response<pb::AuthDisableResponse>, Status> {
        rpc!(self, request, |c, _r| self.disable(&c))
    }
    async fn auth_status(&self, _request: Request<pb::AuthStatusRequest>) -> Result<Response<pb::AuthStatusResponse>, Status> {
        grpc(self.status().await)
    }
    async fn authenticate(&self, request: Request<pb::AuthenticateRequest>) -> Result<Response<pb::AuthenticateResponse>, Status> {
        grpc(AuthService::authenticate(self, request.into_inner()).await)
    }
    async fn user_add(&self, request: Request<pb::AuthUserAddRequest>) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::user_add(self, &c, r))
    }
    async fn user_get(&self, request: Request<pb::AuthUserGetRequest>) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::user_get(self, &c, r))
    }
    async fn user_list(&self, request: Request<pb::AuthUserListRequest>) -> Result<Response<pb::AuthUserListResponse>, Status> {
        rpc!(self, request, |c, _r| AuthService::user_list(self, &c))
    }
    async fn user_delete(&self, request: Request<pb::AuthUserDeleteRequest>) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::user_delete(self, &c, r))
    }
    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::user_change_password(self, &c, r))
    }
    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::user_grant_role(self, &c, r))
    }
    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::user_revoke_role(self, &c, r))
    }
    async fn role_add(&self, request: Request<pb::AuthRoleAddRequest>) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::role_add(self, &c, r))
    }
    async fn role_get(&self, request: Request<pb::AuthRoleGetRequest>) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::role_get(self, &c, r))
    }
    async fn role_list(&self, request: Request<pb::AuthRoleListRequest>) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        rpc!(self, request, |c, _r| AuthService::role_list(self, &c))
    }
    async fn role_delete(&self, request: Request<pb::AuthRoleDeleteRequest>) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::role_delete(self, &c, r))
    }
    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::role_grant_permission(self, &c, r))
    }
    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        rpc!(self, request, |c, r| AuthService::role_revoke_permission(self, &c, r))
    }
}
