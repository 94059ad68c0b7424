//! The partition machinery on real sockets: a member cut off by [`Net`] cannot reach its peer
//! port and can again once healed, and every rule and cgroup folder of a run is gone after its
//! guard drops — also when the code holding it panics.

use keel_faults::real::net::{CGROUP2, Net};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

fn rules_tagged(tag: &str) -> usize {
    let out = std::process::Command::new("iptables").args(["-w", "5", "-S", "OUTPUT"]).output().expect("iptables -S");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.split_whitespace().any(|w| w == tag)).count()
}

/// Whether a TCP connection from `from` (any port) to `to` is set up within a second.
fn reach(from: &str, to: SocketAddr) -> bool {
    let src: SocketAddr = format!("{from}:0").parse().expect("source");
    let (tx, rx) = std::sync::mpsc::channel();
    // A blocking connect whose SYN is dropped retries for minutes: give up on it after 1 s
    // (the thread ends with the test process).
    std::thread::spawn(move || {
        let fd = rustix::net::socket(rustix::net::AddressFamily::INET, rustix::net::SocketType::STREAM, None).expect("socket");
        rustix::net::bind(&fd, &src).expect("bind the source");
        let _ = tx.send(rustix::net::connect(&fd, &to).is_ok());
    });
    rx.recv_timeout(Duration::from_secs(1)).unwrap_or(false)
}

#[test]
fn a_member_cut_off_cannot_reach_its_peers_until_healed_and_the_guard_leaves_nothing() {
    assert!(rustix::process::geteuid().is_root(), "needs root (iptables)");
    // Members 7 and 8: addresses no 3- or 5-member keel up uses.
    let Ok(peer) = TcpListener::bind("127.0.0.7:2380") else { panic!("127.0.0.7:2380 is taken") };
    let to = peer.local_addr().expect("addr");
    let Ok(client_port) = TcpListener::bind("127.0.0.7:2379") else { panic!("127.0.0.7:2379 is taken") };
    let client = client_port.local_addr().expect("addr");
    assert!(reach("127.0.0.8", to), "reachable before the partition");
    let tag = format!("keel-faults-test-{}", std::process::id());
    {
        let mut net = Net::new(&tag).expect("net");
        net.isolate_member(7, 8).expect("isolate m7");
        assert!(rules_tagged(&tag) >= 4);
        assert!(!reach("127.0.0.8", to), "m8 reaches m7's peer port through the partition");
        let listed = std::process::Command::new("iptables").args(["-S", "OUTPUT"]).output().expect("iptables");
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(reach("127.0.0.8", client), "the partition cuts the peer port only: {listed}");
        assert!(reach("127.0.0.20", to), "the partition cuts members 1..=8 only: {listed}");
        net.heal().expect("heal");
        assert_eq!(rules_tagged(&tag), 0);
        assert!(reach("127.0.0.8", to), "reachable after healing");
        net.isolate_member(7, 8).expect("isolate again");
    }
    assert_eq!(rules_tagged(&tag), 0, "dropping the guard removes the rules");
    assert!(!std::path::Path::new(CGROUP2).join(&tag).exists(), "and the cgroup folder");
}

#[test]
fn the_guard_removes_the_rules_when_the_run_panics() {
    assert!(rustix::process::geteuid().is_root(), "needs root (iptables)");
    let tag = format!("keel-faults-panic-{}", std::process::id());
    let t = tag.clone();
    let crashed = std::thread::spawn(move || {
        let mut net = Net::new(&t).expect("net");
        net.isolate_member(7, 9).expect("isolate");
        assert!(rules_tagged(&t) >= 4);
        panic!("a run crashes mid-partition");
    })
    .join();
    assert!(crashed.is_err());
    assert_eq!(rules_tagged(&tag), 0);
}
