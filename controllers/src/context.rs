//! What every controller is built from: the client, the shared informers, the clock, the
//! event recorder and the metrics. The composition root (`main.rs`, or a test) builds one.

use crate::clock::SharedClock;
use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::shared::Shared;
use std::sync::Arc;

/// Shared by all controllers of one manager run.
#[derive(Clone)]
pub struct Context {
    /// The apiserver client.
    pub client: kube::Client,
    /// The process's informers.
    pub shared: Arc<Shared>,
    /// Wall time.
    pub clock: SharedClock,
    /// Event recorder.
    pub recorder: Recorder,
    /// Workqueue metrics.
    pub metrics: Metrics,
}
