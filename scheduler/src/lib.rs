//! x
pub mod cache;
pub mod message;
pub mod node;
pub mod plugins;
pub mod pod;
pub mod preempt;
pub mod quantity;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod score;
