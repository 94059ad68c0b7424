//! Table tests of the ResourceQuota controller's pure parts (cases after kube's
//! `resource_quota_controller_test.go` `TestSyncResourceQuota`).

use super::*;
use serde_json::json;

fn quota(hard: serde_json::Value, status: Option<serde_json::Value>) -> ResourceQuota {
    let mut v = json!({"metadata": {"name": "q", "namespace": "dev", "resourceVersion": "5"}, "spec": {"hard": hard}});
    if let Some(s) = status {
        v["status"] = s;
    }
    serde_json::from_value(v).expect("a quota")
}

fn pod(name: &str, phase: &str, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "dev"},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": phase}
    }))
    .expect("a pod")
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The list with every quantity in one canonical spelling (by value: `2Gi` = `2147483648`).
fn strings(
    m: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Vec<(String, String)> {
    m.iter().flatten().map(|(k, v)| (k.clone(), canonical(&v.0))).collect()
}

fn canonical(q: &str) -> String {
    Quantity::parse(q).map(|q| q.milli_value().to_string()).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn want(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), canonical(v))).collect()
}

#[test]
fn object_counts_are_named_as_kube_names_them() {
    let cases = [
        ("count/pods", Some(("", "pods"))),
        ("count/configmaps", Some(("", "configmaps"))),
        ("count/deployments.apps", Some(("apps", "deployments"))),
        ("count/widgets.example.com", Some(("example.com", "widgets"))),
        ("configmaps", Some(("", "configmaps"))),
        ("services", Some(("", "services"))),
        ("pods", None),
        ("cpu", None),
        ("requests.memory", None),
    ];
    for (name, want) in cases {
        assert_eq!(counted(name), want.map(|(g, r)| (g.to_string(), r.to_string())), "{name}");
    }
}

#[test]
fn status_is_hard_from_the_spec_and_used_recounted() {
    let running = [pod("a", "Running", "100m", "1Gi"), pod("b", "Pending", "200m", "1Gi")];
    let with_done = [running.to_vec(), vec![pod("c", "Succeeded", "1", "4Gi"), pod("d", "Failed", "1", "4Gi")]].concat();
    let hard = json!({"pods": "10", "requests.cpu": "2", "limits.memory": "8Gi", "count/configmaps": "5", "configmaps": "5"});
    let mut counts = ResourceList::new();
    counts.insert("count/configmaps".into(), Quantity::from_units(3));
    counts.insert("configmaps".into(), Quantity::from_units(3));
    let want_used =
        want(&[("configmaps", "3"), ("count/configmaps", "3"), ("limits.memory", "2Gi"), ("pods", "2"), ("requests.cpu", "300m")]);
    let want_hard =
        want(&[("configmaps", "5"), ("count/configmaps", "5"), ("limits.memory", "8Gi"), ("pods", "10"), ("requests.cpu", "2")]);

    // A new quota: hard copied, used counted; terminal pods use nothing.
    let fresh = quota(hard.clone(), None);
    let st = next_status(&fresh, &with_done, &counts, now()).ok().flatten().expect("a first status");
    assert_eq!(strings(&st.hard), want_hard);
    assert_eq!(strings(&st.used), want_used);

    // Drift (an admission charge for a pod that later failed): corrected.
    let drifted = quota(
        hard.clone(),
        Some(
            json!({"hard": hard.clone(), "used": {"pods": "3", "requests.cpu": "1300m", "limits.memory": "6Gi", "count/configmaps": "3", "configmaps": "3"}}),
        ),
    );
    let st = next_status(&drifted, &with_done, &counts, now()).ok().flatten().expect("corrected");
    assert_eq!(strings(&st.used), want_used);

    // Right already (quantities compared by value, not spelling): nothing written.
    let right = quota(
        hard.clone(),
        Some(
            json!({"hard": hard.clone(), "used": {"pods": "2", "requests.cpu": "0.3", "limits.memory": "2048Mi", "count/configmaps": "3", "configmaps": "3"}}),
        ),
    );
    assert!(matches!(next_status(&right, &running, &counts, now()), Ok(None)));

    // The spec changed: hard follows it, used gains the new key (zero) and drops the old.
    let changed = quota(json!({"pods": "4", "requests.memory": "1Gi"}), Some(json!({"hard": hard.clone(), "used": {"pods": "2"}})));
    let st = next_status(&changed, &running, &ResourceList::new(), now()).ok().flatten().expect("follows the spec");
    assert_eq!(strings(&st.hard), want(&[("pods", "4"), ("requests.memory", "1Gi")]));
    assert_eq!(strings(&st.used), want(&[("pods", "2"), ("requests.memory", "2Gi")]));

    // A pod past its deletion grace period uses no compute, only its count.
    let mut leaving = pod("e", "Running", "1", "1Gi");
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(1_799_999_000).unwrap_or(Timestamp::UNIX_EPOCH)));
    leaving.metadata.deletion_grace_period_seconds = Some(30);
    let q = quota(json!({"requests.cpu": "4", "count/pods": "10"}), None);
    let st = next_status(&q, &[leaving], &ResourceList::new(), now()).ok().flatten().expect("a status");
    assert_eq!(strings(&st.used), want(&[("count/pods", "1"), ("requests.cpu", "0")]));

    // A quota with an unparsable quantity is invalid, not a panic.
    let bad = quota(json!({"cpu": "lots"}), None);
    assert!(matches!(next_status(&bad, &running, &ResourceList::new(), now()), Err(Error::Invalid { .. })));
}

#[test]
fn a_quota_needs_a_count_when_its_status_lags_its_spec() {
    let hard = json!({"pods": "10", "cpu": "2"});
    let cases = [
        ("no status", quota(hard.clone(), None), true),
        (
            "status hard differs",
            quota(hard.clone(), Some(json!({"hard": {"pods": "5", "cpu": "2"}, "used": {"pods": "1", "cpu": "0"}}))),
            true,
        ),
        ("used lacks cpu", quota(hard.clone(), Some(json!({"hard": hard.clone(), "used": {"pods": "1"}}))), true),
        ("settled", quota(hard.clone(), Some(json!({"hard": hard.clone(), "used": {"pods": "1", "cpu": "0"}}))), false),
        (
            "same hard spelled differently",
            quota(hard.clone(), Some(json!({"hard": {"pods": "10", "cpu": "2000m"}, "used": {"pods": "1", "cpu": "0"}}))),
            false,
        ),
    ];
    for (name, q, want) in cases {
        assert_eq!(needs_count(&q), want, "{name}");
    }
}

/// The status write against a fake apiserver whose informer lists hold one quota (at
/// resourceVersion 7, `used` drifted to 5 pods) and one running pod; its PUT answers 409 while
/// `conflicts` lasts, as the apiserver does when admission charged the quota since.
mod write {
    use super::*;
    use crate::clock::FakeClock;
    use crate::context::Context;
    use crate::events::Recorder;
    use crate::metrics::Metrics;
    use crate::shared::{Served, Shared};
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt as _, Full};
    use kube::client::Body;
    use std::sync::Mutex;

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    #[derive(Default)]
    struct Fake {
        conflicts: usize,
        puts: Vec<serde_json::Value>,
    }

    fn reply(code: u16, body: String) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        r
    }

    fn apiserver(fake: Arc<Mutex<Fake>>) -> kube::Client {
        let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "dev", "resourceVersion": "7", "uid": "qu"},
            "spec": {"hard": {"pods": "10"}}, "status": {"hard": {"pods": "10"}, "used": {"pods": "5"}}});
        let p = serde_json::to_value(pod("a", "Running", "100m", "1Mi")).unwrap_or_default();
        let service = tower::service_fn(move |req: Request<Body>| {
            let (fake, q, p) = (fake.clone(), q.clone(), p.clone());
            async move {
                let (path, query) = (req.uri().path().to_string(), req.uri().query().unwrap_or_default().to_string());
                let method = req.method().clone();
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                if query.contains("watch=true") {
                    let pending = futures::stream::unfold((), |()| async {
                        futures::future::pending::<()>().await;
                        None::<(Result<http_body::Frame<Bytes>, BoxError>, ())>
                    });
                    return Ok::<_, BoxError>(Response::new(http_body_util::Either::Right(http_body_util::StreamBody::new(Box::pin(
                        pending,
                    )))));
                }
                let mut f = fake.lock().unwrap_or_else(|p| p.into_inner());
                let list = |kind: &str, items: Vec<serde_json::Value>| {
                    reply(200, json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "7"}, "items": items}).to_string())
                };
                let resp = if method == http::Method::PUT && path == "/api/v1/namespaces/dev/resourcequotas/q/status" {
                    f.puts.push(serde_json::from_slice(&body).unwrap_or_default());
                    if f.conflicts > 0 {
                        f.conflicts -= 1;
                        reply(409, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                            "message": "Operation cannot be fulfilled on resourcequotas \"q\": the object has been modified; please apply your changes to the latest version and try again"}).to_string())
                    } else {
                        reply(200, String::from_utf8_lossy(&body).into_owned())
                    }
                } else if path == "/api/v1/resourcequotas" {
                    list("ResourceQuotaList", vec![q])
                } else if path == "/api/v1/pods" {
                    list("PodList", vec![p])
                } else {
                    list("List", vec![])
                };
                Ok(resp.map(http_body_util::Either::Left))
            }
        });
        kube::Client::new(service, "dev")
    }

    #[tokio::test]
    async fn the_recount_is_written_on_the_cached_version_and_a_conflict_is_retried() {
        let fake = Arc::new(Mutex::new(Fake { conflicts: 1, ..Fake::default() }));
        let client = apiserver(fake.clone());
        let shared = Arc::new(Shared::new(&client, Served { resource_quotas: true, ..Served::default() }));
        let clock: crate::clock::SharedClock = Arc::new(FakeClock::at(now()));
        let (recorder, _events) = Recorder::new(client.clone(), clock.clone());
        let ctx = Context { client, shared: shared.clone(), clock, recorder, metrics: Metrics::new() };
        let quotas = shared.resource_quotas.clone().expect("served");
        let c = ResourceQuotaController::new(&ctx, quotas.clone(), SYNC_PERIOD);
        let mut tasks = tokio::task::JoinSet::new();
        shared.start(&mut tasks);
        let key = ObjectKey::new("dev", "q");
        // Bounded only so a regression fails instead of hanging the suite.
        for _ in 0..2000 {
            if quotas.is_synced() && shared.pods.is_synced() && quotas.get(&key).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = c.reconcile(&key).await;
        assert!(first.as_ref().is_err_and(Error::is_conflict), "a 409 is the sync's error, retried with backoff: {:?}", first.err());
        assert!(c.reconcile(&key).await.is_ok());
        let puts = fake.lock().unwrap_or_else(|p| p.into_inner()).puts.clone();
        assert_eq!(puts.len(), 2);
        for put in &puts {
            assert_eq!(put["metadata"]["resourceVersion"], "7", "the precondition: the version the count was made from");
            assert_eq!(put["status"]["used"]["pods"], "1", "recounted from the informer, not the drifted 5");
        }
    }
}
