//! The RBAC authorizer (kube's `RBACAuthorizer`): allowed when some rule bound to the user (or
//! one of its groups or service account identities) in the request's namespace, or
//! cluster-wide, allows the request; otherwise no opinion, with resolution errors as the reason.

use crate::attributes::Attributes;
use crate::authz::{Authorizer, RuleSet, Verdict, aggregate};
use crate::rbac::SharedPolicy;
use crate::rbac::rule::{items, rule_allows};
use crate::user::UserInfo;
use k8s_openapi::api::authorization::v1::{NonResourceRule, ResourceRule};

/// RBAC over a shared policy.
#[derive(Debug, Clone)]
pub struct RbacAuthorizer {
    policy: SharedPolicy,
}

impl RbacAuthorizer {
    /// An authorizer reading `policy`.
    pub fn new(policy: SharedPolicy) -> RbacAuthorizer {
        RbacAuthorizer { policy }
    }
}

fn opt(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, attrs: &Attributes) -> Verdict {
        self.policy.read(|p| {
            let mut allowed = None;
            let mut errors = Vec::new();
            p.visit_rules_for(&attrs.user, &attrs.namespace, |source, rule, err| {
                if let (Some(source), Some(rule)) = (source, rule)
                    && rule_allows(attrs, rule)
                {
                    allowed = Some(format!("RBAC: allowed by {source}"));
                    return false;
                }
                if let Some(e) = err {
                    errors.push(e.lister_message());
                }
                true
            });
            match allowed {
                Some(reason) => Verdict::allow(reason),
                None if errors.is_empty() => Verdict::no_opinion(""),
                None => Verdict::no_opinion(format!("RBAC: {}", aggregate(&errors))),
            }
        })
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> RuleSet {
        let (rules, errors) = self.policy.read(|p| p.rules_for(user, namespace));
        let mut out = RuleSet::default();
        for r in &rules {
            if !items(&r.resources).is_empty() {
                out.resource_rules.push(ResourceRule {
                    verbs: r.verbs.clone(),
                    api_groups: opt(items(&r.api_groups)),
                    resources: opt(items(&r.resources)),
                    resource_names: opt(items(&r.resource_names)),
                });
            }
            if !items(&r.non_resource_urls).is_empty() {
                out.non_resource_rules
                    .push(NonResourceRule { verbs: r.verbs.clone(), non_resource_urls: opt(items(&r.non_resource_urls)) });
            }
        }
        let messages: Vec<String> = errors.iter().map(|e| e.lister_message()).collect();
        out.error = aggregate(&messages);
        out
    }
}
