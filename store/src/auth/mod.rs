//! etcd's auth store: users, roles, permissions and the on/off switch, changed only by applying
//! [`AuthCommand`]s from the Raft log (so every member agrees), stored in the backend beside the
//! keys (so snapshots and restarts keep it), and read on the request path through per-user
//! permission sets rebuilt after each change.
//!
//! - [`perms`]: the interval sets a permission check searches.
//! - [`tokens`]: simple tokens and JWTs.
//!
//! Every successful change raises the auth revision. A client request carries the revision its
//! permission check saw; applying it after a later change fails with "revision of auth store is
//! old" (etcd's rule), so a check and its write never straddle a change of rights.

pub mod perms;
pub mod tokens;

use crate::error::{Error, Result};
use crate::storage::{Backend, WriteBatch};
use keel_proto::authpb::Permission;
use keel_proto::etcdserverpb as pb;
use keel_proto::keelpeerpb::AuthCommand;
use keel_proto::keelpeerpb::auth_command::Change;
use perms::UserPerms;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokens::SimpleTokens;
use tokio::time::Instant;

/// Metadata key of the auth store (JSON).
pub const META_AUTH: &[u8] = b"m/auth";
/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// What a client's command was checked against: the auth revision and the user (empty for
/// none). Applying it re-checks what only the applied state can tell (the keys of a lease).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    /// The auth revision the request was checked at (0: auth was off).
    pub revision: u64,
    /// The user it was checked for.
    pub user: String,
}

/// A user as stored.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// bcrypt hash; empty for a user added with `no_password`.
    pub password_hash: String,
    /// Added with `no_password`: may authenticate only by TLS certificate.
    pub no_password: bool,
    /// Granted roles, sorted.
    pub roles: BTreeSet<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("password_hash", &"<redacted>")
            .field("no_password", &self.no_password)
            .field("roles", &self.roles)
            .finish()
    }
}

/// One permission of a role as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    /// `authpb.Permission.Type`.
    pub perm_type: i32,
    /// First key.
    pub key: Vec<u8>,
    /// Range end (etcd's conventions).
    pub range_end: Vec<u8>,
}

/// The persistent part of the auth store: the JSON kept under [`META_AUTH`], and what a
/// snapshot file carries in etcd's `auth`, `authUsers` and `authRoles` buckets.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stored {
    /// Auth is on.
    pub enabled: bool,
    /// Raised by every change.
    pub revision: u64,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name, each with its permissions.
    pub roles: BTreeMap<String, Vec<Grant>>,
}

/// The auth store of one member.
#[derive(Debug)]
pub struct AuthStore {
    stored: Stored,
    view: Arc<AuthView>,
    /// Live simple tokens (in memory only, like etcd's).
    pub tokens: Arc<SimpleTokens>,
    /// With `--auth-token jwt,…`: the keys; tokens are JWTs instead of simple tokens.
    pub jwt: Option<Arc<tokens::Jwt>>,
}

/// What the request path needs of the auth store, immutable and rebuilt after every change, so
/// checking a request never waits for the state machine's lock.
#[derive(Debug, Default)]
pub struct AuthView {
    enabled: bool,
    revision: u64,
    perms: HashMap<String, Arc<UserPerms>>,
    tokens: Option<Arc<SimpleTokens>>,
    jwt: Option<Arc<tokens::Jwt>>,
}

impl AuthView {
    /// The rights of `caller` now: its token's user (or certificate's CN), or nobody.
    pub fn authorize(&self, caller: &Caller, now: Instant) -> Result<Authz> {
        if caller.member {
            return Ok(Authz { member: true, ..Authz::off() });
        }
        let revision = self.revision;
        // A token is checked also while auth is off, as etcd's `AuthInfoFromCtx` checks it
        // before its permission checks look at the switch: simple tokens are dropped when auth
        // is disabled, so one kept from before is "invalid auth token"; a JWT still verifies.
        let user = match (&caller.token, &self.jwt, &self.tokens) {
            (Some(token), Some(jwt), _) => {
                let (user, issued_at) = jwt.verify(token)?;
                if self.enabled && issued_at < revision {
                    return Err(Error::AuthOldRevision);
                }
                Some(user)
            }
            (Some(token), None, Some(tokens)) => Some(tokens.resolve(token, now).ok_or(Error::InvalidAuthToken)?),
            (Some(_), None, None) => return Err(Error::InvalidAuthToken),
            (None, _, _) => caller.cert_cn.clone(),
        };
        if !self.enabled {
            return Ok(Authz::off());
        }
        let perms = user.as_deref().and_then(|u| self.perms.get(u).cloned());
        Ok(Authz { member: false, enabled: true, revision, user, perms })
    }

    /// Auth is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }
}

/// What a request carried to say who sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// gRPC metadata `token` (or the gateway's `Authorization` header).
    pub token: Option<String>,
    /// The common name of the verified client certificate, with `--client-cert-auth`.
    pub cert_cn: Option<String>,
    /// The member itself (auto-compaction; lock and election after checking their caller):
    /// never refused. Only code can set it; nothing a client sends does.
    pub member: bool,
}

impl Caller {
    /// The member acting on its own behalf.
    pub fn member() -> Caller {
        Caller { member: true, ..Default::default() }
    }
}

/// A caller's rights for one request, as the auth store stood when it was checked.
#[derive(Clone, Debug)]
pub struct Authz {
    member: bool,
    enabled: bool,
    revision: u64,
    user: Option<String>,
    perms: Option<Arc<UserPerms>>,
}

impl Authz {
    /// Rights while auth is off: everything.
    pub fn off() -> Authz {
        Authz { member: false, enabled: false, revision: 0, user: None, perms: None }
    }

    /// What to log with the request's write (see [`Guard`]); none for the
    /// member's own writes, which are never refused.
    pub fn guard(&self) -> Option<Guard> {
        if self.member {
            return None;
        }
        let revision = if self.enabled { self.revision } else { 0 };
        Some(Guard { revision, user: self.user.clone().unwrap_or_default() })
    }

    /// True when auth is on (and the caller is a client).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The member acting on its own behalf.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// The auth revision the rights were taken at, when auth is on and the caller a client.
    pub fn checked_at(&self) -> Option<u64> {
        (self.enabled && !self.member).then_some(self.revision)
    }

    /// The authenticated user, if auth is on and one is.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    fn perms(&self) -> Result<Option<&UserPerms>> {
        if !self.enabled {
            return Ok(None);
        }
        if self.user.is_none() {
            return Err(Error::UserEmpty);
        }
        // An unknown user (e.g. a certificate CN without a user) may do nothing.
        self.perms.as_deref().map(Some).ok_or(Error::PermissionDenied)
    }

    /// May read every key of the range.
    pub fn check_read(&self, key: &[u8], range_end: &[u8]) -> Result<()> {
        match self.perms()? {
            Some(p) if !p.can_read(key, range_end) => Err(Error::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// May write every key of the range.
    pub fn check_write(&self, key: &[u8], range_end: &[u8]) -> Result<()> {
        match self.perms()? {
            Some(p) if !p.can_write(key, range_end) => Err(Error::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// Holds the root role (compaction, defragmentation, membership, snapshots, auth changes).
    pub fn check_admin(&self) -> Result<()> {
        match self.perms()? {
            Some(p) if !p.root => Err(Error::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// KV.Range.
    pub fn check_range(&self, r: &pb::RangeRequest) -> Result<()> {
        self.check_read(&r.key, &r.range_end)
    }

    /// KV.Put: write, and read when the previous value is returned.
    pub fn check_put(&self, r: &pb::PutRequest) -> Result<()> {
        self.check_write(&r.key, &[])?;
        if r.prev_kv { self.check_read(&r.key, &[]) } else { Ok(()) }
    }

    /// KV.DeleteRange: write, and read when the deleted values are returned.
    pub fn check_delete(&self, r: &pb::DeleteRangeRequest) -> Result<()> {
        self.check_write(&r.key, &r.range_end)?;
        if r.prev_kv { self.check_read(&r.key, &r.range_end) } else { Ok(()) }
    }

    /// KV.Txn: every compare and every operation of both branches, nested txns included, so
    /// a txn touching one forbidden key is refused as a whole.
    pub fn check_txn(&self, t: &pb::TxnRequest) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        for c in &t.compare {
            self.check_read(&c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(pb::request_op::Request::RequestRange(r)) => self.check_range(r)?,
                Some(pb::request_op::Request::RequestPut(r)) => self.check_put(r)?,
                Some(pb::request_op::Request::RequestDeleteRange(r)) => self.check_delete(r)?,
                Some(pb::request_op::Request::RequestTxn(r)) => self.check_txn(r)?,
                None => {}
            }
        }
        Ok(())
    }

    /// True when the caller is the named user or an admin (etcd lets users read themselves).
    pub fn is_admin_or(&self, user: &str) -> bool {
        self.check_admin().is_ok() || self.user.as_deref() == Some(user)
    }
}

impl AuthStore {
    /// The auth store kept in `backend` (empty and off when none is).
    pub fn open(backend: &dyn Backend, token_ttl: std::time::Duration) -> Result<AuthStore> {
        let stored = match backend.get(META_AUTH)? {
            Some(raw) => serde_json::from_slice(&raw).map_err(|e| Error::corrupt(format!("unreadable auth store: {e}")))?,
            None => Stored::default(),
        };
        let mut store = AuthStore { stored, view: Default::default(), tokens: Arc::new(SimpleTokens::new(token_ttl)), jwt: None };
        store.rebuild();
        Ok(store)
    }

    /// Set the token kind: simple tokens living `ttl` after their last use, or `jwt`.
    pub fn configure_tokens(&mut self, ttl: std::time::Duration, jwt: Option<Arc<tokens::Jwt>>) {
        self.tokens = Arc::new(SimpleTokens::new(ttl));
        self.jwt = jwt;
        self.rebuild();
    }

    /// Take over the live tokens of the store this one replaces (after a snapshot install).
    pub fn adopt_tokens(&mut self, old: &AuthStore) {
        self.tokens = old.tokens.clone();
        self.jwt = old.jwt.clone();
        self.rebuild();
    }

    /// The request path's view of the store as it stands.
    pub fn view(&self) -> Arc<AuthView> {
        self.view.clone()
    }

    /// The rights of `caller` now (see [`AuthView::authorize`]).
    pub fn authorize(&self, caller: &Caller, now: Instant) -> Result<Authz> {
        self.view.authorize(caller, now)
    }

    /// Auth is on.
    pub fn enabled(&self) -> bool {
        self.stored.enabled
    }

    /// The auth revision: raised by every change.
    pub fn revision(&self) -> u64 {
        self.stored.revision
    }

    /// What `user` may do; `None` for an unknown user.
    pub fn perms(&self, user: &str) -> Option<Arc<UserPerms>> {
        self.view.perms.get(user).cloned()
    }

    /// A user.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.stored.users.get(name)
    }

    /// Every user name, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.stored.users.keys().cloned().collect()
    }

    /// A role's permissions, sorted by key.
    pub fn role(&self, name: &str) -> Option<Vec<Permission>> {
        let grants = self.stored.roles.get(name)?;
        Some(
            grants
                .iter()
                .map(|g| Permission { perm_type: g.perm_type, key: g.key.clone().into(), range_end: g.range_end.clone().into() })
                .collect(),
        )
    }

    /// Every role name, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.stored.roles.keys().cloned().collect()
    }

    fn rebuild(&mut self) {
        let roles = &self.stored.roles;
        let perms = self
            .stored
            .users
            .iter()
            .map(|(name, u)| {
                let grants = u.roles.iter().filter_map(|r| roles.get(r)).flatten().map(|g| (g.perm_type, &g.key[..], &g.range_end[..]));
                (name.clone(), Arc::new(UserPerms::new(u.roles.contains(ROOT), grants)))
            })
            .collect();
        self.view = Arc::new(AuthView {
            enabled: self.stored.enabled,
            revision: self.stored.revision,
            perms,
            tokens: Some(self.tokens.clone()),
            jwt: self.jwt.clone(),
        });
    }

    /// Apply one change; on success it is added to `batch` and the new auth revision returned.
    /// On failure nothing changes.
    pub fn apply(&mut self, cmd: AuthCommand, now: Instant, batch: &mut WriteBatch) -> Result<u64> {
        let change = cmd.change.ok_or_else(|| Error::InvalidArgument("empty auth command".into()))?;
        let mut next = self.stored.clone();
        let changed = apply_change(&mut next, change, &self.tokens, now)?;
        if changed {
            next.revision += 1;
            let raw = serde_json::to_vec(&next).map_err(|e| Error::corrupt(format!("encoding the auth store: {e}")))?;
            batch.put(META_AUTH.to_vec(), raw);
            self.stored = next;
            self.rebuild();
        }
        Ok(self.stored.revision)
    }
}

fn user_mut<'a>(s: &'a mut Stored, name: &str) -> Result<&'a mut User> {
    s.users.get_mut(name).ok_or(Error::UserNotFound)
}

/// Change `s` as etcd's auth store would; true when the change raises the revision.
fn apply_change(s: &mut Stored, change: Change, tokens: &SimpleTokens, now: Instant) -> Result<bool> {
    match change {
        Change::Enable(_) => {
            if s.enabled {
                return Ok(false);
            }
            let root = s.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
            if !root.roles.contains(ROOT) {
                return Err(Error::RootRoleNotExist);
            }
            s.enabled = true;
        }
        Change::Disable(_) => {
            if !s.enabled {
                return Ok(false);
            }
            s.enabled = false;
            tokens.clear();
        }
        Change::Authenticate(t) => {
            if !s.enabled {
                return Err(Error::AuthNotEnabled);
            }
            if !s.users.contains_key(&t.name) {
                return Err(Error::AuthFailed);
            }
            tokens.insert(t.token, t.name, now);
            return Ok(false);
        }
        Change::UserAdd(r) => {
            if r.name.is_empty() {
                return Err(Error::UserEmpty);
            }
            if s.users.contains_key(&r.name) {
                return Err(Error::UserAlreadyExist);
            }
            let no_password = r.options.is_some_and(|o| o.no_password);
            let password_hash = if no_password { String::new() } else { r.hashed_password };
            s.users.insert(r.name, User { password_hash, no_password, roles: BTreeSet::new() });
        }
        Change::UserDelete(r) => {
            if s.enabled && r.name == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            s.users.remove(&r.name).ok_or(Error::UserNotFound)?;
            tokens.invalidate_user(&r.name);
        }
        Change::UserChangePassword(r) => {
            let user = user_mut(s, &r.name)?;
            // A `no_password` user stays one (etcd keeps the option).
            user.password_hash = r.hashed_password;
            tokens.invalidate_user(&r.name);
        }
        Change::UserGrantRole(r) => {
            if r.role != ROOT && !s.roles.contains_key(&r.role) {
                user_mut(s, &r.user)?;
                return Err(Error::RoleNotFound);
            }
            if !user_mut(s, &r.user)?.roles.insert(r.role) {
                return Ok(false);
            }
        }
        Change::UserRevokeRole(r) => {
            if s.enabled && r.name == ROOT && r.role == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            if !user_mut(s, &r.name)?.roles.remove(&r.role) {
                return Err(Error::RoleNotGranted);
            }
        }
        Change::RoleAdd(r) => {
            if r.name.is_empty() {
                return Err(Error::RoleEmpty);
            }
            if s.roles.contains_key(&r.name) {
                return Err(Error::RoleAlreadyExist);
            }
            s.roles.insert(r.name, Vec::new());
        }
        Change::RoleDelete(r) => {
            if s.enabled && r.role == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            s.roles.remove(&r.role).ok_or(Error::RoleNotFound)?;
            for u in s.users.values_mut() {
                u.roles.remove(&r.role);
            }
        }
        Change::RoleGrantPermission(r) => {
            let perm = r.perm.ok_or(Error::PermissionNotGiven)?;
            let grants = s.roles.get_mut(&r.name).ok_or(Error::RoleNotFound)?;
            let grant = Grant { perm_type: perm.perm_type, key: perm.key.to_vec(), range_end: perm.range_end.to_vec() };
            // One permission per (key, range_end): granting again replaces its type.
            match grants.binary_search_by(|g| (&g.key, &g.range_end).cmp(&(&grant.key, &grant.range_end))) {
                Ok(i) => grants[i] = grant,
                Err(i) => grants.insert(i, grant),
            }
        }
        Change::RoleRevokePermission(r) => {
            let grants = s.roles.get_mut(&r.role).ok_or(Error::RoleNotFound)?;
            let i = grants
                .iter()
                .position(|g| g.key == r.key.as_ref() && g.range_end == r.range_end.as_ref())
                .ok_or(Error::PermissionNotGranted)?;
            grants.remove(i);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryBackend;
    use keel_proto::authpb::UserAddOptions;
    use keel_proto::keelpeerpb::SimpleToken;
    use std::time::Duration;

    fn store() -> AuthStore {
        AuthStore::open(&MemoryBackend::new(), Duration::from_secs(300)).unwrap()
    }

    fn run(a: &mut AuthStore, c: Change) -> Result<u64> {
        a.apply(AuthCommand { change: Some(c) }, Instant::now(), &mut WriteBatch::default())
    }

    fn user_add(name: &str) -> Change {
        Change::UserAdd(pb::AuthUserAddRequest { name: name.into(), hashed_password: "h".into(), ..Default::default() })
    }

    fn grant(user: &str, role: &str) -> Change {
        Change::UserGrantRole(pb::AuthUserGrantRoleRequest { user: user.into(), role: role.into() })
    }

    fn perm(role: &str, t: i32, key: &str, end: &str) -> Change {
        Change::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(Permission { perm_type: t, key: key.as_bytes().to_vec().into(), range_end: end.as_bytes().to_vec().into() }),
        })
    }

    #[test]
    fn enabling_needs_root_with_the_root_role_and_root_stays_while_enabled() {
        let mut a = store();
        assert_eq!(run(&mut a, Change::Enable(Default::default())), Err(Error::RootUserNotExist));
        run(&mut a, user_add(ROOT)).unwrap();
        assert_eq!(run(&mut a, Change::Enable(Default::default())), Err(Error::RootRoleNotExist));
        run(&mut a, grant(ROOT, ROOT)).unwrap();
        let rev = run(&mut a, Change::Enable(Default::default())).unwrap();
        assert!(a.enabled());
        assert_eq!(run(&mut a, Change::Enable(Default::default())), Ok(rev), "enabling again changes nothing");
        assert_eq!(run(&mut a, Change::UserDelete(pb::AuthUserDeleteRequest { name: ROOT.into() })), Err(Error::InvalidAuthMgmt));
        let revoke = Change::UserRevokeRole(pb::AuthUserRevokeRoleRequest { name: ROOT.into(), role: ROOT.into() });
        assert_eq!(run(&mut a, revoke.clone()), Err(Error::InvalidAuthMgmt));
        assert_eq!(run(&mut a, Change::RoleDelete(pb::AuthRoleDeleteRequest { role: ROOT.into() })), Err(Error::InvalidAuthMgmt));
        assert_eq!(a.revision(), rev, "refused changes leave the revision");
        run(&mut a, Change::Disable(Default::default())).unwrap();
        run(&mut a, revoke).unwrap();
    }

    #[test]
    fn bad_input_is_refused_with_etcds_errors() {
        let mut a = store();
        assert_eq!(run(&mut a, user_add("")), Err(Error::UserEmpty));
        run(&mut a, user_add("u")).unwrap();
        assert_eq!(run(&mut a, user_add("u")), Err(Error::UserAlreadyExist));
        assert_eq!(run(&mut a, Change::RoleAdd(pb::AuthRoleAddRequest { name: "".into() })), Err(Error::RoleEmpty));
        run(&mut a, Change::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() })).unwrap();
        assert_eq!(run(&mut a, Change::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() })), Err(Error::RoleAlreadyExist));
        assert_eq!(run(&mut a, grant("nobody", "r")), Err(Error::UserNotFound));
        assert_eq!(run(&mut a, grant("u", "nope")), Err(Error::RoleNotFound));
        let rev = run(&mut a, grant("u", "r")).unwrap();
        assert_eq!(run(&mut a, grant("u", "r")), Ok(rev), "granting a held role again changes nothing");
        let revoke = |role: &str| Change::UserRevokeRole(pb::AuthUserRevokeRoleRequest { name: "u".into(), role: role.into() });
        run(&mut a, revoke("r")).unwrap();
        assert_eq!(run(&mut a, revoke("r")), Err(Error::RoleNotGranted));
        let no_perm = Change::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest { name: "r".into(), perm: None });
        assert_eq!(run(&mut a, no_perm), Err(Error::PermissionNotGiven));
        let unrevoked = Change::RoleRevokePermission(pb::AuthRoleRevokePermissionRequest { role: "r".into(), ..Default::default() });
        assert_eq!(run(&mut a, unrevoked), Err(Error::PermissionNotGranted));
        let auth = Change::Authenticate(SimpleToken { name: "u".into(), token: "t".into() });
        assert_eq!(run(&mut a, auth), Err(Error::AuthNotEnabled));
    }

    #[test]
    fn permissions_follow_roles_and_survive_reopening() {
        let backend = MemoryBackend::new();
        let mut a = AuthStore::open(&backend, Duration::from_secs(300)).unwrap();
        let mut batch = WriteBatch::default();
        for c in [
            user_add("u"),
            Change::RoleAdd(pb::AuthRoleAddRequest { name: "r".into() }),
            perm("r", 0, "/a/", "/a0"),
            perm("r", 2, "/a/", "/a0"),
            perm("r", 1, "/w", ""),
            grant("u", "r"),
        ] {
            a.apply(AuthCommand { change: Some(c) }, Instant::now(), &mut batch).unwrap();
        }
        assert_eq!(a.role("r").unwrap().len(), 2, "granting the same range again replaces its type");
        let p = a.perms("u").unwrap();
        assert!(p.can_read(b"/a/x", b"") && p.can_write(b"/a/x", b"") && p.can_write(b"/w", b"") && !p.can_read(b"/w", b""));
        backend.write(batch).unwrap();
        let again = AuthStore::open(&backend, Duration::from_secs(300)).unwrap();
        assert_eq!(again.stored, a.stored);
        assert_eq!(again.perms("u"), a.perms("u"));
        run(&mut a, Change::RoleDelete(pb::AuthRoleDeleteRequest { role: "r".into() })).unwrap();
        assert!(a.user("u").unwrap().roles.is_empty(), "a deleted role leaves its users");
        assert!(!a.perms("u").unwrap().can_read(b"/a/x", b""));
    }

    #[test]
    fn tokens_die_with_password_changes_user_deletion_and_disable() {
        let mut a = store();
        run(&mut a, user_add(ROOT)).unwrap();
        run(&mut a, grant(ROOT, ROOT)).unwrap();
        run(&mut a, user_add("u")).unwrap();
        run(&mut a, Change::Enable(Default::default())).unwrap();
        let now = Instant::now();
        for (t, u) in [("t1", "u"), ("t2", ROOT)] {
            run(&mut a, Change::Authenticate(SimpleToken { name: u.into(), token: t.into() })).unwrap();
        }
        assert_eq!(a.tokens.resolve("t1", now).as_deref(), Some("u"));
        let pw = Change::UserChangePassword(pb::AuthUserChangePasswordRequest {
            name: "u".into(),
            hashed_password: "x".into(),
            ..Default::default()
        });
        run(&mut a, pw).unwrap();
        assert_eq!(a.tokens.resolve("t1", now), None);
        assert!(a.tokens.resolve("t2", now).is_some());
        run(&mut a, Change::Disable(Default::default())).unwrap();
        assert_eq!(a.tokens.resolve("t2", now), None);
        // With auth off a request carrying the dropped token is refused, as etcd's is; one
        // without a token is let through.
        let with = |token: Option<&str>| Caller { token: token.map(str::to_string), ..Default::default() };
        assert_eq!(a.authorize(&with(Some("t2")), now).err(), Some(Error::InvalidAuthToken));
        assert!(a.authorize(&with(None), now).is_ok_and(|z| !z.enabled()));
        let unknown = Change::Authenticate(SimpleToken { name: "ghost".into(), token: "t3".into() });
        run(&mut a, Change::Enable(Default::default())).unwrap();
        assert_eq!(run(&mut a, unknown), Err(Error::AuthFailed));
        let opts = Some(UserAddOptions { no_password: true });
        run(&mut a, Change::UserAdd(pb::AuthUserAddRequest { name: "cn".into(), options: opts, ..Default::default() })).unwrap();
        assert!(a.user("cn").unwrap().no_password && a.user("cn").unwrap().password_hash.is_empty());
    }
}
