//! `keel up` (the README's way to run Keel) starts the members and an apiserver per member
//! address behind the load balancer on 127.0.0.1:6443, writes a kubeconfig the installed
//! kubectl uses as is (a client certificate; anonymous requests and each component held to
//! their roles), survives kill -9 of an apiserver (clients fail over through the balancer
//! and keel up starts it again), runs pods on a kubelet per member address, runs a Deployment
//! spread over the nodes by the elected controller-manager and scheduler, shows it all in
//! `keel status`, and stops everything on Ctrl-C, leaving no container, bridge or port behind;
//! a keel up killed with -9 takes its parts with it.

use keel_testkit::{bin, eventually, text};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Both tests use keel up's fixed addresses (127.0.0.N:2379, 127.0.0.1:6443): one at a time.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

fn alive(pid: u32) -> bool {
    Command::new("kill").args(["-0", &pid.to_string()]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn kubectl(kubeconfig: &std::path::Path, cache: &std::path::Path, args: &[&str]) -> Option<Output> {
    Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).arg("--cache-dir").arg(cache).args(args).output().ok()
}

fn pid_of(state: &str, name: &str) -> Option<u32> {
    state.lines().find(|l| l.starts_with(&format!("{name}\t")))?.split('\t').nth(3)?.parse().ok()
}

/// Stops keel up (Ctrl-C, then waits up to a minute for it to stop its parts) if the test ends
/// before it did so itself: a failed assertion must not leave the cluster running.
struct Up(Option<u32>);

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
            let _ = eventually(Duration::from_secs(60), || (!alive(pid)).then_some(()));
        }
    }
}

#[test]
fn keel_up_serves_kubectl_through_the_balancer_and_survives_an_apiserver_kill() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let keel = bin("keel");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Command::new(&keel)
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel up");
    let mut guard = Up(Some(up.id()));
    let stop = |up: &mut std::process::Child| {
        let _ = Command::new("kill").args(["-INT", &up.id().to_string()]).status();
    };
    let kubeconfig = dir.path().join("kubeconfig");
    let cache = dir.path().join("kube-cache");
    let listed = eventually(Duration::from_secs(60), || {
        let o = kubectl(&kubeconfig, &cache, &["get", "namespaces"]).filter(|_| kubeconfig.exists())?;
        (o.status.success() && text(&o.stdout).contains("kube-system")).then(|| text(&o.stdout))
    });
    if listed.is_none() {
        stop(&mut up);
        guard.0 = None;
        let out = up.wait_with_output().expect("keel up exits");
        panic!("kubectl never listed namespaces: {}{}", text(&out.stdout), text(&out.stderr));
    }
    assert!(std::fs::read_to_string(&kubeconfig).expect("kubeconfig").contains("server: https://127.0.0.1:6443"));

    // Secured by default: the admin is who the kubeconfig's certificate says, an anonymous
    // request gets nothing but health, and each component is held to its own role.
    let anonymous = Command::new("curl").args(["-sk", "https://127.0.0.1:6443/api/v1/pods"]).output().expect("curl");
    assert!(
        text(&anonymous.stdout).contains(r#"pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\""#),
        "anonymous: {}",
        text(&anonymous.stdout)
    );
    let kubelet = kubectl(&dir.path().join("kubelet-1.kubeconfig"), &cache, &["get", "pods", "-A"]).expect("kubectl");
    assert!(
        !kubelet.status.success() && text(&kubelet.stderr).contains(r#"User "system:node:keel-1" cannot list resource "pods""#),
        "a kubelet lists only its own node's pods: {}",
        text(&kubelet.stderr)
    );
    let scheduler = kubectl(&dir.path().join("scheduler.kubeconfig"), &cache, &["get", "secrets", "-A"]).expect("kubectl");
    assert!(
        !scheduler.status.success() && text(&scheduler.stderr).contains(r#"User "system:kube-scheduler" cannot list resource "secrets""#),
        "the scheduler reads no secrets: {}",
        text(&scheduler.stderr)
    );

    // keel status: every member and apiserver, healthy, and a store leader.
    let status = eventually(Duration::from_secs(30), || {
        let o = Command::new(&keel).args(["status", "--data-dir"]).arg(dir.path()).output().ok()?;
        let s = text(&o.stdout);
        (o.status.success() && s.matches(" yes ").count() >= 6 && !s.contains("store leader:              none")).then_some(s)
    });
    let Some(status) = status else {
        stop(&mut up);
        panic!("keel status never showed a healthy cluster");
    };
    for part in ["m1", "m2", "m3", "apiserver-1", "apiserver-2", "apiserver-3"] {
        assert!(status.contains(part), "{part} missing from keel status:\n{status}");
    }
    // The members agree on one leader, as etcdctl sees them.
    let eps = "127.0.0.1:2379,127.0.0.2:2379,127.0.0.3:2379";
    let members =
        Command::new("etcdctl").env("ETCDCTL_API", "3").args(["--endpoints", eps, "endpoint", "status"]).output().expect("etcdctl");
    let members = text(&members.stdout);
    assert_eq!(members.lines().count(), 3, "{members}");
    assert_eq!(members.lines().filter(|l| l.contains(", true, false,")).count(), 1, "one leader: {members}");

    // A kubelet per member address registers its node; a pod bound to one of them runs.
    let nodes = eventually(Duration::from_secs(60), || {
        let o = kubectl(&kubeconfig, &cache, &["get", "nodes", "--no-headers"])?;
        let s = text(&o.stdout);
        (s.lines().filter(|l| l.contains(" Ready ")).count() == 3).then_some(s)
    });
    assert!(nodes.is_some_and(|s| s.contains("keel-1") && s.contains("keel-3")), "three Ready nodes");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: sleeper}\nspec:\n  nodeName: keel-2\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: busybox, command: [sleep, '3600']}\n";
    let mut apply = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl apply");
    use std::io::Write;
    apply.stdin.take().expect("stdin").write_all(pod.as_bytes()).expect("write the pod");
    assert!(apply.wait().expect("kubectl apply").success());
    let running = eventually(Duration::from_secs(60), || {
        let o = kubectl(&kubeconfig, &cache, &["get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"])?;
        (text(&o.stdout) == "Running").then_some(())
    });
    assert!(running.is_some(), "the pod bound to keel-2 never ran");

    // Its graceful delete: the kubelet stops it and makes the final delete (kubectl waits).
    let o = kubectl(&kubeconfig, &cache, &["delete", "pod", "sleeper", "--timeout=60s"]).expect("kubectl");
    assert!(o.status.success(), "delete pod: {}", text(&o.stderr));

    // The README's example: a Deployment the elected controller-manager expands into pods that
    // the elected scheduler spreads over the three (now empty) nodes, each serving on its own
    // pod IP. (No topology spread scoring: with a pod already on one node, two pods could share.)
    let o = kubectl(
        &kubeconfig,
        &cache,
        &["create", "deployment", "web", "--image=python:3", "--replicas=3", "--", "python3", "-m", "http.server", "8080"],
    )
    .expect("kubectl");
    assert!(o.status.success(), "create deployment: {}", text(&o.stderr));
    let spread = eventually(Duration::from_secs(90), || {
        let o = kubectl(
            &kubeconfig,
            &cache,
            &["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{\"\\n\"}{end}"],
        )?;
        let s = text(&o.stdout);
        let running: Vec<&str> = s.lines().filter(|l| l.starts_with("Running ")).collect();
        let mut nodes: Vec<&str> = running.iter().filter_map(|l| l.split(' ').nth(1)).collect();
        nodes.sort_unstable();
        nodes.dedup();
        (running.len() == 3).then_some(nodes.len())
    });
    let leaders = Command::new(&keel).args(["status", "--data-dir"]).arg(dir.path()).output().expect("keel status");
    let leaders = text(&leaders.stdout);
    if spread.is_none() {
        stop(&mut up);
        panic!("the Deployment's 3 pods never ran:\n{leaders}");
    }
    assert_eq!(spread, Some(3), "the scheduler spreads 3 best-effort pods over 3 empty nodes");
    for role in ["scheduler leader:", "controller-manager leader:"] {
        let line = leaders.lines().find(|l| l.starts_with(role)).unwrap_or_default();
        // kube's identity: hostname_<random>, one per process start.
        let holder = line.trim_start_matches(role).trim();
        assert!(holder.contains('_') && !holder.contains(' '), "{role} names a holder: {leaders}");
    }

    // kill -9 of the first apiserver: kubectl keeps working through the balancer, and keel up
    // starts it again (a new PID in its record).
    let state = std::fs::read_to_string(dir.path().join("keel-up.state")).expect("keel up's record");
    let api1 = pid_of(&state, "apiserver-1").expect("apiserver-1's pid");
    let _ = Command::new("kill").args(["-9", &api1.to_string()]).status();
    for i in 0..5 {
        let o = kubectl(&kubeconfig, &cache, &["create", "configmap", &format!("after-kill-{i}"), "--from-literal=k=v"]).expect("kubectl");
        assert!(o.status.success(), "write {i} after the kill failed: {}", text(&o.stderr));
    }
    let restarted = eventually(Duration::from_secs(20), || {
        let o = Command::new(&keel).args(["status", "--data-dir"]).arg(dir.path()).output().ok()?;
        let s = text(&o.stdout);
        s.lines().any(|l| l.starts_with("apiserver-1 ") && l.contains(" yes ")).then_some(())
    });

    stop(&mut up);
    guard.0 = None;
    let out = up.wait_with_output().expect("keel up exits");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(restarted.is_some(), "apiserver-1 was not started again: {stderr}");
    assert!(stderr.contains("apiserver-1 exited") && stderr.contains("apiserver-1 started again"), "{stderr}");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("kubectl --kubeconfig") && stdout.contains("keel: stopped"), "{stdout}");
    assert!(stdout.contains(&format!("etcdctl --endpoints={eps}")), "prints the etcdctl line: {stdout}");
    for i in 1..=3 {
        let log = std::fs::read_to_string(dir.path().join(format!("m{i}.log"))).expect("member log");
        assert!(log.contains("stopped; all acknowledged writes are on disk"), "m{i} stopped cleanly:\n{log}");
    }
    // The kubelets stopped their pods and removed their bridges.
    let links = Command::new("ip").args(["-br", "link"]).output().expect("ip link");
    assert!(!text(&links.stdout).lines().any(|l| l.starts_with("keel2 ")), "keel2's bridge is left: {}", text(&links.stdout));
    for program in ["sleep 3600", "http.server 8080"] {
        let left = Command::new("pgrep").args(["-f", program]).output().expect("pgrep");
        assert!(text(&left.stdout).trim().is_empty(), "a pod's process ({program}) is left behind");
    }
    // Every process it started is gone: the ports are free again.
    for addr in ["127.0.0.1:6443", "127.0.0.1:6444", "127.0.0.2:6444", "127.0.0.1:2379", "127.0.0.3:2379"] {
        assert!(std::net::TcpStream::connect(addr).is_err(), "{addr} still answers");
    }
}

/// Kills `pids` with -9 when the test ends, whatever happened: the parts of a keel up killed
/// with -9 must not outlive a test that found they do.
struct Parts(Vec<u32>);

impl Drop for Parts {
    fn drop(&mut self) {
        for pid in self.0.iter().filter(|&&p| alive(p)) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

#[test]
fn a_keel_up_killed_with_sigkill_stops_its_parts() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let keel = bin("keel");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Command::new(&keel)
        .args(["up", "--no-control-plane", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keel up");
    let mut guard = Up(Some(up.id()));
    let record = dir.path().join("keel-up.state");
    let pids = eventually(Duration::from_secs(60), || {
        let state = std::fs::read_to_string(&record).ok()?;
        let pids: Option<Vec<u32>> = ["m1", "m2", "m3"].iter().map(|m| pid_of(&state, m)).collect();
        pids.filter(|p| p.len() == 3)
    })
    .expect("keel up never recorded its three members");
    let mut parts = Parts(pids.clone());
    // Serving first, so what follows is a running member's shutdown, not a start cut short.
    let eps = "127.0.0.1:2379,127.0.0.2:2379,127.0.0.3:2379";
    let healthy = eventually(Duration::from_secs(60), || {
        let o = Command::new("etcdctl").env("ETCDCTL_API", "3").args(["--endpoints", eps, "endpoint", "health"]).output().ok()?;
        o.status.success().then_some(())
    });
    assert!(healthy.is_some(), "the members never served");

    guard.0 = None;
    let _ = up.kill();
    let _ = up.wait();
    let gone = eventually(Duration::from_secs(30), || pids.iter().all(|&p| !alive(p)).then_some(()));
    assert!(
        gone.is_some(),
        "members still running 30 s after keel up was killed: {:?}",
        pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    parts.0.clear();
    // They got SIGTERM, not SIGKILL: each stopped as on Ctrl-C.
    for i in 1..=3 {
        let log = std::fs::read_to_string(dir.path().join(format!("m{i}.log"))).expect("member log");
        assert!(log.contains("stopped; all acknowledged writes are on disk"), "m{i} stopped cleanly:\n{log}");
    }
}
