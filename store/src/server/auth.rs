//! The Auth service, which Keel does not serve yet. Every RPC answers gRPC `Unimplemented`
//! with a message naming it, so clients fail clearly instead of hanging; the README lists them.

use super::unimplemented;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::auth_server::Auth;
use std::pin::Pin;
use tonic::{Request, Response, Status};

macro_rules! not_yet {
    ($( $method:ident : $req:ty => $resp:ty = $name:literal ;)*) => {
        $(
            // Written in the form `#[tonic::async_trait]` expands to, because that attribute
            // cannot see methods a macro generates.
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: Request<$req>,
            ) -> Pin<Box<dyn std::future::Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move { Err(unimplemented($name)) })
            }
        )*
    };
}

/// etcd's Auth service; only AuthStatus answers (auth is off).
#[derive(Clone, Default)]
pub struct AuthService;

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(&self, _request: Request<pb::AuthStatusRequest>) -> Result<Response<pb::AuthStatusResponse>, Status> {
        Ok(Response::new(pb::AuthStatusResponse { header: None, enabled: false, auth_revision: 0 }))
    }

    not_yet! {
        auth_enable: pb::AuthEnableRequest => pb::AuthEnableResponse = "Auth.AuthEnable";
        auth_disable: pb::AuthDisableRequest => pb::AuthDisableResponse = "Auth.AuthDisable";
        authenticate: pb::AuthenticateRequest => pb::AuthenticateResponse = "Auth.Authenticate";
        user_add: pb::AuthUserAddRequest => pb::AuthUserAddResponse = "Auth.UserAdd";
        user_get: pb::AuthUserGetRequest => pb::AuthUserGetResponse = "Auth.UserGet";
        user_list: pb::AuthUserListRequest => pb::AuthUserListResponse = "Auth.UserList";
        user_delete: pb::AuthUserDeleteRequest => pb::AuthUserDeleteResponse = "Auth.UserDelete";
        user_change_password: pb::AuthUserChangePasswordRequest => pb::AuthUserChangePasswordResponse = "Auth.UserChangePassword";
        user_grant_role: pb::AuthUserGrantRoleRequest => pb::AuthUserGrantRoleResponse = "Auth.UserGrantRole";
        user_revoke_role: pb::AuthUserRevokeRoleRequest => pb::AuthUserRevokeRoleResponse = "Auth.UserRevokeRole";
        role_add: pb::AuthRoleAddRequest => pb::AuthRoleAddResponse = "Auth.RoleAdd";
        role_get: pb::AuthRoleGetRequest => pb::AuthRoleGetResponse = "Auth.RoleGet";
        role_list: pb::AuthRoleListRequest => pb::AuthRoleListResponse = "Auth.RoleList";
        role_delete: pb::AuthRoleDeleteRequest => pb::AuthRoleDeleteResponse = "Auth.RoleDelete";
        role_grant_permission: pb::AuthRoleGrantPermissionRequest => pb::AuthRoleGrantPermissionResponse = "Auth.RoleGrantPermission";
        role_revoke_permission: pb::AuthRoleRevokePermissionRequest => pb::AuthRoleRevokePermissionResponse = "Auth.RoleRevokePermission";
    }
}
