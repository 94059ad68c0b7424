//! The generated serving certificate verifies for the names given with `--tls-sans` (a load
//! balancer's address), and not for others.

use keel_testkit::{Cluster, text};
use std::process::Command;

fn curl_via(c: &Cluster, name: &str) -> (bool, String) {
    let ca = c.path("apiserver-1/certificates/ca.crt");
    let port = c.https.port();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("{name}:{port}:{}", c.https.ip()), &format!("https://{name}:{port}/version")])
        .output()
        .expect("run curl");
    (out.status.success(), text(&out.stdout))
}

#[test]
fn the_serving_certificate_verifies_for_extra_sans_only() {
    let c = Cluster::start_with(&["--tls-sans", "keel-lb.example,10.99.0.1"]);
    let (ok, body) = curl_via(&c, "keel-lb.example");
    assert!(ok && body.contains("gitVersion"), "{body}");
    let (ok, _) = curl_via(&c, "not-a-san.example");
    assert!(!ok, "a name the certificate was not made for does not verify");
}
