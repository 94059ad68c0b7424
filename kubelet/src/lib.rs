//! keel-kubelet
pub mod clock;
pub mod error;
pub mod events;
pub mod logs;
pub mod node;
pub mod pod;
pub mod runtime;
