//! Request counts and latencies per RPC, rendered as Prometheus text by `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
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
    /// Record one finished unary RPC.
    pub fn observe(&self, rpc: &'static str, start: Instant, ok: bool) {
        let secs = start.elapsed().as_secs_f64();
        let mut m = self.rpcs.lock().unwrap_or_else(|p| p.into_inner());
        let s = m.entry(rpc).or_default();
        if ok {
            s.ok += 1;
        } else {
            s.failed += 1;
        }
        s.timed += 1;
        s.sum_secs += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// Count one RPC that is not timed (streams, cheap reads).
    pub fn count(&self, rpc: &'static str) {
        let mut m = self.rpcs.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(rpc).or_default().ok += 1;
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
