//! SLI tables and verdicts: one row per (verb, resource, subresource, scope) of an interval of
//! the apiserver's histogram, and, per SLO class, the worst row's p99 against issue 24's
//! targets (SIG Scalability's API call latency SLI is judged per such row, not on the merge).
//!
//! Invariants: a row's quantiles come from buckets (kube's boundaries 0.005, 0.025, 0.05, 0.1,
//! 0.2, 0.4, …), so a p99 between 0.2 and 0.4 s is interpolated and the 250 ms verdict is only
//! as sharp as that bucket; a class with no requests has no verdict (`null`), never a pass.

use crate::promtext::{Class, Scrape};
use serde_json::{Value, json};

/// p99 targets in seconds (issue 24): mutating and read 250 ms, lists 5 s.
pub fn target(class: Class) -> Option<f64> {
    match class {
        Class::Mutating | Class::Read => Some(0.25),
        Class::List => Some(5.0),
        Class::Other => None,
    }
}

/// Pod startup p99 target, seconds.
pub const STARTUP_P99: f64 = 2.0;

/// The whole control plane's RSS target, MiB.
pub const RSS_MIB: f64 = 2048.0;

fn ms(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |s| json!((s * 1e4).round() / 10.0))
}

/// One row per series, busiest first.
pub fn rows(scrape: &Scrape) -> Vec<Value> {
    let mut rows: Vec<(f64, Value)> = scrape
        .iter()
        .map(|(k, h)| {
            let row = json!({
                "call": k.name(), "class": k.class().name(), "count": h.count,
                "p50_ms": ms(h.quantile(0.5)), "p90_ms": ms(h.quantile(0.9)), "p99_ms": ms(h.quantile(0.99)),
                "mean_ms": ms((h.count > 0.0).then(|| h.sum / h.count)),
            });
            (h.count, row)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Per class: the worst row's p99, which call it is, the target and whether it is met.
pub fn verdicts(scrape: &Scrape) -> Value {
    let mut out = serde_json::Map::new();
    for class in [Class::Mutating, Class::Read, Class::List] {
        let worst = scrape
            .iter()
            .filter(|(k, _)| k.class() == class && !k.resource.is_empty())
            .filter_map(|(k, h)| Some((k.name(), h.quantile(0.99)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let target = target(class);
        out.insert(
            class.name().into(),
            json!({
                "worst_call": worst.as_ref().map(|w| w.0.clone()),
                "worst_p99_ms": ms(worst.as_ref().map(|w| w.1)),
                "target_ms": ms(target),
                "met": worst.zip(target).map(|(w, t)| w.1 <= t),
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promtext::{Hist, Key};

    fn key(verb: &str, resource: &str) -> Key {
        Key { verb: verb.into(), resource: resource.into(), subresource: String::new(), scope: "resource".into() }
    }

    fn hist(fast: f64, slow: f64) -> Hist {
        // `fast` requests under 5 ms, `slow` between 0.2 and 0.4 s.
        let b = vec![(0.005, fast), (0.2, fast), (0.4, fast + slow), (f64::INFINITY, fast + slow)];
        Hist { buckets: b, sum: slow * 0.3, count: fast + slow }
    }

    #[test]
    fn the_worst_row_decides_and_an_idle_class_has_no_verdict() {
        let mut s = Scrape::new();
        s.insert(key("POST", "pods"), hist(1000.0, 0.0));
        s.insert(key("PATCH", "pods"), hist(90.0, 10.0));
        s.insert(key("GET", "pods"), hist(100.0, 0.0));
        let v = verdicts(&s);
        assert_eq!(v["mutating"]["worst_call"], "PATCH pods resource");
        assert_eq!(v["mutating"]["met"], false, "{v}");
        assert_eq!(v["read"]["met"], true);
        assert_eq!(v["list"]["met"], Value::Null);
        let r = rows(&s);
        assert_eq!(r[0]["call"], "POST pods resource", "busiest first");
        assert_eq!(r.len(), 3);
    }
}
