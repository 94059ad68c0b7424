use super::*;
use k8s_openapi::api::authentication::v1::TokenRequestStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::sync::atomic::{AtomicUsize, Ordering};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

const MIN: i64 = 60;
const HOUR: i64 = 3600;

/// kube's `TestRequiresRefresh`: issued at `start`, TTL = exp − start.
#[test]
fn refresh_at_80_percent_of_the_ttl_or_after_24_hours_as_kube() {
    let cases: &[(&str, i64, i64, Option<()>, bool)] = &[
        ("10 min into an hour", 10 * MIN, 60 * MIN, Some(()), false),
        ("50 min into an hour (past 80 %)", 50 * MIN, 60 * MIN, Some(()), true),
        ("25 h into 60 h (past 24 h)", 25 * HOUR, 60 * HOUR, Some(()), true),
        ("expired", 70 * MIN, 60 * MIN, Some(()), true),
        ("no expirationSeconds granted", 0, 60 * MIN, None, false),
        ("47 min into an hour", 47 * MIN, 60 * MIN, Some(()), false),
        ("49 min into an hour", 49 * MIN, 60 * MIN, Some(()), true),
    ];
    for (name, now, exp, ttl, want) in cases {
        let t = Issued { token: "t".into(), expires: at(*exp), expiration_seconds: ttl.map(|_| *exp) };
        assert_eq!(requires_refresh(&t, at(*now), Duration::ZERO), *want, "{name}");
    }
    // The jitter brings the refresh forward, never later.
    let t = Issued { token: "t".into(), expires: at(60 * MIN), expiration_seconds: Some(60 * MIN) };
    assert!(!requires_refresh(&t, at(48 * MIN - 1), Duration::ZERO));
    assert!(requires_refresh(&t, at(48 * MIN - 1), Duration::from_secs(5)));
    assert!(expired(&t, at(60 * MIN + 1)) && !expired(&t, at(60 * MIN)));
}

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "dev", "uid": "u1"},
        "spec": {"serviceAccountName": "builder", "containers": [], "volumes": [
            {"name": "kube-api-access-abcde", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt"}}
            ]}},
            {"name": "vault", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "audience": "vault"}}]}}
        ]}
    }))
    .unwrap_or_default()
}

#[test]
fn one_key_per_projection_and_the_request_is_bound_to_the_pod() {
    let p = pod();
    let got = projections(&p);
    assert_eq!(got, [("".to_string(), 3607), ("vault".to_string(), DEFAULT_EXPIRATION_SECONDS)].into());
    let key = TokenKey::of(&p, "vault", 3600);
    assert_eq!(
        (key.namespace.as_str(), key.service_account.as_str(), key.audiences.clone()),
        ("dev", "builder", vec!["vault".to_string()])
    );
    let req = key.request();
    assert_eq!(req.spec.expiration_seconds, Some(3600));
    let r = req.spec.bound_object_ref.unwrap_or_default();
    assert_eq!(
        (r.kind.as_deref(), r.api_version.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some("Pod"), Some("v1"), Some("web"), Some("u1"))
    );
    assert!(TokenKey::of(&p, "", 3607).request().spec.audiences.is_empty(), "no audience: the apiserver's own");
    let mut nameless = p.clone();
    if let Some(s) = nameless.spec.as_mut() {
        s.service_account_name = None;
    }
    assert_eq!(TokenKey::of(&nameless, "", 3607).service_account, "default");
}

/// An answer issuing `token` at `now` for `ttl` seconds.
fn answer(req: TokenRequest, token: &str, now: Timestamp, ttl: i64) -> TokenRequest {
    let expires = now.saturating_add(jiff::SignedDuration::from_secs(ttl)).unwrap_or(now);
    TokenRequest { status: Some(TokenRequestStatus { token: token.into(), expiration_timestamp: Time(expires) }), ..req }
}

#[tokio::test(start_paused = true)]
async fn cached_until_refresh_then_renewed_failures_back_off_and_the_pod_takes_its_tokens() {
    let m = TokenManager::new(1);
    let key = TokenKey::of(&pod(), "", 3600);
    let calls = AtomicUsize::new(0);
    let ok = |token: &'static str, now: Timestamp| {
        let calls = &calls;
        move |req: TokenRequest| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(answer(req, token, now, 3600))
        }
    };
    let fail = || {
        let calls = &calls;
        move |_req: TokenRequest| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<TokenRequest, _>("serviceaccounts \"builder\" not found".to_string())
        }
    };

    assert_eq!(m.get(&key, at(0), ok("a", at(0))).await, Ok("a".into()));
    assert_eq!(m.get(&key, at(30 * MIN), ok("b", at(30 * MIN))).await, Ok("a".into()), "fresh: cached");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Past 80 %: refreshed; a failing refresh keeps the cached token.
    assert_eq!(m.get(&key, at(50 * MIN), fail()).await, Ok("a".into()));
    assert_eq!(m.get(&key, at(50 * MIN), fail()).await, Ok("a".into()), "within the backoff: not asked again");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    tokio::time::advance(INITIAL_BACKOFF).await;
    assert_eq!(m.get(&key, at(51 * MIN), ok("b", at(51 * MIN))).await, Ok("b".into()), "after the backoff: renewed");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Expired and the refresh fails: an error naming why, retried with a doubling delay.
    let late = at(51 * MIN + 2 * HOUR);
    let e = m.get(&key, late, fail()).await.err().unwrap_or_default();
    assert!(e.contains("expired and refresh failed") && e.contains("not found"), "{e}");
    tokio::time::advance(INITIAL_BACKOFF).await;
    assert!(m.get(&key, late, fail()).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    tokio::time::advance(INITIAL_BACKOFF).await;
    assert!(m.get(&key, late, fail()).await.is_err(), "the second delay is twice the first");
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    // A new pod's first request fails with kube's words.
    let other = TokenKey { pod_uid: "u2".into(), ..key.clone() };
    let e = m.get(&other, late, fail()).await.err().unwrap_or_default();
    assert!(e.starts_with("failed to fetch token: "), "{e}");

    assert_eq!(m.len(), 1, "u1's expired token was collected (kube's cleanup)");
}
