//! Who a request is from, after authentication (kube's `user.Info`), and the well-known names
//! Kubernetes gives meaning to.

use std::collections::BTreeMap;

/// The user every request without credentials is (when `--anonymous-auth` is on).
pub const ANONYMOUS: &str = "system:anonymous";
/// Group of every authenticated user.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// Group of the anonymous user.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Members may do anything, and skip escalation checks (kube's `SystemPrivilegedGroup`).
pub const SYSTEM_MASTERS: &str = "system:masters";
/// Group of kubelets.
pub const NODES_GROUP: &str = "system:nodes";
/// Prefix of a kubelet's user name: `system:node:<nodeName>`.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The scheduler's user.
pub const KUBE_SCHEDULER: &str = "system:kube-scheduler";
/// The controller-manager's user.
pub const KUBE_CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
/// kube-proxy's user.
pub const KUBE_PROXY: &str = "system:kube-proxy";
/// Group of Prometheus-style scrapers.
pub const MONITORING_GROUP: &str = "system:monitoring";
/// Prefix of a service account's user name: `system:serviceaccount:<ns>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";
/// Group of every service account.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// Prefix of a namespace's service-account group: `system:serviceaccounts:<ns>`.
pub const SERVICE_ACCOUNT_GROUP_PREFIX: &str = "system:serviceaccounts:";

/// `user.Extra` keys set for bound service account tokens.
pub mod extra {
    /// Pod the token is bound to.
    pub const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
    /// UID of that pod.
    pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
    /// Node the pod runs on.
    pub const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
    /// UID of that node.
    pub const NODE_UID: &str = "authentication.kubernetes.io/node-uid";
    /// `JTI=<jti>` of the token.
    pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
}

/// An authenticated (or anonymous) user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`jane`, `system:node:keel-1`, `system:serviceaccount:dev:default`).
    pub name: String,
    /// Optional unique id.
    pub uid: String,
    /// Groups, in the order the authenticator produced them.
    pub groups: Vec<String>,
    /// Extra attributes (ordered, so audit lines and reviews are deterministic).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and groups.
    pub fn new(name: impl Into<String>, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }

    /// The anonymous user, as kube's anonymous authenticator makes it.
    pub fn anonymous() -> UserInfo {
        UserInfo::new(ANONYMOUS, &[ALL_UNAUTHENTICATED])
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Adds `system:authenticated` as kube's `AuthenticatedGroupAdder` does: to every user but
    /// the anonymous one, unless it already has it or `system:unauthenticated`.
    pub fn with_authenticated_group(mut self) -> UserInfo {
        if self.name != ANONYMOUS && !self.in_group(ALL_AUTHENTICATED) && !self.in_group(ALL_UNAUTHENTICATED) {
            self.groups.push(ALL_AUTHENTICATED.to_string());
        }
        self
    }

    /// The node name when this is a kubelet (`system:node:<name>` in `system:nodes`), as kube's
    /// `NodeIdentifier`: `Some("")` for a node user with no name after the prefix.
    pub fn node_name(&self) -> Option<&str> {
        let name = self.name.strip_prefix(NODE_USER_PREFIX)?;
        self.in_group(NODES_GROUP).then_some(name)
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// The groups of a service account: `system:serviceaccounts`, `system:serviceaccounts:<ns>`.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![ALL_SERVICE_ACCOUNTS.to_string(), format!("{SERVICE_ACCOUNT_GROUP_PREFIX}{namespace}")]
}

/// Splits `system:serviceaccount:<ns>:<name>` (kube's `SplitUsername`: both parts non-empty,
/// no further colon).
pub fn split_service_account_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    if ns.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some((ns, name))
}

/// kube's `MatchesUsername`: whether `username` is the service account `namespace/name`.
pub fn service_account_matches(namespace: &str, name: &str, username: &str) -> bool {
    username
        .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_names_split_like_kube() {
        assert_eq!(split_service_account_username("system:serviceaccount:dev:default"), Some(("dev", "default")));
        for bad in
            ["system:serviceaccount:dev", "system:serviceaccount::x", "system:serviceaccount:a:", "system:serviceaccount:a:b:c", "jane"]
        {
            assert_eq!(split_service_account_username(bad), None, "{bad}");
        }
        assert!(service_account_matches("dev", "default", "system:serviceaccount:dev:default"));
        assert!(!service_account_matches("dev", "default", "system:serviceaccount:dev:defaults"));
        assert!(!service_account_matches("de", "v:default", "system:serviceaccount:dev:default"));
    }

    #[test]
    fn authenticated_group_is_added_once() {
        let u = UserInfo::new("jane", &["dev"]).with_authenticated_group();
        assert_eq!(u.groups, ["dev", ALL_AUTHENTICATED]);
        assert_eq!(u.clone().with_authenticated_group(), u);
        assert_eq!(UserInfo::anonymous().with_authenticated_group().groups, [ALL_UNAUTHENTICATED]);
    }

    #[test]
    fn node_identity_needs_the_group() {
        assert_eq!(UserInfo::new("system:node:n1", &[NODES_GROUP]).node_name(), Some("n1"));
        assert_eq!(UserInfo::new("system:node:", &[NODES_GROUP]).node_name(), Some(""));
        assert_eq!(UserInfo::new("system:node:n1", &[]).node_name(), None);
        assert_eq!(UserInfo::new("jane", &[NODES_GROUP]).node_name(), None);
    }
}
