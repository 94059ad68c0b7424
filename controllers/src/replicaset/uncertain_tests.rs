//! A pod create answered with a 5xx may still have been written (the finding of faults3-1: a
//! 503 "request timed out" for a create that committed, and a replacement made 4 s later, one
//! pod too many). These drive the controller's `sync` against a fake apiserver that commits
//! the first create and answers 503.

use super::*;
use crate::clock::FakeClock;
use crate::metrics::Metrics;
use crate::shared::{Served, Shared};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use kube::client::Body;
use std::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const RS: &str = r#"{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"web","namespace":"d","uid":"rs-uid","resourceVersion":"3","generation":1},
  "spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;
const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-x1","namespace":"d","uid":"pod-uid","resourceVersion":"4","labels":{"app":"web"},
  "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web","uid":"rs-uid","controller":true}]},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;

/// What the fake saw and how it answers a fresh list of pods.
#[derive(Default)]
struct Fake {
    creates: usize,
    fresh_lists: usize,
    /// The first create is written (and then answered 503).
    committed: bool,
    /// Fresh lists fail (the store still unreachable).
    lists_fail: bool,
    /// Creates are answered 201 (the cache still never shows them).
    creates_succeed: bool,
    /// Run while a fresh list is served (the informer handling the written pod's Added event
    /// while the controller's list is in flight).
    during_list: Option<Box<dyn FnMut() + Send>>,
}

fn reply(code: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn unavailable() -> Response<Full<Bytes>> {
    reply(503, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out","reason":"ServiceUnavailable","code":503}"#.into())
}

/// The fake apiserver: informers' lists hold the ReplicaSet and no pod (their watches stay
/// open and quiet, so the cache never sees the written pod); a pod create is written and
/// answered 503; a namespaced pod list (the controller's fresh count) holds what was written.
fn apiserver(fake: Arc<Mutex<Fake>>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<Body>| {
        let fake = fake.clone();
        async move {
            let (path, query) = (req.uri().path().to_string(), req.uri().query().unwrap_or_default().to_string());
            let method = req.method().clone();
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut f = fake.lock().unwrap_or_else(|p| p.into_inner());
            let resp = if query.contains("watch=true") {
                let pending = futures::stream::unfold((), |()| async {
                    futures::future::pending::<()>().await;
                    None::<(Result<http_body::Frame<Bytes>, BoxError>, ())>
                });
                return Ok::<_, BoxError>(Response::new(http_body_util::Either::Right(http_body_util::StreamBody::new(Box::pin(pending)))));
            } else if method == http::Method::POST && path == "/api/v1/namespaces/d/pods" {
                f.creates += 1;
                f.committed = true;
                if f.creates_succeed { reply(201, String::from_utf8_lossy(&body).into_owned()) } else { unavailable() }
            } else if method == http::Method::PUT {
                reply(200, String::from_utf8_lossy(&body).into_owned())
            } else if path == "/api/v1/namespaces/d/pods" {
                f.fresh_lists += 1;
                if let Some(during) = f.during_list.as_mut() {
                    during();
                }
                match (f.lists_fail, f.committed) {
                    (true, _) => unavailable(),
                    (false, true) => reply(
                        200,
                        format!(r#"{{"apiVersion":"v1","kind":"PodList","metadata":{{"resourceVersion":"5"}},"items":[{POD}]}}"#),
                    ),
                    (false, false) => {
                        reply(200, r#"{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"5"},"items":[]}"#.into())
                    }
                }
            } else if path == "/apis/apps/v1/replicasets" {
                reply(
                    200,
                    format!(r#"{{"apiVersion":"apps/v1","kind":"ReplicaSetList","metadata":{{"resourceVersion":"3"}},"items":[{RS}]}}"#),
                )
            } else if method == http::Method::GET {
                reply(200, r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"3"},"items":[]}"#.into())
            } else {
                reply(201, String::from_utf8_lossy(&body).into_owned())
            };
            Ok(resp.map(http_body_util::Either::Left))
        }
    });
    kube::Client::new(service, "d")
}

/// A synced ReplicaSet controller over the fake.
async fn controller(fake: Arc<Mutex<Fake>>, tasks: &mut tokio::task::JoinSet<()>) -> Arc<ReplicaSetController> {
    controller_with(fake, tasks, Config::default()).await
}

async fn controller_with(fake: Arc<Mutex<Fake>>, tasks: &mut tokio::task::JoinSet<()>, cfg: Config) -> Arc<ReplicaSetController> {
    let client = apiserver(fake);
    let shared = Arc::new(Shared::new(&client, Served::default()));
    let clock: crate::clock::SharedClock = Arc::new(FakeClock::at(jiff::Timestamp::UNIX_EPOCH));
    let (recorder, _events) = Recorder::new(client.clone(), clock.clone());
    let ctx = Context { client, shared: shared.clone(), clock, recorder, metrics: Metrics::new() };
    let c = ReplicaSetController::new(&ctx, cfg);
    shared.start(tasks);
    // Bounded only so a regression fails instead of hanging the suite.
    for _ in 0..2000 {
        if c.rss.is_synced() && c.pods.is_synced() && c.rss.get(&ObjectKey::new("d", "web")).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c
}

#[tokio::test]
async fn a_create_answered_503_is_counted_from_the_store_before_it_is_replaced() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let c = controller(fake.clone(), &mut tasks).await;
    let key = ObjectKey::new("d", "web");
    assert!(c.sync(&key).await.is_err(), "the 503 is the sync's error (retried with backoff)");
    let _ = c.sync(&key).await;
    let _ = c.sync(&key).await;
    let f = fake.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(f.creates, 1, "the pod the 503 hid was found by a fresh list, not created again");
    assert_eq!(f.fresh_lists, 2, "while the cache lacks the pod the store holds, each sync counts from the store");
}

/// The written pod's Added event is handled while the fresh list is in flight (seed 634 of
/// keel-sim's controlplane scenario: the pod watch resumed 10 ms before the list was answered).
/// An expectation raised after the list would never be met, and the ReplicaSet would ignore
/// every scale until it expired (5 min).
#[tokio::test]
async fn a_pod_observed_while_its_fresh_list_is_in_flight_leaves_no_unmet_expectation() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let c = controller(fake.clone(), &mut tasks).await;
    let key = ObjectKey::new("d", "web");
    let pod: Pod = serde_json::from_str(POD).expect("the fake's pod parses");
    let (q, rss, exp) = (c.queue.clone(), c.rss.clone(), c.expectations.clone());
    fake.lock().unwrap_or_else(|p| p.into_inner()).during_list = Some(Box::new(move || on_pod(&q, &rss, &exp, &Change::Added(&pod))));
    assert!(c.sync(&key).await.is_err(), "the 503 is the sync's error (retried with backoff)");
    let _ = c.sync(&key).await;
    let f = fake.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!((f.creates, f.fresh_lists), (1, 1), "one create, counted by one fresh list");
    assert!(
        c.expectations.satisfied(&key, tokio::time::Instant::now()),
        "the pod was observed: nothing is left expected (pending {:?})",
        c.expectations.pending(&key)
    );
}

#[tokio::test]
async fn while_the_fresh_list_fails_nothing_more_is_created() {
    let fake = Arc::new(Mutex::new(Fake { lists_fail: true, ..Fake::default() }));
    let mut tasks = tokio::task::JoinSet::new();
    let c = controller(fake.clone(), &mut tasks).await;
    let key = ObjectKey::new("d", "web");
    for _ in 0..3 {
        assert!(c.sync(&key).await.is_err(), "each sync fails until the store answers");
    }
    let creates = fake.lock().unwrap_or_else(|p| p.into_inner()).creates;
    assert_eq!(creates, 1, "no replacement while the first create's fate is unknown");
    fake.lock().unwrap_or_else(|p| p.into_inner()).lists_fail = false;
    let _ = c.sync(&key).await;
    assert_eq!(fake.lock().unwrap_or_else(|p| p.into_inner()).creates, 1, "the store holds it: still one create");
}

/// The planted bug of issue 23 (keel-sim's self-test) and its absence: the cache never shows
/// the created pod, so only expectations stop a second create.
#[tokio::test]
async fn with_expectations_a_stale_cache_never_creates_twice_and_the_planted_bug_does() {
    for (bug, want) in [(false, 1), (true, 3)] {
        let fake = Arc::new(Mutex::new(Fake { creates_succeed: true, ..Fake::default() }));
        let mut tasks = tokio::task::JoinSet::new();
        let cfg = Config { bug_ignore_expectations: bug, ..Config::default() };
        let c = controller_with(fake.clone(), &mut tasks, cfg).await;
        let key = ObjectKey::new("d", "web");
        for _ in 0..3 {
            let _ = c.sync(&key).await;
        }
        let creates = fake.lock().unwrap_or_else(|p| p.into_inner()).creates;
        assert_eq!(creates, want, "bug_ignore_expectations = {bug}");
    }
}
