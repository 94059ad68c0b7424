//! Max-in-flight limits, kube-apiserver's filter before API Priority and Fairness
//! (`--max-requests-inflight`, 400, and `--max-mutating-requests-inflight`, 200): past the limit
//! a request is answered 429 `Too many requests, please try again later.` with
//! `Retry-After: 1` (kube's words and header, as plain text), so a flood of work queues at the
//! client instead of in front of everything else.
//!
//! Invariants:
//! - Long-running requests are not counted (kube's `BasicLongRunningRequestCheck`): watches,
//!   `proxy`, and the `attach`, `exec`, `log`, `portforward` and `proxy` subresources.
//! - Requests of `system:masters` are not counted (kube skips privileged users too).
//! - A reserved lane the limits never block: Lease requests (`coordination.k8s.io` `leases`) of
//!   `system:kube-scheduler`, `system:kube-controller-manager` and `system:nodes`, so leader
//!   election and node heartbeats survive a slow LIST or a burst of writes (what kube's
//!   `system-leader-election` and `system-node-high` priority levels are for). Without
//!   authentication nobody can be told apart, so every Lease request takes the lane.
//! - A slot is held while the handler runs, and given back when it returns or is dropped.
//! - `apiserver_current_inflight_requests{request_kind}` (`readOnly`, `mutating`) is the number
//!   held now; `apiserver_dropped_requests_total{request_kind}` counts the 429s.

use crate::http::access::Requester;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_access::attributes::Attributes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the limits do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Not counted: long-running, privileged, or in the reserved lane.
    Exempt,
    /// Counted against `--max-requests-inflight`.
    ReadOnly,
    /// Counted against `--max-mutating-requests-inflight`.
    Mutating,
}

/// Subresources kube counts as long-running.
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "log", "portforward", "proxy"];
/// Identities whose Lease requests take the reserved lane.
const LANE_USERS: &[&str] = &["system:kube-scheduler", "system:kube-controller-manager"];

/// The class of a request with kube's attributes `a` (its `user` the acting one; `authenticated`:
/// whether users can be told apart at all).
pub fn classify(a: &Attributes, authenticated: bool) -> Class {
    if a.verb == "watch" || a.verb == "proxy" || LONG_RUNNING_SUBRESOURCES.contains(&a.subresource.as_str()) {
        return Class::Exempt;
    }
    if authenticated && a.user.in_group("system:masters") {
        return Class::Exempt;
    }
    let lease = a.resource_request && a.api_group == "coordination.k8s.io" && a.resource == "leases";
    let lane_user = !authenticated || LANE_USERS.contains(&a.user.name.as_str()) || a.user.in_group("system:nodes");
    if lease && lane_user {
        return Class::Exempt;
    }
    match a.verb.as_str() {
        "get" | "list" | "watch" => Class::ReadOnly,
        _ if !a.resource_request => Class::ReadOnly,
        _ => Class::Mutating,
    }
}

/// The labels of the two families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    request_kind: String,
}

/// One limit: how many are held now, at most `max` (0: no limit).
struct Slots {
    held: AtomicUsize,
    max: usize,
    label: KindLabel,
}

/// The limits and their metrics.
pub struct Inflight {
    read: Slots,
    mutating: Slots,
    authenticated: bool,
    current: Family<KindLabel, Gauge>,
    dropped: Family<KindLabel, Counter>,
}

/// A held slot, given back on drop.
struct Held<'a> {
    slots: &'a Slots,
    current: &'a Family<KindLabel, Gauge>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.slots.held.fetch_sub(1, Ordering::AcqRel);
        self.current.get_or_create(&self.slots.label).dec();
    }
}

impl Inflight {
    /// `max_read` and `max_mutating` (0: unlimited); `authenticated`: whether the access front
    /// runs (see the module doc for the lane).
    pub fn new(max_read: usize, max_mutating: usize, authenticated: bool) -> Arc<Inflight> {
        let slots = |max, kind: &str| Slots { held: AtomicUsize::new(0), max, label: KindLabel { request_kind: kind.into() } };
        let current = Family::<KindLabel, Gauge>::default();
        for kind in ["readOnly", "mutating"] {
            let _shown_at_zero = current.get_or_create(&KindLabel { request_kind: kind.into() });
        }
        Arc::new(Inflight {
            read: slots(max_read, "readOnly"),
            mutating: slots(max_mutating, "mutating"),
            authenticated,
            current,
            dropped: Family::default(),
        })
    }

    /// Registers the two families.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            self.current.clone(),
        );
        registry.register("apiserver_dropped_requests", "Number of requests dropped with 'Try again later' response", self.dropped.clone());
    }

    /// A slot of `slots`, or None when all are held.
    fn take<'a>(&'a self, slots: &'a Slots) -> Option<Held<'a>> {
        let taken = slots.held.fetch_add(1, Ordering::AcqRel);
        if slots.max > 0 && taken >= slots.max {
            slots.held.fetch_sub(1, Ordering::AcqRel);
            self.dropped.get_or_create(&slots.label).inc();
            return None;
        }
        self.current.get_or_create(&slots.label).inc();
        Some(Held { slots, current: &self.current })
    }
}

/// kube's `tooManyRequests`: 429, `Retry-After: 1`, its words as plain text.
fn too_many() -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too many requests, please try again later.\n").into_response();
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// The middleware (inside the access front, which leaves the acting user's attributes).
pub async fn limit(State(limits): State<Arc<Inflight>>, req: Request, next: Next) -> Response {
    let class = match req.extensions().get::<Requester>() {
        Some(r) => classify(&r.0, limits.authenticated),
        None => {
            let a = Attributes::from_request(req.method().as_str(), req.uri().path(), req.uri().query().unwrap_or_default());
            classify(&a, limits.authenticated)
        }
    };
    let slots = match class {
        Class::Exempt => return next.run(req).await,
        Class::ReadOnly => &limits.read,
        Class::Mutating => &limits.mutating,
    };
    let Some(held) = limits.take(slots) else { return too_many() };
    let response = next.run(req).await;
    drop(held);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_access::user::UserInfo;

    fn attrs(user: UserInfo, method: &str, path: &str, query: &str) -> Attributes {
        let mut a = Attributes::from_request(method, path, query);
        a.user = user;
        a
    }

    #[test]
    fn requests_are_classed_as_kubes_max_in_flight_filter_classes_them() {
        let jane = UserInfo::new("jane", &["system:authenticated"]);
        let admin = UserInfo::new("admin", &["system:masters", "system:authenticated"]);
        let sched = UserInfo::new("system:kube-scheduler", &["system:authenticated"]);
        let node = UserInfo::new("system:node:n1", &["system:nodes", "system:authenticated"]);
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler";
        let cases: &[(&UserInfo, &str, &str, &str, bool, Class)] = &[
            (&jane, "GET", "/api/v1/pods", "", true, Class::ReadOnly),
            (&jane, "GET", "/api/v1/pods", "watch=true", true, Class::Exempt),
            (&jane, "GET", "/api/v1/watch/pods", "", true, Class::Exempt),
            (&jane, "POST", "/api/v1/namespaces/d/pods", "", true, Class::Mutating),
            (&jane, "DELETE", "/api/v1/namespaces/d/pods/p", "", true, Class::Mutating),
            (&jane, "GET", "/api/v1/namespaces/d/pods/p/log", "follow=true", true, Class::Exempt),
            (&jane, "POST", "/api/v1/namespaces/d/pods/p/exec", "command=ls", true, Class::Exempt),
            (&jane, "GET", "/api/v1/nodes/n1/proxy/stats/summary", "", true, Class::Exempt),
            (&jane, "GET", "/version", "", true, Class::ReadOnly),
            (&jane, "PUT", lease, "", true, Class::Mutating),
            (&admin, "POST", "/api/v1/namespaces/d/pods", "", true, Class::Exempt),
            (&sched, "PUT", lease, "", true, Class::Exempt),
            (&sched, "POST", "/api/v1/namespaces/d/pods/p/binding", "", true, Class::Mutating),
            (&node, "PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", "", true, Class::Exempt),
            (&jane, "PUT", lease, "", false, Class::Exempt),
            (&jane, "POST", "/api/v1/namespaces/d/pods", "", false, Class::Mutating),
        ];
        for (user, method, path, query, authenticated, want) in cases {
            assert_eq!(
                classify(&attrs((*user).clone(), method, path, query), *authenticated),
                *want,
                "{} {method} {path}?{query}",
                user.name
            );
        }
    }

    #[test]
    fn slots_are_bounded_given_back_and_counted() {
        let l = Inflight::new(2, 0, true);
        let a = l.take(&l.read);
        let b = l.take(&l.read);
        assert!(a.is_some() && b.is_some());
        assert!(l.take(&l.read).is_none(), "the third read is refused");
        drop(a);
        assert!(l.take(&l.read).is_some(), "a slot given back is usable");
        let label = KindLabel { request_kind: "readOnly".into() };
        assert_eq!(l.dropped.get_or_create(&label).get(), 1);
        assert_eq!(l.current.get_or_create(&label).get(), 1, "b is still held");
        let held: Vec<_> = (0..100).map(|_| l.take(&l.mutating)).collect();
        assert!(held.iter().all(Option::is_some), "0 is no limit");
    }
}
