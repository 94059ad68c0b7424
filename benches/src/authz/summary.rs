//! What the interleaved rounds add up to: per mode the median of each figure over its rounds
//! (the machine is shared, so one run can be slowed by someone else's build; the median of
//! A B B A … runs is the figure that survives that), and RBAC's cost against AlwaysAllow both
//! from the medians and as the median of the per-round ratios (each RBAC run against the
//! AlwaysAllow run of its round, just before or just after it).
//!
//! Invariants: a mode without runs has no median (`null`), never 0; the cost is
//! `1 − rbac / allow` (positive when RBAC is slower); the verdict is issue 19's target, cost ≤ 5 %.

use serde_json::{Value, json};

/// Issue 19's target: RBAC costs at most this share of AlwaysAllow's throughput.
pub const TARGET_COST: f64 = 0.05;

/// One measured run, as the summary needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// `AlwaysAllow` or `Node,RBAC`.
    pub mode: String,
    /// Round number (from 0); the two modes of a round ran back to back.
    pub round: usize,
    /// Requests per second (answered 2xx).
    pub rps: f64,
    /// Client-side p50 over all requests, ms.
    pub p50_ms: f64,
    /// Client-side p99 over all requests, ms.
    pub p99_ms: f64,
    /// The apiserver's CPU per request, µs.
    pub cpu_us_per_request: f64,
}

/// The median (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn of_mode<'a>(runs: &'a [Measured], mode: &'a str) -> impl Iterator<Item = &'a Measured> + 'a {
    runs.iter().filter(move |r| r.mode == mode)
}

fn medians(runs: &[Measured], mode: &str) -> Value {
    let pick = |f: fn(&Measured) -> f64| median(&of_mode(runs, mode).map(f).collect::<Vec<_>>());
    json!({
        "runs": of_mode(runs, mode).count(),
        "rps": pick(|r| r.rps),
        "p50_ms": pick(|r| r.p50_ms),
        "p99_ms": pick(|r| r.p99_ms),
        "cpu_us_per_request": pick(|r| r.cpu_us_per_request),
    })
}

/// `1 − b / a`, or `None` when `a` is not positive.
pub fn cost(a: f64, b: f64) -> Option<f64> {
    (a > 0.0).then(|| 1.0 - b / a)
}

/// The summary: medians per mode, the throughput cost from the medians, the median of the
/// paired per-round costs, the CPU-per-request increase, and the verdict.
pub fn summarize(runs: &[Measured], allow: &str, rbac: &str) -> Value {
    let (a, b) = (medians(runs, allow), medians(runs, rbac));
    let f = |v: &Value, k: &str| v[k].as_f64();
    let from_medians = f(&a, "rps").zip(f(&b, "rps")).and_then(|(x, y)| cost(x, y));
    let paired: Vec<f64> =
        of_mode(runs, rbac).filter_map(|r| of_mode(runs, allow).find(|x| x.round == r.round).and_then(|x| cost(x.rps, r.rps))).collect();
    let cpu = f(&a, "cpu_us_per_request").zip(f(&b, "cpu_us_per_request")).map(|(x, y)| y - x);
    json!({
        allow: a,
        rbac: b,
        "throughput_cost": from_medians,
        "throughput_cost_paired_median": median(&paired),
        "paired_costs": paired,
        "apiserver_cpu_us_per_request_added": cpu,
        "target": TARGET_COST,
        "met": from_medians.map(|c| c <= TARGET_COST),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: &str, round: usize, rps: f64, cpu: f64) -> Measured {
        Measured { mode: mode.into(), round, rps, p50_ms: 1.0, p99_ms: 5.0, cpu_us_per_request: cpu }
    }

    #[test]
    fn medians_of_odd_even_and_empty() {
        let table: [(&[f64], Option<f64>); 5] = [
            (&[3.0, 1.0, 2.0], Some(2.0)),
            (&[4.0, 1.0, 2.0, 3.0], Some(2.5)),
            (&[], None),
            (&[7.0], Some(7.0)),
            (&[f64::NAN, 1.0], Some(1.0)),
        ];
        for (v, want) in table {
            assert_eq!(median(v), want, "{v:?}");
        }
    }

    #[test]
    fn cost_is_the_share_of_throughput_lost() {
        assert_eq!(cost(1000.0, 950.0), Some(0.050000000000000044));
        assert_eq!(cost(1000.0, 1100.0).map(|c| (c * 100.0).round()), Some(-10.0));
        assert_eq!(cost(0.0, 5.0), None);
    }

    #[test]
    fn a_slow_round_does_not_move_the_medians_and_pairs_are_by_round() {
        let runs = vec![
            run("AlwaysAllow", 0, 1000.0, 400.0),
            run("Node,RBAC", 0, 980.0, 410.0),
            // Round 1 ran while someone built: both slow, the pair still says 2 %.
            run("AlwaysAllow", 1, 500.0, 700.0),
            run("Node,RBAC", 1, 490.0, 720.0),
            run("AlwaysAllow", 2, 1010.0, 390.0),
            run("Node,RBAC", 2, 940.0, 420.0),
        ];
        let s = summarize(&runs, "AlwaysAllow", "Node,RBAC");
        assert_eq!(s["AlwaysAllow"]["rps"], 1000.0);
        assert_eq!(s["Node,RBAC"]["rps"], 940.0);
        assert_eq!(s["Node,RBAC"]["runs"], 3);
        let c = s["throughput_cost"].as_f64().unwrap_or(f64::NAN);
        assert!((c - 0.06).abs() < 1e-9, "{s:#}");
        assert_eq!(s["met"], false);
        let paired = s["throughput_cost_paired_median"].as_f64().unwrap_or(f64::NAN);
        assert!((paired - 0.02).abs() < 1e-9, "{s:#}");
        // CPU per request: medians 400 and 420 µs.
        assert_eq!(s["apiserver_cpu_us_per_request_added"], 20.0);
    }

    #[test]
    fn no_runs_is_null_not_zero() {
        let s = summarize(&[run("AlwaysAllow", 0, 1000.0, 1.0)], "AlwaysAllow", "Node,RBAC");
        assert!(s["Node,RBAC"]["rps"].is_null());
        assert!(s["throughput_cost"].is_null());
        assert!(s["met"].is_null());
    }
}
