//! Request counts and latencies per RPC, recorded by one tower layer ([`RpcMetricsLayer`])
//! around every gRPC service of the client port and rendered as Prometheus text by `/metrics`.
//! A call counts as failed when its answer carries a non-zero `grpc-status` in its headers
//! (gRPC's trailers-only answer, which is how a server refuses a call).

use super::rpc::Rpc;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024];

#[derive(Default, Clone)]
struct RpcStats {
    ok: u64,
    failed: u64,
    buckets: [u64; BUCKETS.len()],
    sum_secs: f64,
    timed: u64,
}

/// Per-RPC statistics. A std mutex: each update is a few additions.
#[derive(Default)]
pub struct Metrics {
    rpcs: Mutex<BTreeMap<&'static str, RpcStats>>,
}

impl Metrics {
    /// Record one finished call of `rpc`; `took` is its latency, none for a stream.
    pub fn record(&self, rpc: Rpc, took: Option<Duration>, ok: bool) {
        let mut m = self.rpcs.lock().unwrap_or_else(|p| p.into_inner());
        let s = m.entry(rpc.name()).or_default();
        if ok {
            s.ok += 1;
        } else {
            s.failed += 1;
        }
        let Some(took) = took else { return };
        let secs = took.as_secs_f64();
        s.timed += 1;
        s.sum_secs += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// Prometheus text exposition, with the gauges passed in.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let m = self.rpcs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        out.push_str(
            "# HELP grpc_server_handled_total Total number of RPCs completed on the server.\n# TYPE grpc_server_handled_total counter\n",
        );
        for (rpc, s) in &m {
            let _ = writeln!(out, "grpc_server_handled_total{{grpc_method=\"{rpc}\",grpc_code=\"OK\"}} {}", s.ok);
            if s.failed > 0 {
                let _ = writeln!(out, "grpc_server_handled_total{{grpc_method=\"{rpc}\",grpc_code=\"Error\"}} {}", s.failed);
            }
        }
        out.push_str("# HELP keel_request_duration_seconds Latency of unary RPCs.\n# TYPE keel_request_duration_seconds histogram\n");
        for (rpc, s) in m.iter().filter(|(_, s)| s.timed > 0) {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "keel_request_duration_seconds_bucket{{grpc_method=\"{rpc}\",le=\"{b}\"}} {}", s.buckets[i]);
            }
            let _ = writeln!(out, "keel_request_duration_seconds_bucket{{grpc_method=\"{rpc}\",le=\"+Inf\"}} {}", s.timed);
            let _ = writeln!(out, "keel_request_duration_seconds_sum{{grpc_method=\"{rpc}\"}} {}", s.sum_secs);
            let _ = writeln!(out, "keel_request_duration_seconds_count{{grpc_method=\"{rpc}\"}} {}", s.timed);
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

/// The tower layer that times every call of a known RPC into [`Metrics`].
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService { inner, metrics: self.metrics.clone() }
    }
}

/// [`RpcMetricsLayer`] around one service.
#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let rpc = Rpc::from_path(req.uri().path());
        let answer = self.inner.call(req);
        let Some(rpc) = rpc else { return Box::pin(answer) };
        let (metrics, start) = (self.metrics.clone(), Instant::now());
        Box::pin(async move {
            let r = answer.await;
            if let Ok(resp) = &r {
                let ok = resp.headers().get("grpc-status").is_none_or(|s| s.as_bytes() == b"0");
                metrics.record(rpc, (!rpc.streams()).then(|| start.elapsed()), ok);
            }
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    fn answer(
        status: Option<&'static str>,
    ) -> impl Service<http::Request<()>, Response = http::Response<()>, Error = std::convert::Infallible, Future: Send + 'static> + Send
    {
        tower::service_fn(move |_req: http::Request<()>| async move {
            let mut resp = http::Response::new(());
            if let Some(s) = status {
                resp.headers_mut().insert("grpc-status", http::HeaderValue::from_static(s));
            }
            Ok(resp)
        })
    }

    #[tokio::test]
    async fn the_layer_counts_answers_by_grpc_status_and_times_only_unary_calls() {
        let metrics = Arc::new(Metrics::default());
        let layer = RpcMetricsLayer::new(metrics.clone());
        let mut ok = layer.layer(answer(None));
        let mut refused = layer.layer(answer(Some("9")));
        for path in ["/etcdserverpb.KV/Range", "/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch", "/health"] {
            let req = http::Request::builder().uri(path).body(()).unwrap();
            ok.ready().await.unwrap().call(req).await.unwrap();
        }
        let req = http::Request::builder().uri("/etcdserverpb.KV/Put").body(()).unwrap();
        refused.ready().await.unwrap().call(req).await.unwrap();
        let text = metrics.render(&[]);
        assert!(text.contains("grpc_server_handled_total{grpc_method=\"Range\",grpc_code=\"OK\"} 2"), "{text}");
        assert!(text.contains("grpc_server_handled_total{grpc_method=\"Put\",grpc_code=\"Error\"} 1"), "{text}");
        assert!(text.contains("grpc_server_handled_total{grpc_method=\"Watch\",grpc_code=\"OK\"} 1"), "{text}");
        assert!(text.contains("keel_request_duration_seconds_count{grpc_method=\"Range\"} 2"), "{text}");
        assert!(!text.contains("keel_request_duration_seconds_count{grpc_method=\"Watch\"}"), "a stream is counted, not timed");
        assert!(!text.contains("health"), "only RPCs are recorded");
    }
}
