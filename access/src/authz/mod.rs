//! Authorization: the decision for one request, from the authorizers `--authorization-mode`
//! names, tried in order (kube's union authorizer), and kube's 403 message when none allows.
//!
//! Invariants (kube's):
//! - The first authorizer that says Allow or Deny decides; NoOpinion passes to the next; when
//!   all pass, the request is refused and the reasons they gave are joined with newlines.
//! - `system:masters` is allowed everything before any mode is asked (kube's privileged-groups
//!   authorizer, always first).
//! - Rule listing (`SelfSubjectRulesReview`) is the union of every authorizer's rules; an
//!   authorizer that cannot list (Node) marks the answer incomplete.

use crate::attributes::Attributes;
use crate::error::Error;
use crate::gostr::quote;
use crate::node::{NodeAuthorizer, SharedGraph};
use crate::rbac::{RbacAuthorizer, SharedPolicy};
use crate::user::{SYSTEM_MASTERS, UserInfo};
use k8s_openapi::api::authorization::v1::{NonResourceRule, ResourceRule};

/// What an authorizer thinks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; stop asking.
    Allow,
    /// Refused; stop asking.
    Deny,
    /// No opinion; ask the next authorizer.
    NoOpinion,
}

/// A decision with kube's reason string (`RBAC: allowed by ...`, `no relationship found ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// Why (may be empty).
    pub reason: String,
    /// An evaluation error, reported in access reviews (may be empty).
    pub error: String,
}

impl Verdict {
    /// Allow with a reason.
    pub fn allow(reason: impl Into<String>) -> Verdict {
        Verdict { decision: Decision::Allow, reason: reason.into(), error: String::new() }
    }

    /// No opinion with a reason.
    pub fn no_opinion(reason: impl Into<String>) -> Verdict {
        Verdict { decision: Decision::NoOpinion, reason: reason.into(), error: String::new() }
    }

    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// The rules a user holds in a namespace, as `SelfSubjectRulesReview` reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    /// Rules over resources.
    pub resource_rules: Vec<ResourceRule>,
    /// Rules over non-resource URLs.
    pub non_resource_rules: Vec<NonResourceRule>,
    /// Some authorizer could not list its rules.
    pub incomplete: bool,
    /// Errors met while listing (kube's aggregate message).
    pub error: String,
}

/// One authorizer.
pub trait Authorizer: Send + Sync {
    /// Decides on one request.
    fn authorize(&self, attrs: &Attributes) -> Verdict;
    /// The rules `user` holds in `namespace`.
    fn rules_for(&self, user: &UserInfo, namespace: &str) -> RuleSet;
}

/// One `--authorization-mode` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything is allowed (tests).
    AlwaysAllow,
    /// Everything is refused.
    AlwaysDeny,
    /// Kubelets, limited to their own node's objects.
    Node,
    /// Role-based access control.
    Rbac,
}

/// Parses `--authorization-mode` (`Node,RBAC`), with kube's validation messages.
pub fn parse_modes(flag: &str) -> Result<Vec<Mode>, Error> {
    let mut modes = Vec::new();
    for m in flag.split(',').map(str::trim) {
        let mode = match m {
            "AlwaysAllow" => Mode::AlwaysAllow,
            "AlwaysDeny" => Mode::AlwaysDeny,
            "Node" => Mode::Node,
            "RBAC" => Mode::Rbac,
            other => return Err(Error::BadRequest(format!("authorization-mode {} is not a valid mode", quote(other)))),
        };
        if modes.contains(&mode) {
            return Err(Error::BadRequest(format!("authorization-mode {} has mode specified more than once", quote(m))));
        }
        modes.push(mode);
    }
    if modes.is_empty() {
        return Err(Error::BadRequest("at least one authorization-mode must be passed".into()));
    }
    Ok(modes)
}

/// Members of `system:masters` may do anything.
struct PrivilegedGroups;

impl Authorizer for PrivilegedGroups {
    fn authorize(&self, attrs: &Attributes) -> Verdict {
        if attrs.user.in_group(SYSTEM_MASTERS) { Verdict::allow("") } else { Verdict::no_opinion("") }
    }
    fn rules_for(&self, _: &UserInfo, _: &str) -> RuleSet {
        RuleSet::default()
    }
}

struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> Verdict {
        Verdict::allow("")
    }
    fn rules_for(&self, _: &UserInfo, _: &str) -> RuleSet {
        let all = || vec!["*".to_string()];
        RuleSet {
            resource_rules: vec![ResourceRule { verbs: all(), api_groups: Some(all()), resources: Some(all()), resource_names: None }],
            non_resource_rules: vec![NonResourceRule { verbs: all(), non_resource_urls: Some(all()) }],
            ..Default::default()
        }
    }
}

struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _: &Attributes) -> Verdict {
        Verdict { decision: Decision::Deny, reason: "Everything is forbidden.".into(), error: String::new() }
    }
    fn rules_for(&self, _: &UserInfo, _: &str) -> RuleSet {
        RuleSet::default()
    }
}

/// The authorizers of `--authorization-mode`, behind the privileged-groups one.
pub struct Chain {
    authorizers: Vec<Box<dyn Authorizer>>,
}

impl Chain {
    /// Builds the chain for `modes` over the shared RBAC policy and node graph.
    pub fn new(modes: &[Mode], policy: &SharedPolicy, graph: &SharedGraph) -> Chain {
        let mut authorizers: Vec<Box<dyn Authorizer>> = vec![Box::new(PrivilegedGroups)];
        for m in modes {
            authorizers.push(match m {
                Mode::AlwaysAllow => Box::new(AlwaysAllow),
                Mode::AlwaysDeny => Box::new(AlwaysDeny),
                Mode::Node => Box::new(NodeAuthorizer::new(graph.clone())),
                Mode::Rbac => Box::new(RbacAuthorizer::new(policy.clone())),
            });
        }
        Chain { authorizers }
    }

    /// A chain of the given authorizers, without the privileged-groups one (tests, embedding).
    pub fn from_authorizers(authorizers: Vec<Box<dyn Authorizer>>) -> Chain {
        Chain { authorizers }
    }
}

impl Authorizer for Chain {
    fn authorize(&self, attrs: &Attributes) -> Verdict {
        let mut reasons: Vec<String> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for a in &self.authorizers {
            let v = a.authorize(attrs);
            if !v.error.is_empty() {
                errors.push(v.error.clone());
            }
            if !v.reason.is_empty() {
                reasons.push(v.reason.clone());
            }
            if v.decision != Decision::NoOpinion {
                return v;
            }
        }
        Verdict { decision: Decision::NoOpinion, reason: reasons.join("\n"), error: aggregate(&errors) }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> RuleSet {
        let mut out = RuleSet::default();
        let mut errors = Vec::new();
        for a in &self.authorizers {
            let r = a.rules_for(user, namespace);
            out.resource_rules.extend(r.resource_rules);
            out.non_resource_rules.extend(r.non_resource_rules);
            out.incomplete |= r.incomplete;
            if !r.error.is_empty() {
                errors.push(r.error);
            }
        }
        out.error = aggregate(&errors);
        out
    }
}

/// kube's `utilerrors.NewAggregate(...).Error()`: one message as is, several as `[a, b]`.
pub fn aggregate(messages: &[String]) -> String {
    match messages {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// kube's `forbiddenMessage`: `User "jane" cannot list resource "pods" in API group "" in the
/// namespace "dev"`, the cluster-scope form, and the non-resource `cannot get path "/x"` form.
pub fn forbidden_message(attrs: &Attributes) -> String {
    let user = quote(&attrs.user.name);
    if !attrs.resource_request {
        return format!("User {user} cannot {} path {}", attrs.verb, quote(&attrs.path));
    }
    let resource = if attrs.subresource.is_empty() { attrs.resource.clone() } else { format!("{}/{}", attrs.resource, attrs.subresource) };
    if attrs.namespace.is_empty() {
        format!(
            "User {user} cannot {} resource {} in API group {} at the cluster scope",
            attrs.verb,
            quote(&resource),
            quote(&attrs.api_group)
        )
    } else {
        format!(
            "User {user} cannot {} resource {} in API group {} in the namespace {}",
            attrs.verb,
            quote(&resource),
            quote(&attrs.api_group),
            quote(&attrs.namespace)
        )
    }
}

/// The 403 kube-apiserver answers a refused request with (`responsewriters.Forbidden`):
/// `pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace
/// "dev"`, with `: <reason>` when the authorizers gave one.
pub fn forbidden(attrs: &Attributes, reason: &str) -> Error {
    // kube escapes HTML metacharacters in the message.
    let sanitize = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let msg = sanitize(&forbidden_message(attrs));
    let detail = if reason.is_empty() { msg } else { format!("{msg}: {reason}") };
    let (group, resource) = if attrs.resource_request { (attrs.api_group.as_str(), attrs.resource.as_str()) } else { ("", "") };
    Error::forbidden(group, resource, &attrs.name, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> UserInfo {
        UserInfo::new("jane", &["system:authenticated"])
    }

    #[test]
    fn forbidden_messages_are_kubes() {
        let cases = [
            (
                Attributes::resource(jane(), "list", "", "pods", "dev", ""),
                "",
                r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "dev""#,
            ),
            (
                Attributes::resource(jane(), "list", "", "nodes", "", ""),
                "",
                r#"nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope"#,
            ),
            (
                Attributes::resource(jane(), "get", "", "pods", "dev", "web-1").with_subresource("log"),
                "",
                r#"pods "web-1" is forbidden: User "jane" cannot get resource "pods/log" in API group "" in the namespace "dev""#,
            ),
            (
                Attributes::resource(jane(), "create", "apps", "deployments", "prod", ""),
                "",
                r#"deployments.apps is forbidden: User "jane" cannot create resource "deployments" in API group "apps" in the namespace "prod""#,
            ),
            (
                Attributes::resource(UserInfo::new("system:node:n1", &["system:nodes"]), "get", "", "secrets", "dev", "s"),
                "no relationship found between node 'n1' and this object",
                r#"secrets "s" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "dev": no relationship found between node 'n1' and this object"#,
            ),
            (
                Attributes::non_resource(UserInfo::anonymous(), "get", "/apis"),
                "",
                r#"forbidden: User "system:anonymous" cannot get path "/apis""#,
            ),
        ];
        for (attrs, reason, want) in cases {
            assert_eq!(forbidden(&attrs, reason).to_string(), want);
        }
    }

    #[test]
    fn modes_parse_like_the_flag() {
        assert_eq!(parse_modes("Node,RBAC").unwrap(), [Mode::Node, Mode::Rbac]);
        assert_eq!(parse_modes("AlwaysAllow").unwrap(), [Mode::AlwaysAllow]);
        assert!(parse_modes("RBAC,RBAC").is_err());
        assert!(parse_modes("ABAC").is_err());
    }

    #[test]
    fn chain_stops_at_first_opinion_and_joins_reasons() {
        struct Fixed(Verdict);
        impl Authorizer for Fixed {
            fn authorize(&self, _: &Attributes) -> Verdict {
                self.0.clone()
            }
            fn rules_for(&self, _: &UserInfo, _: &str) -> RuleSet {
                RuleSet { incomplete: true, error: "e".into(), ..Default::default() }
            }
        }
        let a = Attributes::resource(jane(), "get", "", "pods", "dev", "p");
        let chain = Chain::from_authorizers(vec![Box::new(Fixed(Verdict::no_opinion("one"))), Box::new(Fixed(Verdict::no_opinion("two")))]);
        let v = chain.authorize(&a);
        assert_eq!((v.decision, v.reason.as_str()), (Decision::NoOpinion, "one\ntwo"));
        let rules = chain.rules_for(&a.user, "dev");
        assert!(rules.incomplete);
        assert_eq!(rules.error, "[e, e]");
        let chain = Chain::from_authorizers(vec![Box::new(Fixed(Verdict::allow("yes"))), Box::new(AlwaysDeny)]);
        assert!(chain.authorize(&a).allowed());
        let masters = Attributes::resource(UserInfo::new("admin", &[SYSTEM_MASTERS]), "delete", "", "nodes", "", "n");
        let chain = Chain::new(&[Mode::AlwaysDeny], &SharedPolicy::default(), &SharedGraph::default());
        assert!(chain.authorize(&masters).allowed());
        assert_eq!(chain.authorize(&a).decision, Decision::Deny);
    }
}
