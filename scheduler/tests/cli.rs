//! The binary's answers to bad flags and to an apiserver that is not there: a clear message,
//! never a panic.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(keel_testkit::bin("keel-scheduler")).args(args).output().expect("run keel-scheduler");
    (out.status.code().unwrap_or(-1), keel_testkit::text(&out.stderr) + &keel_testkit::text(&out.stdout))
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let table: &[(&[&str], &str)] = &[
        (&[], "--kubeconfig"),
        (&["--kubeconfig", "k", "--leader-elect-lease-duration", "soon"], "invalid duration \"soon\""),
        (&["--kubeconfig", "k", "--scoring-strategy", "Random"], "not a scoring strategy"),
        (&["--kubeconfig", "k", "--leader-elect-resource-lock", "endpoints"], "only \"leases\" is supported"),
        (
            &["--kubeconfig", "k", "--leader-elect-lease-duration", "5s", "--leader-elect-renew-deadline", "10s"],
            "leaseDuration must be greater than renewDeadline",
        ),
        (&["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig"),
    ];
    for (args, want) in table {
        let (code, out) = run(args);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(out.contains(want), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{args:?} panicked: {out}");
    }
}

#[test]
fn an_unreachable_apiserver_is_reported_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
    )
    .expect("write kubeconfig");
    let log = dir.path().join("log");
    let mut child = Command::new(keel_testkit::bin("keel-scheduler"))
        .args(["--kubeconfig", kubeconfig.to_str().unwrap_or_default(), "--secure-port", "0"])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start keel-scheduler");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("cannot reach the apiserver") && text.contains("cannot list/watch") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let still_running = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("cannot reach the apiserver") && text.contains("https://127.0.0.1:9"), "{text}");
    assert!(text.contains("cannot list/watch through the apiserver; retrying"), "{text}");
    assert!(still_running, "it keeps retrying instead of exiting: {text}");
}
