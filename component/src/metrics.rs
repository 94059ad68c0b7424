//! Prometheus metrics: one prometheus-client registry per process, shared by every loop in it
//! and rendered in the text exposition format at `/metrics`.

use std::sync::{Arc, Mutex};

pub use prometheus_client::registry::Registry;

/// The process's registry, shared.
pub type Shared = Arc<Mutex<Registry>>;

/// A new, empty shared registry.
pub fn shared() -> Shared {
    Arc::new(Mutex::new(Registry::default()))
}

/// The registry in Prometheus' text format.
pub fn render(registry: &Shared) -> String {
    let mut out = String::new();
    let r = registry.lock().unwrap_or_else(|p| p.into_inner());
    // Writing into a String cannot fail; an encoder error would be a metric of ours that
    // cannot be written, which we report in the body rather than panic.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        out.push_str(&format!("# error encoding metrics: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn a_registered_counter_is_rendered_with_its_value() {
        let r = shared();
        let c: Counter = Counter::default();
        r.lock().expect("lock").register("demo_things", "Things done", c.clone());
        c.inc_by(3);
        let text = render(&r);
        assert!(text.contains("# TYPE demo_things counter"), "{text}");
        assert!(text.contains("demo_things_total 3"), "{text}");
    }
}
