//! The node: registration, status, Lease heartbeat.

pub mod conditions;
