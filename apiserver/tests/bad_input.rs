//! Bad requests get a Kubernetes `Status` with the right code and reason, and write nothing.

use keel_testkit as common;

use common::Cluster;
use serde_json::Value;

fn status(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a Status ({e}): {body}"))
}

#[test]
fn every_bad_request_is_a_status_and_nothing_is_written() {
    let c = Cluster::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let json = "application/json";
    let table: Vec<(&str, &str, String, &str, u16, &str)> = vec![
        ("malformed JSON", cms, json.into(), "{\"metadata\":", 400, "BadRequest"),
        ("not an object", cms, json.into(), "[1,2]", 400, "BadRequest"),
        ("wrong kind for the URL", cms, json.into(), r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"a"}}"#, 400, "BadRequest"),
        ("wrong apiVersion", cms, json.into(), r#"{"kind":"ConfigMap","apiVersion":"apps/v1","metadata":{"name":"a"}}"#, 400, "BadRequest"),
        ("name that is no DNS name", cms, json.into(), r#"{"metadata":{"name":"Not_OK"}}"#, 422, "Invalid"),
        ("no name at all", cms, json.into(), r#"{"metadata":{}}"#, 422, "Invalid"),
        ("a field of the wrong type", cms, json.into(), r#"{"metadata":{"name":"a"},"data":{"k":1}}"#, 400, "BadRequest"),
        (
            "an unknown field under Strict",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            json.into(),
            r#"{"metadata":{"name":"a"},"dta":{"k":"v"}}"#,
            400,
            "BadRequest",
        ),
        ("a missing namespace", "/api/v1/namespaces/nope/configmaps", json.into(), r#"{"metadata":{"name":"a"}}"#, 404, "NotFound"),
        (
            "a namespace that contradicts the URL",
            cms,
            json.into(),
            r#"{"metadata":{"name":"a","namespace":"kube-system"}}"#,
            400,
            "BadRequest",
        ),
        ("an unknown media type", cms, "text/plain".into(), r#"{"metadata":{"name":"a"}}"#, 415, "UnsupportedMediaType"),
        ("malformed YAML", cms, "application/yaml".into(), "metadata: [name: a\n  - x", 400, "BadRequest"),
        ("YAML that is not one object", cms, "application/yaml".into(), "- a\n- b\n", 400, "BadRequest"),
        ("malformed protobuf", cms, "application/vnd.kubernetes.protobuf".into(), "k8s\u{0}\u{ff}\u{ff}", 400, "BadRequest"),
        ("an unknown resource", "/api/v1/namespaces/default/widgets", json.into(), r#"{"metadata":{"name":"a"}}"#, 404, "NotFound"),
        (
            "a deployment whose selector misses its template",
            "/apis/apps/v1/namespaces/default/deployments",
            json.into(),
            r#"{"metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c"}]}}}}"#,
            422,
            "Invalid",
        ),
    ];
    for (what, path, ct, body, code, reason) in table {
        let (got, answer) = c.http("POST", path, &ct, body.as_bytes());
        assert_eq!(got, code, "{what}: {answer}");
        let s = status(&answer);
        assert_eq!(
            (s["kind"].as_str(), s["reason"].as_str(), s["code"].as_u64()),
            (Some("Status"), Some(reason), Some(u64::from(code))),
            "{what}: {answer}"
        );
    }
    let (_, invalid) = c.http(
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        json,
        br#"{"metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c"}]}}}}"#,
    );
    let fields: Vec<String> = status(&invalid)["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["field"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        fields,
        vec!["spec.template.metadata.labels".to_string(), "spec.template.spec.containers[0].image".to_string()],
        "{invalid}"
    );
    let strict = c.http(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        json,
        br#"{"metadata":{"name":"a"},"dta":{}, "x": 1}"#,
    );
    assert!(strict.1.contains("unknown field \\\"x\\\""), "names the field: {}", strict.1);

    // A well-formed YAML body is understood.
    let (code, body) =
        c.http("POST", cms, "application/yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n");
    assert_eq!(code, 201, "{body}");
    let (code, _) = c.http("DELETE", &format!("{cms}/from-yaml"), json, b"");
    assert_eq!(code, 200);

    // Over 3 MiB.
    let big = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#, "x".repeat(3 * 1024 * 1024 + 10));
    let (code, answer) = c.http("POST", cms, json, big.as_bytes());
    assert_eq!(code, 413, "{answer}");

    // A bad patch and a bad selector.
    let (code, _) = c.http("POST", cms, json, br#"{"metadata":{"name":"ok"}}"#);
    assert_eq!(code, 201);
    let (code, answer) = c.http("PATCH", &format!("{cms}/ok"), "application/json-patch+json", br#"[{"op":"remove","path":"/nope"}]"#);
    assert_eq!(code, 400, "{answer}");
    let (code, answer) = c.http("PATCH", &format!("{cms}/ok"), "application/strategic-merge-patch+json", b"{\"data\":");
    assert_eq!(code, 400, "{answer}");
    let (code, answer) = c.http("GET", &format!("{cms}?fieldSelector=spec.nodeName%3Dx"), json, b"");
    assert_eq!((code, status(&answer)["message"].as_str()), (400, Some("field label not supported: spec.nodeName")));
    let (code, _) = c.http("GET", &format!("{cms}?continue=garbage"), json, b"");
    assert_eq!(code, 400);

    // Nothing but the one good object was written.
    let (code, list) = c.http("GET", cms, json, b"");
    assert_eq!(code, 200);
    let names: Vec<String> = status(&list)["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, vec!["ok".to_string()]);
}

#[test]
fn lists_page_at_one_revision_and_continue_tokens_expire_after_compaction() {
    let c = Cluster::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    for i in 0..5 {
        let (code, body) = c.http("POST", cms, "application/json", format!(r#"{{"metadata":{{"name":"c{i}"}}}}"#).as_bytes());
        assert_eq!(code, 201, "{body}");
    }
    let (_, first) = c.http("GET", &format!("{cms}?limit=2"), "application/json", b"");
    let first = status(&first);
    let token = first["metadata"]["continue"].as_str().unwrap_or_default().to_string();
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    // A write between pages does not show in the next page: the list is read at one revision.
    let (code, _) = c.http("POST", cms, "application/json", br#"{"metadata":{"name":"c9"}}"#);
    assert_eq!(code, 201);
    let (_, rest) = c.http("GET", &format!("{cms}?limit=10&continue={token}"), "application/json", b"");
    let rest = status(&rest);
    let names: Vec<&str> = rest["items"].as_array().into_iter().flatten().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, vec!["c2", "c3", "c4"]);
    assert_eq!(rest["metadata"]["resourceVersion"].as_str(), Some(rv.as_str()));
    assert!(rest["metadata"].get("continue").is_none());

    // Compact past the token's revision: the token is expired (410).
    let compact = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &c.store_addr.to_string(), "compact"])
        .arg(format!("{}", rv.parse::<i64>().unwrap_or(0) + 1))
        .output()
        .expect("etcdctl");
    assert!(compact.status.success(), "{}", common::text(&compact.stderr));
    let (code, answer) = c.http("GET", &format!("{cms}?limit=2&continue={token}"), "application/json", b"");
    assert_eq!((code, status(&answer)["reason"].as_str()), (410, Some("Expired")), "{answer}");
    // And a watch from before the compaction gets an ERROR event with a 410.
    let (code, stream) = c.http("GET", &format!("{cms}?watch=true&resourceVersion=2&timeoutSeconds=2"), "application/json", b"");
    assert_eq!(code, 200);
    let last: Value = serde_json::from_str(stream.lines().last().unwrap_or("{}")).unwrap_or_default();
    assert_eq!((last["type"].as_str(), last["object"]["code"].as_u64()), (Some("ERROR"), Some(410)), "{stream}");
}
