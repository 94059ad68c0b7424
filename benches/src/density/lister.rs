//! The run's own list calls, as a user's `kubectl get pods -A` makes them: every `every`, one
//! unpaginated LIST of pods, alternating cluster-wide (`/api/v1/pods`) and the Deployments'
//! namespace, so the list SLI has samples (the components list only when they start). Each is
//! timed client-side to the last byte of the body, beside the apiserver's own histogram (which
//! stops at the response head).
//!
//! Invariants: one list at a time (a slow list delays the next, never piles up); a failed list
//! is recorded with its error, not retried.

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One list call.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Seconds since the ramp started, at the request.
    pub t: f64,
    /// `cluster` or `namespace`.
    pub scope: &'static str,
    /// Request to last body byte, seconds.
    pub seconds: f64,
    /// Body size.
    pub bytes: usize,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// The running lister; abort its task to stop it.
pub struct Lister {
    /// Calls so far.
    pub calls: Arc<Mutex<Vec<Listed>>>,
    /// The loop.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the loop (the first list one `every` after `t0`).
pub fn start(client: kube::Client, namespace: String, every: Duration, t0: Instant) -> Lister {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let out = calls.clone();
    let task = tokio::spawn(async move {
        for k in 0u32.. {
            tokio::time::sleep_until(t0 + every * (k + 1)).await;
            let (scope, path) = if k % 2 == 0 {
                ("cluster", "/api/v1/pods".to_string())
            } else {
                ("namespace", format!("/api/v1/namespaces/{namespace}/pods"))
            };
            let Ok(req) = http::Request::get(path).body(Vec::new()) else { continue };
            let t = t0.elapsed().as_secs_f64();
            let start = Instant::now();
            let r = client.request_text(req).await;
            let seconds = start.elapsed().as_secs_f64();
            let (bytes, error) = match r {
                Ok(body) => (body.len(), None),
                Err(e) => (0, Some(e.to_string())),
            };
            if let Ok(mut v) = out.lock() {
                v.push(Listed { t, scope, seconds, bytes, error });
            }
        }
    });
    Lister { calls, task }
}

/// The report's section: every call, and the slowest per scope.
pub fn report(calls: &[Listed]) -> Value {
    let worst = |scope: &str| {
        calls
            .iter()
            .filter(|c| c.scope == scope && c.error.is_none())
            .map(|c| c.seconds)
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))
    };
    json!({
        "method": "the benchmark's own unpaginated LIST of pods, alternating cluster-wide and namespace, timed to the last body byte",
        "slowest_cluster_s": worst("cluster").map(|s| (s * 1000.0).round() / 1000.0),
        "slowest_namespace_s": worst("namespace").map(|s| (s * 1000.0).round() / 1000.0),
        "calls": calls.iter().map(|c| json!({"t": (c.t * 10.0).round() / 10.0, "scope": c.scope, "seconds": (c.seconds * 1000.0).round() / 1000.0, "bytes": c.bytes, "error": c.error})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_successful_list_per_scope() {
        let c = |scope, seconds, error: Option<&str>| Listed { t: 0.0, scope, seconds, bytes: 10, error: error.map(String::from) };
        let calls = [c("cluster", 0.5, None), c("cluster", 2.0, Some("timeout")), c("cluster", 1.25, None), c("namespace", 0.1, None)];
        let r = report(&calls);
        assert_eq!(r["slowest_cluster_s"], 1.25);
        assert_eq!(r["slowest_namespace_s"], 0.1);
        assert_eq!(r["calls"].as_array().map(Vec::len), Some(4));
        assert_eq!(report(&[])["slowest_cluster_s"], Value::Null);
    }
}
