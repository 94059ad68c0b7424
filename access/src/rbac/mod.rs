//! Role-based access control exactly as Kubernetes' `rbac.authorization.k8s.io/v1`: rule
//! matching, the policy index the authorizer reads, escalation prevention for writes of roles
//! and bindings, ClusterRole aggregation, and the default roles and bindings.

pub mod aggregation;
mod authorizer;
pub mod bootstrap;
pub mod escalation;
mod policy;
pub mod rule;

pub use authorizer::RbacAuthorizer;
pub use policy::{Policy, ResolveError, SharedPolicy, Source, applies_to, applies_to_user, rules_of};
