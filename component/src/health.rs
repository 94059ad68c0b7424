//! Health and readiness, as component-base's healthz: named checks that each report pass or
//! fail, and a readiness flag (a component is ready once its informers have synced, say).
//! `/healthz` and `/livez` pass while every check passes; `/readyz` also needs the flag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared health state; clones see the same checks.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    ready: bool,
    // Ordered, so the verbose report lists checks in a stable order.
    checks: BTreeMap<String, bool>,
}

/// A report: whether it passed, and the body kube's healthz would write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Whether every check passed.
    pub ok: bool,
    /// `ok`, or `[+]name ok` / `[-]name failed` lines then `healthz check failed`.
    pub body: String,
}

impl Health {
    /// A new state: not ready, no checks.
    pub fn new() -> Health {
        Health::default()
    }

    /// Marks the component ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.lock().ready = ready;
    }

    /// Records the named check's result.
    pub fn set_healthy(&self, name: &str, healthy: bool) {
        self.lock().checks.insert(name.to_string(), healthy);
    }

    /// `/healthz` and `/livez`: every check.
    pub fn live(&self, verbose: bool) -> Report {
        let s = self.lock();
        report(s.checks.iter().map(|(k, v)| (k.as_str(), *v)), verbose)
    }

    /// `/readyz`: every check, and the ready flag (as the check `ready`).
    pub fn ready(&self, verbose: bool) -> Report {
        let s = self.lock();
        report(s.checks.iter().map(|(k, v)| (k.as_str(), *v)).chain(std::iter::once(("ready", s.ready))), verbose)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain booleans behind: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn report<'a>(checks: impl Iterator<Item = (&'a str, bool)>, verbose: bool) -> Report {
    let checks: Vec<(&str, bool)> = checks.collect();
    let ok = checks.iter().all(|(_, pass)| *pass);
    if ok && !verbose {
        return Report { ok, body: "ok".into() };
    }
    let mut body = String::from("[+]ping ok\n");
    for (name, pass) in &checks {
        body.push_str(&if *pass { format!("[+]{name} ok\n") } else { format!("[-]{name} failed: reason withheld\n") });
    }
    body.push_str(if ok { "healthz check passed\n" } else { "healthz check failed\n" });
    Report { ok, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_the_flag_and_every_check_liveness_only_the_checks() {
        let h = Health::new();
        assert_eq!(h.live(false), Report { ok: true, body: "ok".into() });
        assert!(!h.ready(false).ok);
        h.set_ready(true);
        assert!(h.ready(false).ok);
        h.set_healthy("informers", false);
        let r = h.live(false);
        assert!(!r.ok);
        assert_eq!(r.body, "[+]ping ok\n[-]informers failed: reason withheld\nhealthz check failed\n");
        assert!(!h.ready(false).ok);
        h.set_healthy("informers", true);
        assert_eq!(h.ready(true).body, "[+]ping ok\n[+]informers ok\n[+]ready ok\nhealthz check passed\n");
    }
}
