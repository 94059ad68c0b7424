use super::*;
use crate::authn::keys::{generate_signing_key_pem, signing_key_from_pem};
use serde_json::json;
use std::collections::HashMap;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Default)]
struct Objects {
    sas: HashMap<(String, String), ObjectRef>,
    pods: HashMap<(String, String), ObjectRef>,
    nodes: HashMap<String, ObjectRef>,
}

impl ObjectLookup for Objects {
    fn service_account(&self, ns: &str, name: &str) -> Option<ObjectRef> {
        self.sas.get(&(ns.into(), name.into())).cloned()
    }
    fn pod(&self, ns: &str, name: &str) -> Option<ObjectRef> {
        self.pods.get(&(ns.into(), name.into())).cloned()
    }
    fn secret(&self, _: &str, _: &str) -> Option<ObjectRef> {
        None
    }
    fn node(&self, name: &str) -> Option<ObjectRef> {
        self.nodes.get(name).cloned()
    }
}

fn uid(u: &str) -> ObjectRef {
    ObjectRef { uid: u.into(), ..Default::default() }
}

fn world() -> Objects {
    let mut o = Objects::default();
    o.sas.insert(("dev".into(), "builder".into()), uid("sa-uid"));
    o.pods.insert(
        ("dev".into(), "web".into()),
        ObjectRef { uid: "pod-uid".into(), service_account_name: "builder".into(), node_name: "keel-1".into(), deletion: None },
    );
    o.nodes.insert("keel-1".into(), uid("node-uid"));
    o
}

fn sa() -> ServiceAccount {
    serde_json::from_value(json!({"metadata": {"name": "builder", "namespace": "dev", "uid": "sa-uid"}})).unwrap()
}

fn request(v: serde_json::Value) -> TokenRequest {
    serde_json::from_value(json!({"spec": v})).unwrap()
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn setup() -> (TokenIssuer, ServiceAccountAuthenticator) {
    let pem = generate_signing_key_pem().unwrap();
    let key = signing_key_from_pem(pem.as_bytes()).unwrap();
    let verifying = key.verifying_key();
    (TokenIssuer::new(key, ISSUER, &[]), ServiceAccountAuthenticator::new(vec![verifying], &[ISSUER.to_string()], &[]))
}

#[test]
fn a_requested_token_authenticates_until_it_expires() {
    let (issuer, authn) = setup();
    let objects = world();
    let out = issuer.token_request(&sa(), request(json!({"expirationSeconds": 600})), &objects, t(0), "jti-1").unwrap();
    let status = out.status.unwrap();
    assert_eq!(status.expiration_timestamp, Time(t(600)));
    assert_eq!(out.spec.audiences, [ISSUER]);
    let user = authn.authenticate(&status.token, &objects, t(599)).unwrap().unwrap();
    assert_eq!(user.name, "system:serviceaccount:dev:builder");
    assert_eq!(user.uid, "sa-uid");
    assert_eq!(user.groups, ["system:serviceaccounts", "system:serviceaccounts:dev"]);
    assert_eq!(user.extra.get(extra::CREDENTIAL_ID), Some(&vec!["JTI=jti-1".to_string()]));
    // go-jose's 60 s leeway, then expired.
    assert!(authn.authenticate(&status.token, &objects, t(660)).unwrap().is_some());
    let err = authn.authenticate(&status.token, &objects, t(661)).unwrap_err();
    assert_eq!(err.to_string(), "Unauthorized: service account token has expired");
    assert_eq!(err.code(), 401);
    let early = authn.authenticate(&status.token, &objects, t(-61)).unwrap_err();
    assert_eq!(early.to_string(), "Unauthorized: service account token is not valid yet");
}

#[test]
fn claims_are_kubes() {
    let (issuer, _) = setup();
    let out = issuer
        .token_request(&sa(), request(json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}})), &world(), t(0), "j")
        .unwrap();
    let token = out.status.unwrap().token;
    let parts: Vec<&str> = token.split('.').collect();
    let dec = |s: &str| {
        serde_json::from_slice::<serde_json::Value>(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap()
    };
    let header = dec(parts[0]);
    assert_eq!(header["alg"], "ES256");
    assert!(header.get("typ").is_none());
    assert_eq!(header["kid"].as_str().unwrap().len(), 43);
    let claims = dec(parts[1]);
    assert_eq!(
        claims,
        json!({"iss": ISSUER, "sub": "system:serviceaccount:dev:builder", "aud": [ISSUER], "exp": 1_700_003_600i64, "nbf": 1_700_000_000i64,
               "iat": 1_700_000_000i64, "jti": "j",
               "kubernetes.io": {"namespace": "dev", "serviceaccount": {"name": "builder", "uid": "sa-uid"},
                                  "pod": {"name": "web", "uid": "pod-uid"}, "node": {"name": "keel-1", "uid": "node-uid"}}})
    );
}

#[test]
fn pod_bound_tokens_carry_the_pod_and_die_with_it() {
    let (issuer, authn) = setup();
    let mut objects = world();
    let out = issuer
        .token_request(
            &sa(),
            request(json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "pod-uid"}})),
            &objects,
            t(0),
            "",
        )
        .unwrap();
    let token = out.status.unwrap().token;
    let user = authn.authenticate(&token, &objects, t(10)).unwrap().unwrap();
    assert_eq!(user.extra.get(extra::POD_NAME), Some(&vec!["web".to_string()]));
    assert_eq!(user.extra.get(extra::NODE_NAME), Some(&vec!["keel-1".to_string()]));
    objects.pods.insert(
        ("dev".into(), "web".into()),
        ObjectRef { uid: "other".into(), service_account_name: "builder".into(), ..Default::default() },
    );
    assert_eq!(
        authn.authenticate(&token, &objects, t(10)).unwrap_err().to_string(),
        "Unauthorized: pod UID (other) does not match service account pod ref claim (pod-uid)"
    );
    objects.pods.clear();
    assert_eq!(
        authn.authenticate(&token, &objects, t(10)).unwrap_err().to_string(),
        "Unauthorized: service account token has been invalidated"
    );
}

#[test]
fn deleted_or_recreated_service_accounts_invalidate_tokens() {
    let (issuer, authn) = setup();
    let mut objects = world();
    let token = issuer.token_request(&sa(), request(json!({})), &objects, t(0), "").unwrap().status.unwrap().token;
    objects.sas.insert(("dev".into(), "builder".into()), uid("new-uid"));
    assert_eq!(
        authn.authenticate(&token, &objects, t(1)).unwrap_err().to_string(),
        "Unauthorized: service account UID (new-uid) does not match claim (sa-uid)"
    );
    objects.sas.insert(("dev".into(), "builder".into()), ObjectRef { uid: "sa-uid".into(), deletion: Some(t(0)), ..Default::default() });
    assert!(authn.authenticate(&token, &objects, t(30)).is_ok(), "within the leeway of the deletion");
    assert_eq!(
        authn.authenticate(&token, &objects, t(61)).unwrap_err().to_string(),
        "Unauthorized: service account dev/builder has been deleted"
    );
    objects.sas.clear();
    assert!(authn.authenticate(&token, &objects, t(1)).is_err());
}

#[test]
fn forged_tokens_are_refused() {
    let (issuer, authn) = setup();
    let (other_issuer, _) = setup();
    let objects = world();
    // Signed by a key the apiserver does not trust.
    let foreign_key = other_issuer.token_request(&sa(), request(json!({})), &objects, t(0), "").unwrap().status.unwrap().token;
    assert_eq!(authn.authenticate(&foreign_key, &objects, t(1)).unwrap_err().to_string(), "Unauthorized: invalid signature");
    // A valid token with its payload changed.
    let token = issuer.token_request(&sa(), request(json!({})), &objects, t(0), "").unwrap().status.unwrap().token;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("system:serviceaccount:kube-system:admin");
    let forged = format!("{}.{}.{}", parts[0], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    assert!(authn.authenticate(&forged, &objects, t(1)).is_err());
    // alg=none.
    let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert!(authn.authenticate(&unsigned, &objects, t(1)).is_err());
    // Not a JWT, or someone else's issuer: not ours to judge.
    assert_eq!(authn.authenticate("abc", &objects, t(1)).unwrap(), None);
    let other_iss = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"iss":"https://elsewhere"}"#);
    assert_eq!(authn.authenticate(&format!("{}.{other_iss}.{}", parts[0], parts[2]), &objects, t(1)).unwrap(), None);
}

#[test]
fn audiences_must_overlap() {
    let (issuer, authn) = setup();
    let objects = world();
    let token = issuer.token_request(&sa(), request(json!({"audiences": ["vault"]})), &objects, t(0), "").unwrap().status.unwrap().token;
    assert_eq!(
        authn.authenticate(&token, &objects, t(1)).unwrap_err().to_string(),
        format!(r#"Unauthorized: token audiences ["vault"] is invalid for the target audiences ["{ISSUER}"]"#)
    );
}

#[test]
fn token_request_validation_and_expiration_rules() {
    let (mut issuer, _) = setup();
    let objects = world();
    let err = issuer.token_request(&sa(), request(json!({"expirationSeconds": 60})), &objects, t(0), "").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
    );
    assert_eq!(err.code(), 422);
    issuer.max_expiration_seconds = Some(1200);
    let out = issuer.token_request(&sa(), request(json!({"expirationSeconds": 7200})), &objects, t(0), "").unwrap();
    assert_eq!(out.spec.expiration_seconds, Some(1200));
    // With a max expiration, kubelet's 3607 s is cut and not extended.
    let out = issuer
        .token_request(
            &sa(),
            request(json!({"expirationSeconds": 3607, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}})),
            &objects,
            t(0),
            "",
        )
        .unwrap();
    assert_eq!(out.status.unwrap().expiration_timestamp, Time(t(1200)));
    // Without one, it is issued for a year and warns after 3607 s.
    let (issuer, authn) = setup();
    let out = issuer
        .token_request(
            &sa(),
            request(json!({"expirationSeconds": 3607, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}})),
            &objects,
            t(0),
            "",
        )
        .unwrap();
    let token = out.status.unwrap().token;
    assert!(authn.authenticate(&token, &objects, t(30 * 24 * 3600)).unwrap().is_some());
    let wrong_sa = request(json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}));
    let mut other = sa();
    other.metadata.name = Some("other".into());
    assert_eq!(
        issuer.token_request(&other, wrong_sa, &objects, t(0), "").unwrap_err().to_string(),
        r#"cannot bind token for serviceaccount "other" to pod running with different serviceaccount name."#
    );
    let bad_kind = request(json!({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}));
    assert_eq!(issuer.token_request(&sa(), bad_kind, &objects, t(0), "").unwrap_err().code(), 400);
}
