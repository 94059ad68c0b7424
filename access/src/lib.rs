//! keel-access: who may do what in keel-apiserver.
pub mod attributes;
pub mod authn;
pub mod authz;
pub mod error;
mod gostr;
pub mod node;
pub mod pki;
pub mod rbac;
pub mod review;
pub mod user;

pub use error::Error;
