//! The RBAC objects the authorizer decides from: every Role, ClusterRole, RoleBinding and
//! ClusterRoleBinding, fed by the apiserver's watch of `rbac.authorization.k8s.io` (one writer),
//! read by every request (many readers) — kube's `DefaultRuleResolver` over informer listers.
//!
//! Invariants:
//! - The subject index always reflects the stored bindings: each binding is reachable from every
//!   subject that can apply to it (User by name, Group by name, ServiceAccount by namespace and
//!   name, a RoleBinding's namespace-less ServiceAccount defaulting to the binding's namespace),
//!   so a decision looks only at the bindings of the requesting user and its groups instead of
//!   all of them; the result equals kube's scan of every binding (a test checks this).
//! - Visiting order is deterministic: ClusterRoleBindings by name, then the namespace's
//!   RoleBindings by name; within a binding, the role's rules in order.
//! - A binding whose role is missing yields a resolution error for that binding and nothing else.
//!
//! Lock order: [`SharedPolicy`] has one `RwLock`; it is held only for the duration of one
//! decision (no I/O, no await) or one update.

use crate::gostr::quote;
use crate::user::{UserInfo, service_account_matches};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

/// Why a binding's rules could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The referenced Role or ClusterRole does not exist.
    RoleNotFound {
        /// `Role` or `ClusterRole`.
        kind: String,
        /// Its name.
        name: String,
    },
    /// `roleRef.kind` is neither `Role` nor `ClusterRole`.
    UnsupportedKind(String),
}

impl ResolveError {
    /// The message as kube's authorizer reports it (listers use the singular resource).
    pub fn lister_message(&self) -> String {
        match self {
            ResolveError::RoleNotFound { kind, name } => {
                format!("{}.rbac.authorization.k8s.io {} not found", kind.to_ascii_lowercase(), quote(name))
            }
            ResolveError::UnsupportedKind(k) => format!("unsupported role reference kind: {}", quote(k)),
        }
    }

    /// The message as kube's RBAC registry reports it (storage uses the plural resource).
    pub fn registry_message(&self) -> String {
        match self {
            ResolveError::RoleNotFound { kind, name } => {
                format!("{}s.rbac.authorization.k8s.io {} not found", kind.to_ascii_lowercase(), quote(name))
            }
            ResolveError::UnsupportedKind(k) => format!("unsupported role reference kind: {}", quote(k)),
        }
    }
}

/// Where a rule came from, described as kube's `RBAC: allowed by ...` reason does.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A ClusterRoleBinding and the subject in it that applied.
    ClusterRoleBinding(&'a ClusterRoleBinding, &'a Subject),
    /// A RoleBinding and the subject in it that applied.
    RoleBinding(&'a RoleBinding, &'a Subject),
}

fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
        format!("{} {}", s.kind, quote(&format!("{}/{}", s.name, ns)))
    } else {
        format!("{} {}", s.kind, quote(&s.name))
    }
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ClusterRoleBinding(b, s) => write!(
                f,
                "ClusterRoleBinding {} of {} {} to {}",
                quote(b.metadata.name.as_deref().unwrap_or("")),
                b.role_ref.kind,
                quote(&b.role_ref.name),
                describe_subject(s, "")
            ),
            Source::RoleBinding(b, s) => {
                let ns = b.metadata.namespace.as_deref().unwrap_or("");
                write!(
                    f,
                    "RoleBinding {} of {} {} to {}",
                    quote(&format!("{}/{}", b.metadata.name.as_deref().unwrap_or(""), ns)),
                    b.role_ref.kind,
                    quote(&b.role_ref.name),
                    describe_subject(s, ns)
                )
            }
        }
    }
}

/// kube's `appliesToUser`.
pub fn applies_to_user(user: &UserInfo, subject: &Subject, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(namespace);
            !ns.is_empty() && service_account_matches(ns, &subject.name, &user.name)
        }
        _ => false,
    }
}

/// The first subject of `subjects` that applies, as kube's `appliesTo`.
pub fn applies_to<'a>(user: &UserInfo, subjects: &'a [Subject], namespace: &str) -> Option<&'a Subject> {
    subjects.iter().find(|s| applies_to_user(user, s, namespace))
}

/// Binding names reachable from a subject.
#[derive(Debug, Default)]
struct SubjectIndex {
    users: HashMap<String, Vec<Arc<str>>>,
    groups: HashMap<String, Vec<Arc<str>>>,
    /// `system:serviceaccount:<ns>:<name>`, so lookup is by the requesting user name.
    service_accounts: HashMap<String, Vec<Arc<str>>>,
}

impl SubjectIndex {
    fn keys(subject: &Subject, binding_namespace: &str) -> Option<(u8, String)> {
        match subject.kind.as_str() {
            "User" => Some((0, subject.name.clone())),
            "Group" => Some((1, subject.name.clone())),
            "ServiceAccount" => {
                let ns = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
                (!ns.is_empty()).then(|| (2, crate::user::service_account_username(ns, &subject.name)))
            }
            _ => None,
        }
    }

    fn map(&mut self, kind: u8) -> &mut HashMap<String, Vec<Arc<str>>> {
        match kind {
            0 => &mut self.users,
            1 => &mut self.groups,
            _ => &mut self.service_accounts,
        }
    }

    fn add(&mut self, binding: &Arc<str>, subjects: &[Subject], ns: &str) {
        for s in subjects {
            if let Some((kind, key)) = Self::keys(s, ns) {
                let list = self.map(kind).entry(key).or_default();
                if !list.contains(binding) {
                    list.push(binding.clone());
                }
            }
        }
    }

    fn remove(&mut self, binding: &str, subjects: &[Subject], ns: &str) {
        for s in subjects {
            if let Some((kind, key)) = Self::keys(s, ns) {
                let map = self.map(kind);
                if let Some(list) = map.get_mut(&key) {
                    list.retain(|b| &**b != binding);
                    if list.is_empty() {
                        map.remove(&key);
                    }
                }
            }
        }
    }

    /// Names of the bindings that may apply to `user`, sorted and unique.
    fn candidates(&self, user: &UserInfo) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        if let Some(l) = self.users.get(&user.name) {
            out.extend(l.iter().cloned());
        }
        for g in &user.groups {
            if let Some(l) = self.groups.get(g) {
                out.extend(l.iter().cloned());
            }
        }
        if let Some(l) = self.service_accounts.get(&user.name) {
            out.extend(l.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Every RBAC object, indexed for decisions.
#[derive(Debug, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Arc<Role>>,
    cluster_roles: BTreeMap<String, Arc<ClusterRole>>,
    cluster_role_bindings: HashMap<Arc<str>, Arc<ClusterRoleBinding>>,
    cluster_index: SubjectIndex,
    role_bindings: HashMap<String, HashMap<Arc<str>, Arc<RoleBinding>>>,
    role_index: HashMap<String, SubjectIndex>,
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn ns_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

impl Policy {
    /// An empty policy (nothing is allowed).
    pub fn new() -> Policy {
        Policy::default()
    }

    /// A policy holding these objects.
    pub fn from_objects(
        roles: impl IntoIterator<Item = Role>,
        cluster_roles: impl IntoIterator<Item = ClusterRole>,
        role_bindings: impl IntoIterator<Item = RoleBinding>,
        cluster_role_bindings: impl IntoIterator<Item = ClusterRoleBinding>,
    ) -> Policy {
        let mut p = Policy::new();
        roles.into_iter().for_each(|r| p.upsert_role(r));
        cluster_roles.into_iter().for_each(|r| p.upsert_cluster_role(r));
        role_bindings.into_iter().for_each(|b| p.upsert_role_binding(b));
        cluster_role_bindings.into_iter().for_each(|b| p.upsert_cluster_role_binding(b));
        p
    }

    /// Adds or replaces a Role.
    pub fn upsert_role(&mut self, role: Role) {
        self.roles.insert((ns_of(&role.metadata), name_of(&role.metadata)), Arc::new(role));
    }

    /// Removes a Role.
    pub fn remove_role(&mut self, namespace: &str, name: &str) {
        self.roles.remove(&(namespace.to_string(), name.to_string()));
    }

    /// Adds or replaces a ClusterRole.
    pub fn upsert_cluster_role(&mut self, role: ClusterRole) {
        self.cluster_roles.insert(name_of(&role.metadata), Arc::new(role));
    }

    /// Removes a ClusterRole.
    pub fn remove_cluster_role(&mut self, name: &str) {
        self.cluster_roles.remove(name);
    }

    /// Adds or replaces a ClusterRoleBinding.
    pub fn upsert_cluster_role_binding(&mut self, binding: ClusterRoleBinding) {
        let name: Arc<str> = name_of(&binding.metadata).into();
        self.remove_cluster_role_binding(&name);
        self.cluster_index.add(&name, items_s(&binding.subjects), "");
        self.cluster_role_bindings.insert(name, Arc::new(binding));
    }

    /// Removes a ClusterRoleBinding.
    pub fn remove_cluster_role_binding(&mut self, name: &str) {
        if let Some(old) = self.cluster_role_bindings.remove(name) {
            self.cluster_index.remove(name, items_s(&old.subjects), "");
        }
    }

    /// Adds or replaces a RoleBinding.
    pub fn upsert_role_binding(&mut self, binding: RoleBinding) {
        let ns = ns_of(&binding.metadata);
        let name: Arc<str> = name_of(&binding.metadata).into();
        self.remove_role_binding(&ns, &name);
        self.role_index.entry(ns.clone()).or_default().add(&name, items_s(&binding.subjects), &ns);
        self.role_bindings.entry(ns).or_default().insert(name, Arc::new(binding));
    }

    /// Removes a RoleBinding.
    pub fn remove_role_binding(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.role_bindings.get_mut(namespace).and_then(|m| m.remove(name))
            && let Some(index) = self.role_index.get_mut(namespace)
        {
            index.remove(name, items_s(&old.subjects), namespace);
        }
    }

    /// Every ClusterRole, by name (the aggregation pass reads them).
    pub fn cluster_roles(&self) -> impl Iterator<Item = &ClusterRole> {
        self.cluster_roles.values().map(|r| &**r)
    }

    /// One ClusterRole.
    pub fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.cluster_roles.get(name).map(|r| &**r)
    }

    /// kube's `GetRoleReferenceRules`: the rules a binding in `binding_namespace` ("" for a
    /// ClusterRoleBinding) grants.
    pub fn role_reference_rules(&self, role_ref: &RoleRef, binding_namespace: &str) -> Result<&[PolicyRule], ResolveError> {
        let not_found = || ResolveError::RoleNotFound { kind: role_ref.kind.clone(), name: role_ref.name.clone() };
        match role_ref.kind.as_str() {
            "Role" => {
                self.roles.get(&(binding_namespace.to_string(), role_ref.name.clone())).map(|r| items_r(&r.rules)).ok_or_else(not_found)
            }
            "ClusterRole" => self.cluster_roles.get(&role_ref.name).map(|r| items_r(&r.rules)).ok_or_else(not_found),
            other => Err(ResolveError::UnsupportedKind(other.to_string())),
        }
    }

    /// kube's `VisitRulesFor`: calls `visit` with each rule that applies to `user` in `namespace`
    /// (cluster-wide rules first), or with a resolution error; stops when `visit` returns false.
    pub fn visit_rules_for<'a>(
        &'a self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(Option<Source<'a>>, Option<&'a PolicyRule>, Option<ResolveError>) -> bool,
    ) {
        for name in self.cluster_index.candidates(user) {
            let Some(binding) = self.cluster_role_bindings.get(&name) else { continue };
            let Some(subject) = applies_to(user, items_s(&binding.subjects), "") else { continue };
            match self.role_reference_rules(&binding.role_ref, "") {
                Err(e) => {
                    if !visit(None, None, Some(e)) {
                        return;
                    }
                }
                Ok(rules) => {
                    let source = Source::ClusterRoleBinding(binding, subject);
                    for r in rules {
                        if !visit(Some(source), Some(r), None) {
                            return;
                        }
                    }
                }
            }
        }
        if namespace.is_empty() {
            return;
        }
        let (Some(index), Some(bindings)) = (self.role_index.get(namespace), self.role_bindings.get(namespace)) else { return };
        for name in index.candidates(user) {
            let Some(binding) = bindings.get(&name) else { continue };
            let Some(subject) = applies_to(user, items_s(&binding.subjects), namespace) else { continue };
            match self.role_reference_rules(&binding.role_ref, namespace) {
                Err(e) => {
                    if !visit(None, None, Some(e)) {
                        return;
                    }
                }
                Ok(rules) => {
                    let source = Source::RoleBinding(binding, subject);
                    for r in rules {
                        if !visit(Some(source), Some(r), None) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// kube's `RulesFor`: every rule that applies, and the errors met on the way.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<ResolveError>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(user, namespace, |_, rule, err| {
            if let Some(r) = rule {
                rules.push(r.clone());
            }
            if let Some(e) = err {
                errors.push(e);
            }
            true
        });
        (rules, errors)
    }

    /// kube's linear scan over every binding, kept to check the index against.
    #[cfg(test)]
    pub(crate) fn rules_for_by_scan(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        let mut crbs: Vec<_> = self.cluster_role_bindings.iter().collect();
        crbs.sort_by(|a, b| a.0.cmp(b.0));
        for (_, b) in crbs {
            if applies_to(user, items_s(&b.subjects), "").is_some()
                && let Ok(r) = self.role_reference_rules(&b.role_ref, "")
            {
                out.extend(r.iter().cloned());
            }
        }
        if let Some(bindings) = self.role_bindings.get(namespace) {
            let mut rbs: Vec<_> = bindings.iter().collect();
            rbs.sort_by(|a, b| a.0.cmp(b.0));
            for (_, b) in rbs {
                if applies_to(user, items_s(&b.subjects), namespace).is_some()
                    && let Ok(r) = self.role_reference_rules(&b.role_ref, namespace)
                {
                    out.extend(r.iter().cloned());
                }
            }
        }
        out
    }
}

fn items_s(v: &Option<Vec<Subject>>) -> &[Subject] {
    v.as_deref().unwrap_or(&[])
}

fn items_r(v: &Option<Vec<PolicyRule>>) -> &[PolicyRule] {
    v.as_deref().unwrap_or(&[])
}

/// Rule lists of a role field, as slices (for callers holding a Role or ClusterRole).
pub fn rules_of(v: &Option<Vec<PolicyRule>>) -> &[PolicyRule] {
    items_r(v)
}

/// The policy shared between the watch that feeds it and the requests that read it.
#[derive(Debug, Clone, Default)]
pub struct SharedPolicy(Arc<RwLock<Policy>>);

impl SharedPolicy {
    /// Wraps a policy.
    pub fn new(policy: Policy) -> SharedPolicy {
        SharedPolicy(Arc::new(RwLock::new(policy)))
    }

    /// Reads the policy (a decision).
    pub fn read<T>(&self, f: impl FnOnce(&Policy) -> T) -> T {
        // A panic while holding the lock leaves the maps consistent (every update is a few map
        // operations), so a poisoned lock is still safe to read.
        let guard = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard)
    }

    /// Changes the policy (a watch event).
    pub fn update<T>(&self, f: impl FnOnce(&mut Policy) -> T) -> T {
        let mut guard = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
