//! keel-access: who may do what in keel-apiserver, decided as kube-apiserver decides it.
//!
//! A library of pure cores the apiserver calls on its request path; it holds no sockets, reads
//! no clock and writes no store. The apiserver feeds it (watch events into the RBAC policy and
//! the node graph, its caches behind the lookup traits, its clock) and writes what it returns.
//!
//! ```text
//!  TLS handshake ── authn::x509::client_cert_verifier (--client-ca-file)
//!        │
//!  request ──► authn::Authenticator ──► authn::impersonation ──► authz::Chain ──► admission::* ──► store
//!              x509 CN/O, token file,   Impersonate-* headers    PrivilegedGroups   NamespaceLifecycle
//!              ServiceAccount JWT,      (impersonate checks       Node (node graph)  LimitRanger
//!              anonymous                 through authz)           RBAC (policy)      ServiceAccount, NodeRestriction
//!                  │ 401                     │ 403                AlwaysAllow/Deny   DefaultTolerationSeconds
//!                  ▼                         ▼                        │ 403          ResourceQuota (charges)
//!              error::Error::status() — kube's Status bodies          ▼
//!                                                          review::* (can-i), rbac::escalation on
//!  audit::event_line — one audit.k8s.io/v1 line per request            writes of roles/bindings
//!
//!  watch of rbac.authorization.k8s.io ──► rbac::SharedPolicy      watch of pods, PVs ──► node::SharedGraph
//!  rbac::aggregation (ClusterRole aggregationRule), rbac::bootstrap (default policy), pki (keel up's CA)
//! ```
//!
//! Modules:
//! - [`access`]: the flags ([`AccessConfig`]) and the request front in one call ([`Access::check`]).
//! - [`attributes`]: the authorization question, and kube's parse of method + path + query into it.
//! - [`authn`]: client certificates, `--token-auth-file`, ServiceAccount tokens (issue and
//!   validate), anonymous, impersonation.
//! - [`authz`]: decisions, the `--authorization-mode` chain, kube's 403 message.
//! - [`rbac`]: rule matching, the indexed policy, escalation prevention, aggregation, defaults.
//! - [`node`]: the Node authorizer and the graph of what each node's pods reference.
//! - [`review`]: SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview,
//!   SelfSubjectRulesReview.
//! - [`admission`]: NamespaceLifecycle, LimitRanger, ServiceAccount, DefaultTolerationSeconds,
//!   ResourceQuota arithmetic, quantities.
//! - [`audit`]: Metadata-level audit events.
//! - [`pki`]: the client CA and component certificates `keel up` writes.
//! - [`user`]: user info and Kubernetes' well-known names.
//! - [`error`]: the crate's error, and its Kubernetes Status.
//!
//! `INTEGRATION.md` (next to this crate's Cargo.toml) says where the apiserver calls each part.

pub mod access;
pub mod admission;
pub mod attributes;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod error;
mod gostr;
pub mod node;
pub mod pki;
pub mod rbac;
pub mod review;
pub mod user;

pub use access::{Access, AccessConfig, Allowed, Refused, RequestHead};
pub use error::Error;
