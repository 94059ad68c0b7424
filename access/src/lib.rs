//! keel-access: who may do what in keel-apiserver.
pub mod attributes;
pub mod authz;
pub mod error;
mod gostr;
pub mod node;
pub mod rbac;
pub mod user;

pub use error::Error;
