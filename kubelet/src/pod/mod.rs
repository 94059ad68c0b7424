//! Pods: the pure cores (status, QoS, back-off, probe results, eviction order, quantities) and
//! the shells that drive them (the per-pod worker, the prober, volumes and env, static pods).

pub mod backoff;
pub mod env;
pub mod eviction;
pub mod probe;
pub mod qos;
pub mod quantity;
pub mod status;
pub mod volumes;
