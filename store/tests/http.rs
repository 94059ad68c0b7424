//! HTTP on the client port: health, version, metrics and etcd's JSON gateway.

mod common;

use common::Member;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
}

#[tokio::test]
async fn health_version_and_metrics() {
    let m = Member::start(&[]);
    let (code, body) = m.http("GET", "/health", "");
    assert_eq!((code, json(&body)["health"].as_str()), (200, Some("true")));
    let (code, body) = m.http("GET", "/version", "");
    let v = json(&body);
    assert_eq!(code, 200);
    assert!(v["etcdserver"].as_str().unwrap().starts_with("3.5."));
    assert_eq!(v["etcdcluster"], "3.5.0");
    let put = keel_proto::etcdserverpb::PutRequest { key: common::b("k"), value: common::b("v"), ..Default::default() };
    m.kv().await.put(put).await.unwrap();
    let (code, body) = m.http("GET", "/metrics", "");
    assert_eq!(code, 200);
    assert!(body.contains("grpc_server_handled_total{grpc_method=\"Put\",grpc_code=\"OK\"} 1"), "{body}");
    assert!(body.contains("keel_request_duration_seconds_count{grpc_method=\"Put\"} 1"));
    assert!(body.contains("etcd_mvcc_db_total_size_in_bytes "));
    assert!(body.contains("etcd_debugging_mvcc_watcher_total 0"));
}

#[test]
fn gateway_speaks_proto3_json() {
    let m = Member::start(&[]);
    let (code, body) = m.http("POST", "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["header"]["revision"], "2", "64-bit integers are strings");
    let (_, body) = m.http("POST", "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    let v = json(&body);
    assert_eq!(v["kvs"][0]["value"], "YmFy", "bytes are base64");
    assert_eq!(v["kvs"][0]["create_revision"], "2");
    assert_eq!(v["count"], "1");
    let txn = r#"{"compare":[{"key":"Zm9v","target":"MOD","result":"EQUAL","mod_revision":"2"}],
                 "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}],"failure":[]}"#;
    let (_, body) = m.http("POST", "/v3/kv/txn", txn);
    assert_eq!(json(&body)["succeeded"], true, "{body}");
    let (_, body) = m.http("POST", "/v3/lease/grant", r#"{"TTL":"30"}"#);
    let v = json(&body);
    assert_eq!(v["TTL"], "30", "{body}");
    let (_, body) = m.http("POST", "/v3/maintenance/status", "{}");
    assert!(json(&body)["version"].as_str().unwrap().starts_with("3.5."));
    let (_, body) = m.http("POST", "/v3/cluster/member/list", "{}");
    assert_eq!(json(&body)["members"][0]["name"], "test", "{body}");
}

#[test]
fn gateway_errors_carry_grpc_codes() {
    let m = Member::start(&[]);
    let (code, body) = m.http("POST", "/v3/kv/range", "{not json");
    assert_eq!((code, json(&body)["code"].as_i64()), (400, Some(3)));
    m.http("POST", "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#);
    m.http("POST", "/v3/kv/put", r#"{"key":"YQ==","value":"Mg=="}"#);
    m.http("POST", "/v3/kv/compaction", r#"{"revision":"3"}"#);
    let (code, body) = m.http("POST", "/v3/kv/range", r#"{"key":"YQ==","revision":"2"}"#);
    let v = json(&body);
    assert_eq!((code, v["code"].as_i64()), (400, Some(11)));
    assert_eq!(v["message"], "etcdserver: mvcc: required revision has been compacted");
    // Byte for byte what etcd 3.4.23's grpc-gateway answers (keys in its order).
    let msg = "etcdserver: mvcc: required revision has been compacted";
    assert_eq!(body, format!(r#"{{"error":"{msg}","message":"{msg}","code":11}}"#));
    let (code, body) = m.http("POST", "/v3/lease/revoke", r#"{"ID":"999"}"#);
    assert_eq!((code, json(&body)["message"].as_str()), (404, Some("etcdserver: requested lease not found")));
    let (code, body) = m.http("POST", "/v3/maintenance/downgrade", "{}");
    assert_eq!(code, 501, "an RPC Keel does not serve says so: {body}");
    let (code, body) = m.http("POST", "/v3/auth/user/add", r#"{"name":"u","password":"p"}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = m.http("POST", "/v3/auth/user/add", r#"{"name":"u","password":"p"}"#);
    assert_eq!((code, json(&body)["message"].as_str()), (412, Some("etcdserver: user name already exists")));
}

#[test]
fn gateway_watch_streams_events() {
    let m = Member::start(&[]);
    m.http("POST", "/v3/kv/put", r#"{"key":"Zm9v","value":"MQ=="}"#);
    let mut s = TcpStream::connect(m.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = r#"{"create_request":{"key":"Zm9v","start_revision":"1"}}"#;
    write!(s, "POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut r = BufReader::new(s);
    let mut results = Vec::new();
    let mut line = String::new();
    while results.len() < 3 {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        if line.starts_with('{') {
            results.push(json(line.trim()));
            if results.len() == 2 {
                m.http("POST", "/v3/kv/put", r#"{"key":"Zm9v","value":"Mg=="}"#);
            }
        }
    }
    assert_eq!(results[0]["result"]["created"], true);
    assert_eq!(results[1]["result"]["events"][0]["kv"]["value"], "MQ==");
    assert_eq!(results[2]["result"]["events"][0]["kv"]["value"], "Mg==");
    assert_eq!(results[2]["result"]["events"][0]["kv"]["mod_revision"], "3");
}

/// `curl -s -X POST -d BODY URL`: the response body.
fn curl(url: &str, body: &str) -> String {
    let o = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-X", "POST", "-d", body, url])
        .output()
        .expect("curl (apt-get install curl)");
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn the_gateway_also_answers_under_v3beta_and_v3alpha() {
    let m = Member::start(&[]);
    let url = m.url();
    let put = curl(&format!("{url}/v3beta/kv/put"), r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(json(&put)["header"]["revision"], "2", "{put}");
    for prefix in ["v3", "v3beta", "v3alpha"] {
        let got = curl(&format!("{url}/{prefix}/kv/range"), r#"{"key":"Zm9v"}"#);
        assert_eq!(json(&got)["kvs"][0]["value"], "YmFy", "/{prefix}: {got}");
        let err = curl(&format!("{url}/{prefix}/kv/range"), r#"{"key":""}"#);
        let msg = "etcdserver: key is not provided";
        assert_eq!(err, format!(r#"{{"error":"{msg}","message":"{msg}","code":3}}"#), "/{prefix}");
    }
}
