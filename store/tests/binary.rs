//! The `keel-store` binary as operators start it: etcd's flags and variables, its log lines,
//! and its exit codes.

// Tests drive real processes on the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{BIN, Member};
use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).envs(env.iter().copied()).output().expect("run keel-store");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn unknown_flags_are_refused_like_etcd() {
    let (code, _, err) = run(&["--no-such-flag"], &[]);
    assert_eq!(code, 2);
    assert!(err.starts_with("flag provided but not defined: -no-such-flag"), "{err}");
    let (code, _, err) = run(&["--name"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("flag needs an argument: -name"), "{err}");
    let (code, _, err) = run(&["stray"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("'stray' is not a valid flag"), "{err}");
}

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("etcd API Version: 3.5."), "{out}");
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("--experimental-initial-corrupt-check"), "every etcd flag is listed");
}

#[test]
fn etcd_flags_without_effect_are_accepted_and_named_once() {
    let m =
        Member::start(&["--enable-pprof", "--enable-pprof", "--strict-reconfig-check=false", "--experimental-initial-corrupt-check=true"]);
    let log = std::fs::read_to_string(&m.log).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("accepted but have no effect")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    for f in ["enable-pprof", "strict-reconfig-check", "experimental-initial-corrupt-check"] {
        assert!(warnings[0].contains(f), "{f} missing from {}", warnings[0]);
    }
}

#[test]
fn milestones_are_logged_at_every_start() {
    let mut m = Member::start(&[]);
    m.restart();
    let log = std::fs::read_to_string(&m.log).unwrap();
    for line in ["published {name:test, clientURLs:[", "enabled capabilities for version 3.5", "ready to serve client requests"] {
        assert_eq!(log.matches(line).count(), 2, "{line:?} should appear once per start:\n{log}");
    }
}

#[test]
fn etcd_environment_variables_configure_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let addr = common::free_addr();
    let url = format!("http://{addr}");
    let data = dir.path().join("d");
    let mut child = Command::new(BIN)
        .env("ETCD_NAME", "fromenv")
        .env("ETCD_DATA_DIR", &data)
        .env("ETCD_LISTEN_CLIENT_URLS", &url)
        .env("ETCD_ADVERTISE_CLIENT_URLS", &url)
        .env("ETCD_LISTEN_PEER_URLS", "http://127.0.0.1:0")
        .env("ETCD_UNKNOWN_THING", "ignored")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut body = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            use std::io::{Read, Write};
            let _ = write!(s, "POST /v3/cluster/member/list HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
            let _ = s.read_to_string(&mut body);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.contains("\"name\":\"fromenv\""), "{body}");
    assert!(data.join("keel.sled").exists());
}

#[test]
fn a_name_missing_from_the_initial_cluster_is_refused_like_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a.etcd");
    let client = format!("http://{}", common::free_addr());
    // Its own peer listener: the default (localhost:2380) is what `keel up` uses in the test beside it.
    let peer = format!("http://{}", common::free_addr());
    let args = [
        "--name",
        "a",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--logger",
        "capnslog",
    ];
    let cluster = ["--initial-cluster", "b=http://127.0.0.1:2380,c=http://127.0.0.2:2380"];
    let (code, _, err) = run(&[&args[..], &cluster[..]].concat(), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("couldn't find local name \"a\" in the initial cluster configuration"), "{err}");
}
