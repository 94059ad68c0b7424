//! The node: [`agent`] (registration, status, Lease), [`pods`] (the pods loop and eviction),
//! [`conditions`] (pure), [`host`] (what the host reports).

pub mod agent;
pub mod conditions;
pub mod host;
pub mod pods;
