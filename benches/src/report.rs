//! Results of one run: a table for people, one JSON line for scripts.

use hdrhistogram::Histogram;
use std::time::Duration;

/// What one run measured.
pub struct RunResult {
    /// Workload name.
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// gRPC connections.
    pub conns: usize,
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency_us: Histogram<u64>,
    /// CPU seconds the generator itself used (user + system).
    pub generator_cpu_secs: f64,
}

impl RunResult {
    /// Operations per second.
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// One line of JSON.
    pub fn json(&self) -> String {
        serde_json::json!({
            "workload": self.workload,
            "clients": self.clients,
            "conns": self.conns,
            "ops": self.ops,
            "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(),
            "throughput": self.throughput(),
            "p50_ms": self.ms(0.5),
            "p90_ms": self.ms(0.9),
            "p99_ms": self.ms(0.99),
            "max_ms": self.latency_us.max() as f64 / 1000.0,
            "generator_cpu_secs": self.generator_cpu_secs,
            "generator_cpu_share": self.generator_cpu_secs / self.elapsed.as_secs_f64().max(1e-9),
        })
        .to_string()
    }

    /// A small table.
    pub fn table(&self) -> String {
        format!(
            "workload {:<20} clients {:>4} conns {:>3}\n  ops {:>9}  errors {:>6}  {:>10.0} ops/s\n  p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms\n  generator CPU {:.2} s ({:.0}% of one core)",
            self.workload,
            self.clients,
            self.conns,
            self.ops,
            self.errors,
            self.throughput(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.latency_us.max() as f64 / 1000.0,
            self.generator_cpu_secs,
            100.0 * self.generator_cpu_secs / self.elapsed.as_secs_f64().max(1e-9)
        )
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
pub fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}
