//! `keel up` (the README's way to run Keel) starts the apiserver in front of the members and
//! writes a kubeconfig that the installed kubectl uses as is; Ctrl-C stops everything.

use keel_testkit as common;

use common::{eventually, text};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn keel_up_serves_kubectl_through_its_kubeconfig() {
    let keel = common::bin("keel");
    assert!(keel.exists(), "{} is missing: build the workspace first", keel.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Command::new(&keel)
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel up");
    let kubeconfig = dir.path().join("kubeconfig");
    let cache = dir.path().join("kube-cache");
    let listed = eventually(Duration::from_secs(60), || {
        if !kubeconfig.exists() {
            return None;
        }
        let o = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["get", "namespaces"])
            .output()
            .ok()?;
        (o.status.success() && text(&o.stdout).contains("kube-system")).then(|| text(&o.stdout))
    });
    if listed.is_none() {
        let _ = Command::new("kill").args(["-INT", &up.id().to_string()]).status();
        let out = up.wait_with_output().expect("keel up exits");
        panic!("kubectl never listed namespaces: {}{}", text(&out.stdout), text(&out.stderr));
    }
    let o = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["get", "nodes"])
        .output()
        .expect("kubectl");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let _ = Command::new("kill").args(["-INT", &up.id().to_string()]).status();
    let out = up.wait_with_output().expect("keel up exits");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("kubectl --kubeconfig") && stdout.contains("keel: stopped"), "{stdout}");
    // Every process it started is gone: the ports are free again.
    for addr in ["127.0.0.1:6443", "127.0.0.1:2379"] {
        assert!(std::net::TcpStream::connect(addr).is_err(), "{addr} still answers");
    }
}
