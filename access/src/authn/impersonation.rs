//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`; kube's `WithImpersonation`): the
//! authenticated user asks to act as another, and must be allowed the `impersonate` verb on
//! each thing it asks for.
//!
//! Invariants (kube's):
//! - `Impersonate-User` naming `system:serviceaccount:<ns>:<name>` is checked as
//!   `impersonate serviceaccounts <name>` in `<ns>` and, without `Impersonate-Group`, takes that
//!   service account's groups; any other name is `impersonate users <name>`.
//! - Each `Impersonate-Group` is `impersonate groups <g>`; each `Impersonate-Extra-<key>` value
//!   is `impersonate userextras/<key> <value>` and `Impersonate-Uid` is `impersonate uids <uid>`
//!   (both in `authentication.k8s.io`); groups, extras or uid without a user are an error.
//! - The impersonated user gets `system:authenticated` unless it is `system:anonymous` (which
//!   gets `system:unauthenticated`) or already names one of the two.
//! - The first check that fails answers 403 with kube's message for that check.

use crate::attributes::Attributes;
use crate::authz::{Authorizer, forbidden};
use crate::error::Error;
use crate::user::{ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS, UserInfo, service_account_groups, split_service_account_username};
use std::collections::BTreeMap;

/// `Impersonate-User`.
pub const USER_HEADER: &str = "impersonate-user";
/// `Impersonate-Group` (repeated).
pub const GROUP_HEADER: &str = "impersonate-group";
/// `Impersonate-Uid`.
pub const UID_HEADER: &str = "impersonate-uid";
/// Prefix of `Impersonate-Extra-<key>`.
pub const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";

fn unescape_key(key: &str) -> String {
    // kube path-unescapes the key (kubectl escapes characters not allowed in header names).
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) =
                (bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)), bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the request carries any impersonation header (cheap test before the work).
pub fn requested<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    headers.into_iter().any(|(k, _)| {
        let k = k.to_ascii_lowercase();
        k == USER_HEADER || k == GROUP_HEADER || k == UID_HEADER || k.starts_with(EXTRA_HEADER_PREFIX)
    })
}

/// Applies the impersonation headers of a request made by `requestor`: `Ok(None)` when there
/// are none, the impersonated user when every check passes, a 403 (or 500 for groups without a
/// user, as kube) otherwise. Header names are matched case-insensitively.
pub fn impersonate<'a>(
    authz: &dyn Authorizer,
    requestor: &UserInfo,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<UserInfo>, Error> {
    let mut user: Option<String> = None;
    let mut groups_requested: Vec<String> = Vec::new();
    let mut uid: Option<String> = None;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        if k == USER_HEADER {
            if user.is_none() && !v.is_empty() {
                user = Some(v.to_string());
            }
        } else if k == GROUP_HEADER {
            groups_requested.push(v.to_string());
        } else if k == UID_HEADER {
            if uid.is_none() && !v.is_empty() {
                uid = Some(v.to_string());
            }
        } else if let Some(key) = k.strip_prefix(EXTRA_HEADER_PREFIX) {
            extra.entry(unescape_key(key)).or_default().push(v.to_string());
        }
    }
    let Some(username) = user else {
        if groups_requested.is_empty() && extra.is_empty() && uid.is_none() {
            return Ok(None);
        }
        return Err(Error::Internal("requested groups, user extras or uid without impersonating a user".into()));
    };

    let check = |attrs: Attributes| -> Result<(), Error> {
        let v = authz.authorize(&attrs);
        if v.allowed() { Ok(()) } else { Err(forbidden(&attrs, &v.reason)) }
    };
    let ask = |group: &str, resource: &str, ns: &str, name: &str| {
        Attributes::resource(requestor.clone(), "impersonate", group, resource, ns, name)
    };

    let groups_specified = !groups_requested.is_empty();
    let mut groups: Vec<String> = Vec::new();
    if let Some((ns, name)) = split_service_account_username(&username) {
        check(ask("", "serviceaccounts", ns, name))?;
        if !groups_specified {
            groups = service_account_groups(ns);
        }
    } else {
        check(ask("", "users", "", &username))?;
    }
    for g in &groups_requested {
        check(ask("", "groups", "", g))?;
        groups.push(g.clone());
    }
    for (key, values) in &extra {
        for value in values {
            check(ask("authentication.k8s.io", "userextras", "", value).with_subresource(key))?;
        }
    }
    if let Some(u) = &uid {
        check(ask("authentication.k8s.io", "uids", "", u))?;
    }

    if username != ANONYMOUS {
        if !groups.iter().any(|g| g == ALL_AUTHENTICATED || g == ALL_UNAUTHENTICATED) {
            groups.push(ALL_AUTHENTICATED.to_string());
        }
    } else if !groups.iter().any(|g| g == ALL_UNAUTHENTICATED) {
        groups.push(ALL_UNAUTHENTICATED.to_string());
    }
    Ok(Some(UserInfo { name: username, uid: uid.unwrap_or_default(), groups, extra }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Chain, Mode};
    use crate::node::SharedGraph;
    use crate::rbac::bootstrap::default_policy;
    use crate::rbac::{SharedPolicy, rule::rule};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use serde_json::json;

    fn chain() -> Chain {
        let policy = SharedPolicy::new(default_policy(true).into_policy());
        policy.update(|p| {
            let mut role: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "impersonator"}})).unwrap();
            let mut named = rule(&["impersonate"], &[""], &["users"]);
            named.resource_names = Some(vec!["jane".into()]);
            role.rules = Some(vec![
                named,
                rule(&["impersonate"], &[""], &["groups", "serviceaccounts"]),
                rule(&["impersonate"], &["authentication.k8s.io"], &["uids", "userextras/scopes"]),
            ]);
            p.upsert_cluster_role(role);
            let b: ClusterRoleBinding = serde_json::from_value(json!({"metadata": {"name": "ops-impersonate"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonator"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ops"}]}))
            .unwrap();
            p.upsert_cluster_role_binding(b);
        });
        Chain::new(&[Mode::Rbac], &policy, &SharedGraph::default())
    }

    fn ops() -> UserInfo {
        UserInfo::new("ops", &["system:authenticated"])
    }

    #[test]
    fn no_headers_no_impersonation() {
        assert_eq!(impersonate(&chain(), &ops(), [("Authorization", "Bearer x")]).unwrap(), None);
        assert!(!requested([("Accept", "json")]));
        assert!(requested([("Impersonate-User", "jane")]));
    }

    #[test]
    fn impersonating_a_user_adds_authenticated() {
        let u = impersonate(&chain(), &ops(), [("Impersonate-User", "jane")]).unwrap().unwrap();
        assert_eq!(u, UserInfo::new("jane", &["system:authenticated"]));
        let u = impersonate(&chain(), &ops(), [("impersonate-user", "jane"), ("Impersonate-Group", "devs"), ("Impersonate-Uid", "42")])
            .unwrap()
            .unwrap();
        assert_eq!((u.groups, u.uid.as_str()), (vec!["devs".to_string(), "system:authenticated".to_string()], "42"));
    }

    #[test]
    fn service_accounts_get_their_groups() {
        let u = impersonate(&chain(), &ops(), [("Impersonate-User", "system:serviceaccount:dev:builder")]).unwrap().unwrap();
        assert_eq!(u.groups, ["system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated"]);
        let u = impersonate(&chain(), &ops(), [("Impersonate-User", "system:serviceaccount:dev:builder"), ("Impersonate-Group", "x")])
            .unwrap()
            .unwrap();
        assert_eq!(u.groups, ["x", "system:authenticated"]);
    }

    #[test]
    fn refusals_are_kubes_403s() {
        let err = impersonate(&chain(), &ops(), [("Impersonate-User", "bob")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"users "bob" is forbidden: User "ops" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let jane = UserInfo::new("jane", &["system:authenticated"]);
        let err = impersonate(&chain(), &jane, [("Impersonate-User", "system:serviceaccount:dev:builder")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"serviceaccounts "builder" is forbidden: User "jane" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "dev""#
        );
        let err = impersonate(&chain(), &ops(), [("Impersonate-User", "jane"), ("Impersonate-Extra-Reason", "x")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"userextras.authentication.k8s.io "x" is forbidden: User "ops" cannot impersonate resource "userextras/reason" in API group "authentication.k8s.io" at the cluster scope"#
        );
        let u = impersonate(
            &chain(),
            &ops(),
            [("Impersonate-User", "jane"), ("Impersonate-Extra-Scopes", "a"), ("Impersonate-Extra-Scopes", "b")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.extra.get("scopes"), Some(&vec!["a".to_string(), "b".to_string()]));
        assert_eq!(impersonate(&chain(), &ops(), [("Impersonate-Group", "devs")]).unwrap_err().code(), 500);
    }

    #[test]
    fn anonymous_stays_unauthenticated_and_masters_may_do_all() {
        let admin = UserInfo::new("admin", &["system:masters"]);
        let u = impersonate(&chain(), &admin, [("Impersonate-User", "system:anonymous")]).unwrap().unwrap();
        assert_eq!(u.groups, ["system:unauthenticated"]);
        let u =
            impersonate(&chain(), &admin, [("Impersonate-User", "x"), ("Impersonate-Group", "system:unauthenticated")]).unwrap().unwrap();
        assert_eq!(u.groups, ["system:unauthenticated"]);
        assert_eq!(unescape_key("example.com%2fscope"), "example.com/scope");
    }
}
