//! Every RPC the client port serves, and who may call it: the one table of access rules. Each
//! service method opens with `Context::enter` (or, where etcd validates a request before it
//! looks at the caller, with `Context::gate` first and `Context::admit` after validating;
//! [`Access::Open`] RPCs only `gate`), so the gRPC shells and the HTTP gateway, which only call
//! those methods, check exactly the same things.
//!
//! Rules, etcd's: a learner serves only Status and serializable Range
//! (`v3rpc/interceptor.go`'s `isRPCSupportedForLearner`); while auth is on, changing the
//! cluster, maintenance that reads or rewrites the whole store, compaction and auth
//! administration need the root role; other calls check the caller's rights on the keys
//! they touch.

/// One RPC of etcd's API (KV, Watch, Lease, Cluster, Maintenance, Auth) or of v3lock and
/// v3election.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Rpc {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
    Watch,
    LeaseGrant,
    LeaseRevoke,
    LeaseKeepAlive,
    LeaseTimeToLive,
    LeaseLeases,
    MemberAdd,
    MemberRemove,
    MemberUpdate,
    MemberList,
    MemberPromote,
    Status,
    Alarm,
    Hash,
    HashKv,
    Defragment,
    Snapshot,
    MoveLeader,
    Downgrade,
    AuthEnable,
    AuthDisable,
    AuthStatus,
    Authenticate,
    UserAdd,
    UserGet,
    UserList,
    UserDelete,
    UserChangePassword,
    UserGrantRole,
    UserRevokeRole,
    RoleAdd,
    RoleGet,
    RoleList,
    RoleDelete,
    RoleGrantPermission,
    RoleRevokePermission,
    Lock,
    Unlock,
    Campaign,
    Proclaim,
    Leader,
    Observe,
    Resign,
}

/// Whether a learner serves an RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLearner {
    /// Served.
    Served,
    /// Served only as a serializable read.
    IfSerializable,
    /// Refused with "rpc not supported for learner".
    Refused,
}

/// Who may call an RPC while auth is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the call does not look at the caller (etcd checks no rights for it either).
    Open,
    /// Anyone with rights on the keys the call touches (the call checks them).
    Keys,
    /// Only a holder of the root role.
    Admin,
    /// An admin, or the user the request names / a holder of the role it names (checked by
    /// the call, which knows the name).
    AdminOrSubject,
}

/// Every RPC with its gRPC path; the method part is its name in metrics.
const PATHS: &[(Rpc, &str)] = &[
    (Rpc::Range, "/etcdserverpb.KV/Range"),
    (Rpc::Put, "/etcdserverpb.KV/Put"),
    (Rpc::DeleteRange, "/etcdserverpb.KV/DeleteRange"),
    (Rpc::Txn, "/etcdserverpb.KV/Txn"),
    (Rpc::Compact, "/etcdserverpb.KV/Compact"),
    (Rpc::Watch, "/etcdserverpb.Watch/Watch"),
    (Rpc::LeaseGrant, "/etcdserverpb.Lease/LeaseGrant"),
    (Rpc::LeaseRevoke, "/etcdserverpb.Lease/LeaseRevoke"),
    (Rpc::LeaseKeepAlive, "/etcdserverpb.Lease/LeaseKeepAlive"),
    (Rpc::LeaseTimeToLive, "/etcdserverpb.Lease/LeaseTimeToLive"),
    (Rpc::LeaseLeases, "/etcdserverpb.Lease/LeaseLeases"),
    (Rpc::MemberAdd, "/etcdserverpb.Cluster/MemberAdd"),
    (Rpc::MemberRemove, "/etcdserverpb.Cluster/MemberRemove"),
    (Rpc::MemberUpdate, "/etcdserverpb.Cluster/MemberUpdate"),
    (Rpc::MemberList, "/etcdserverpb.Cluster/MemberList"),
    (Rpc::MemberPromote, "/etcdserverpb.Cluster/MemberPromote"),
    (Rpc::Status, "/etcdserverpb.Maintenance/Status"),
    (Rpc::Alarm, "/etcdserverpb.Maintenance/Alarm"),
    (Rpc::Hash, "/etcdserverpb.Maintenance/Hash"),
    (Rpc::HashKv, "/etcdserverpb.Maintenance/HashKV"),
    (Rpc::Defragment, "/etcdserverpb.Maintenance/Defragment"),
    (Rpc::Snapshot, "/etcdserverpb.Maintenance/Snapshot"),
    (Rpc::MoveLeader, "/etcdserverpb.Maintenance/MoveLeader"),
    (Rpc::Downgrade, "/etcdserverpb.Maintenance/Downgrade"),
    (Rpc::AuthEnable, "/etcdserverpb.Auth/AuthEnable"),
    (Rpc::AuthDisable, "/etcdserverpb.Auth/AuthDisable"),
    (Rpc::AuthStatus, "/etcdserverpb.Auth/AuthStatus"),
    (Rpc::Authenticate, "/etcdserverpb.Auth/Authenticate"),
    (Rpc::UserAdd, "/etcdserverpb.Auth/UserAdd"),
    (Rpc::UserGet, "/etcdserverpb.Auth/UserGet"),
    (Rpc::UserList, "/etcdserverpb.Auth/UserList"),
    (Rpc::UserDelete, "/etcdserverpb.Auth/UserDelete"),
    (Rpc::UserChangePassword, "/etcdserverpb.Auth/UserChangePassword"),
    (Rpc::UserGrantRole, "/etcdserverpb.Auth/UserGrantRole"),
    (Rpc::UserRevokeRole, "/etcdserverpb.Auth/UserRevokeRole"),
    (Rpc::RoleAdd, "/etcdserverpb.Auth/RoleAdd"),
    (Rpc::RoleGet, "/etcdserverpb.Auth/RoleGet"),
    (Rpc::RoleList, "/etcdserverpb.Auth/RoleList"),
    (Rpc::RoleDelete, "/etcdserverpb.Auth/RoleDelete"),
    (Rpc::RoleGrantPermission, "/etcdserverpb.Auth/RoleGrantPermission"),
    (Rpc::RoleRevokePermission, "/etcdserverpb.Auth/RoleRevokePermission"),
    (Rpc::Lock, "/v3lockpb.Lock/Lock"),
    (Rpc::Unlock, "/v3lockpb.Lock/Unlock"),
    (Rpc::Campaign, "/v3electionpb.Election/Campaign"),
    (Rpc::Proclaim, "/v3electionpb.Election/Proclaim"),
    (Rpc::Leader, "/v3electionpb.Election/Leader"),
    (Rpc::Observe, "/v3electionpb.Election/Observe"),
    (Rpc::Resign, "/v3electionpb.Election/Resign"),
];

impl Rpc {
    /// The RPC served at a gRPC `path`.
    pub fn from_path(path: &str) -> Option<Rpc> {
        PATHS.iter().find(|(_, p)| *p == path).map(|(rpc, _)| *rpc)
    }

    /// etcd's name of the method (`HashKV`, `LeaseGrant`, …), as metrics label it.
    pub fn name(self) -> &'static str {
        PATHS.iter().find(|(rpc, _)| *rpc == self).and_then(|(_, p)| p.rsplit('/').next()).unwrap_or("unknown")
    }

    /// True for the calls whose answer is a stream (their latency means nothing).
    pub fn streams(self) -> bool {
        matches!(self, Rpc::Watch | Rpc::LeaseKeepAlive | Rpc::Snapshot | Rpc::Observe)
    }

    /// Whether a learner serves it.
    pub fn on_learner(self) -> OnLearner {
        match self {
            Rpc::Status => OnLearner::Served,
            Rpc::Range => OnLearner::IfSerializable,
            _ => OnLearner::Refused,
        }
    }

    /// Who may call it while auth is on. Alarm changes are admin-only, alarm listing is open
    /// (the call tells them apart).
    pub fn access(self) -> Access {
        use Rpc::*;
        match self {
            LeaseGrant | LeaseKeepAlive | LeaseLeases | MemberList | Status | Alarm | Downgrade | AuthStatus | Authenticate => Access::Open,
            Compact | MemberAdd | MemberRemove | MemberUpdate | MemberPromote | Hash | HashKv | Defragment | Snapshot | MoveLeader
            | AuthEnable | AuthDisable | UserAdd | UserList | UserDelete | UserChangePassword | UserGrantRole | UserRevokeRole
            | RoleAdd | RoleList | RoleDelete | RoleGrantPermission | RoleRevokePermission => Access::Admin,
            UserGet | RoleGet => Access::AdminOrSubject,
            Range | Put | DeleteRange | Txn | Watch | LeaseRevoke | LeaseTimeToLive | Lock | Unlock | Campaign | Proclaim | Leader
            | Observe | Resign => Access::Keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learners_serve_status_and_serializable_range_only_as_in_etcd() {
        let served: Vec<_> =
            PATHS.iter().filter(|(r, _)| r.on_learner() != OnLearner::Refused).map(|(r, _)| (*r, r.on_learner())).collect();
        assert_eq!(served, vec![(Rpc::Range, OnLearner::IfSerializable), (Rpc::Status, OnLearner::Served)]);
    }

    #[test]
    fn every_rpc_has_one_path_and_its_method_name() {
        for (rpc, path) in PATHS {
            assert_eq!(Rpc::from_path(path), Some(*rpc));
            assert!(path.ends_with(&format!("/{}", rpc.name())));
        }
        assert_eq!(Rpc::HashKv.name(), "HashKV");
        assert_eq!(Rpc::from_path("/keelpeerpb.Peer/Forward"), None);
        let mut rpcs: Vec<Rpc> = PATHS.iter().map(|(r, _)| *r).collect();
        rpcs.dedup();
        assert_eq!(rpcs.len(), PATHS.len(), "no RPC twice");
    }

    #[test]
    fn root_is_needed_to_change_the_cluster_the_whole_store_or_auth() {
        let table = [
            (Rpc::Range, Access::Keys),
            (Rpc::Put, Access::Keys),
            (Rpc::Compact, Access::Admin),
            (Rpc::LeaseGrant, Access::Open),
            (Rpc::LeaseRevoke, Access::Keys),
            (Rpc::MemberList, Access::Open),
            (Rpc::MemberAdd, Access::Admin),
            (Rpc::MemberPromote, Access::Admin),
            (Rpc::Status, Access::Open),
            (Rpc::Alarm, Access::Open),
            (Rpc::Hash, Access::Admin),
            (Rpc::HashKv, Access::Admin),
            (Rpc::Defragment, Access::Admin),
            (Rpc::Snapshot, Access::Admin),
            (Rpc::MoveLeader, Access::Admin),
            (Rpc::AuthStatus, Access::Open),
            (Rpc::Authenticate, Access::Open),
            (Rpc::AuthEnable, Access::Admin),
            (Rpc::UserGet, Access::AdminOrSubject),
            (Rpc::RoleGet, Access::AdminOrSubject),
            (Rpc::UserList, Access::Admin),
            (Rpc::RoleGrantPermission, Access::Admin),
            (Rpc::Lock, Access::Keys),
            (Rpc::Campaign, Access::Keys),
        ];
        for (rpc, access) in table {
            assert_eq!(rpc.access(), access, "{rpc:?}");
        }
    }
}
