//! Who acted, when, under which lease term: every write an apiserver receives from a
//! leader-elected component (scheduler, controller-manager) is recorded at the simulated
//! instant the apiserver answers it, with the sender's own view of the Lease at that instant
//! (its `Leadership`: holder, `leaseTransitions`, its published leading state). [`one_actor_per_term`]
//! judges the record: at most one scheduler and one controller-manager act at any instant.
//!
//! Invariants:
//! - An act is a write (POST, PUT, PATCH, DELETE) answered 2xx, other than to its own Lease or
//!   an Event (those are bookkeeping, not acts on the cluster).
//! - Terms are `leaseTransitions`: each takeover raises it. So among the acts of one kind, in
//!   the order the apiservers answered them, a term must never go back, and one term has one
//!   actor. An act of a stale term after a newer term acted, or two actors in one term, means
//!   two instances acted at once.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use keel_leader::Leadership;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Which component acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A scheduler replica.
    Scheduler,
    /// A controller-manager replica.
    ControllerManager,
}

impl Kind {
    fn of(actor: &str) -> Option<Kind> {
        if actor.starts_with("scheduler-") {
            Some(Kind::Scheduler)
        } else if actor.starts_with("controller-manager-") {
            Some(Kind::ControllerManager)
        } else {
            None
        }
    }
}

/// One act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Act {
    /// Simulated milliseconds when the apiserver answered it.
    pub at_ms: u128,
    /// Which component.
    pub kind: Kind,
    /// `scheduler-1#2`: replica and incarnation.
    pub actor: String,
    /// The Lease's `leaseTransitions` as the actor last saw it.
    pub term: i32,
    /// The holder the actor last saw.
    pub holder: Option<String>,
    /// Whether the actor's published election state said it leads at that instant.
    pub leading: bool,
    /// `POST /api/v1/namespaces/d/pods/web-1/binding`.
    pub request: String,
    /// The apiserver that answered.
    pub apiserver: usize,
}

/// The acts recorded so far (the apiservers append; the harness reads at the end).
pub type Acts = Arc<Mutex<Vec<Act>>>;

/// Each leader-elected actor's election handle, by actor name.
pub type Actors = Arc<Mutex<BTreeMap<String, Leadership>>>;

/// Register `actor`'s election handle.
pub fn register(actors: &Actors, actor: &str, leadership: Leadership) {
    actors.lock().unwrap_or_else(|p| p.into_inner()).insert(actor.to_string(), leadership);
}

#[derive(Clone)]
struct Recording {
    apiserver: usize,
    acts: Acts,
    actors: Actors,
}

/// `router` with every act recorded (see the module doc).
pub fn layer(router: axum::Router, apiserver: usize, acts: Acts, actors: Actors) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(Recording { apiserver, acts, actors }, record))
}

fn is_act(method: &http::Method, path: &str) -> bool {
    let write = matches!(*method, http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE);
    write && !path.contains("/leases/") && !path.ends_with("/leases") && !path.contains("/events")
}

async fn record(State(r): State<Recording>, req: Request, next: Next) -> Response {
    let actor = req.headers().get(super::net::ACTOR_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let actor_name = actor.clone().unwrap_or_default();
    let act = actor.and_then(|a| Kind::of(&a).map(|k| (a, k))).filter(|_| is_act(req.method(), req.uri().path()));
    let request = format!("{} {}", req.method(), req.uri());
    let response = next.run(req).await;
    if std::env::var_os("KEEL_SIM_TRACE").is_some() {
        let at = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        eprintln!("{at} api{} {request} {} {:?}", r.apiserver + 1, response.status().as_u16(), actor_name);
    }
    if let Some((actor, kind)) = act
        && response.status().is_success()
    {
        let view = r.actors.lock().unwrap_or_else(|p| p.into_inner()).get(&actor).cloned();
        // `leading()`, not `is_leader()`: the latter compares the sender's tokio instants with this
        // host's, and every turmoil host's runtime has a clock of its own.
        let (term, holder, leading) = view.map_or((-1, None, false), |l| (l.transitions(), l.holder(), l.leading()));
        let at_ms = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        r.acts.lock().unwrap_or_else(|p| p.into_inner()).push(Act {
            at_ms,
            kind,
            actor,
            term,
            holder,
            leading,
            request,
            apiserver: r.apiserver,
        });
    }
    response
}

/// The violations of "at most one actor of each kind acts at any instant" in `acts` (in the
/// order the apiservers answered them).
pub fn one_actor_per_term(acts: &[Act]) -> Vec<String> {
    let mut out = Vec::new();
    // Per kind: the newest term that acted, and for each term the actor that first acted in it.
    let mut newest: BTreeMap<Kind, (i32, u128, String)> = BTreeMap::new();
    let mut owner: BTreeMap<(Kind, i32), (String, u128)> = BTreeMap::new();
    for a in acts {
        if let Some((term, at, who)) = newest.get(&a.kind)
            && a.term < *term
        {
            out.push(format!(
                "{:?} {} acted at {} ms in term {} after {} acted in the newer term {term} at {at} ms: {}",
                a.kind, a.actor, a.at_ms, a.term, who, a.request
            ));
        }
        match owner.get(&(a.kind, a.term)) {
            Some((first, at)) if *first != a.actor => out.push(format!(
                "{:?} {} acted at {} ms in term {} which {first} acted in (from {at} ms): {}",
                a.kind, a.actor, a.at_ms, a.term, a.request
            )),
            Some(_) => {}
            None => {
                owner.insert((a.kind, a.term), (a.actor.clone(), a.at_ms));
            }
        }
        if newest.get(&a.kind).is_none_or(|(t, _, _)| a.term > *t) {
            newest.insert(a.kind, (a.term, a.at_ms, a.actor.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(at_ms: u128, kind: Kind, actor: &str, term: i32) -> Act {
        Act { at_ms, kind, actor: actor.into(), term, holder: None, leading: true, request: "POST /x".into(), apiserver: 0 }
    }

    #[test]
    fn terms_never_go_back_and_have_one_actor() {
        use Kind::*;
        let cases: Vec<(&str, Vec<Act>, usize)> = vec![
            ("one leader", vec![act(1, Scheduler, "s1", 0), act(2, Scheduler, "s1", 0)], 0),
            ("a clean takeover", vec![act(1, Scheduler, "s1", 0), act(9, Scheduler, "s2", 1), act(10, Scheduler, "s2", 1)], 0),
            (
                "the old leader acts after the takeover",
                vec![act(1, Scheduler, "s1", 0), act(9, Scheduler, "s2", 1), act(10, Scheduler, "s1", 0)],
                1,
            ),
            ("two actors in one term", vec![act(1, Scheduler, "s1", 3), act(2, Scheduler, "s2", 3)], 1),
            ("kinds are judged apart", vec![act(1, Scheduler, "s1", 5), act(2, ControllerManager, "c1", 0)], 0),
            (
                "a restarted leader is a new actor in a new term",
                vec![act(1, ControllerManager, "c1#1", 0), act(5, ControllerManager, "c1#2", 1)],
                0,
            ),
        ];
        for (name, acts, violations) in cases {
            assert_eq!(one_actor_per_term(&acts).len(), violations, "{name}: {:?}", one_actor_per_term(&acts));
        }
    }

    #[test]
    fn leases_and_events_are_not_acts() {
        assert!(is_act(&http::Method::POST, "/api/v1/namespaces/d/pods/p/binding"));
        assert!(is_act(&http::Method::DELETE, "/api/v1/namespaces/d/pods/p"));
        assert!(!is_act(&http::Method::GET, "/api/v1/pods"));
        assert!(!is_act(&http::Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"));
        assert!(!is_act(&http::Method::POST, "/apis/events.k8s.io/v1/namespaces/d/events"));
        assert!(!is_act(&http::Method::POST, "/api/v1/namespaces/d/events"));
    }
}
