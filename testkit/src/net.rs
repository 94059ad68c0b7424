//! Free loopback addresses. Each test process picks its own random 127.x.y.z address, so tests
//! running side by side never collide on a port, and members of one cluster share it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// A loopback address of this process's own (127.x.y.z, derived from the PID and a random
/// hasher seed), with `n` ports free on it at the time of the call.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ip = own_ip();
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind((ip, 0)).expect("bind an ephemeral port")).collect();
    held.iter().map(|l| l.local_addr().expect("local addr")).collect()
}

/// This process's loopback address (stable for the life of the process).
pub fn own_ip() -> Ipv4Addr {
    use std::hash::{BuildHasher, Hasher};
    static IP: std::sync::OnceLock<Ipv4Addr> = std::sync::OnceLock::new();
    *IP.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let r = h.finish();
        Ipv4Addr::new(127, 1 + (r % 254) as u8, (r >> 8) as u8, 1 + ((r >> 16) % 254) as u8)
    })
}

/// Waits up to 60 s (a loaded machine starts debug binaries slowly) until `addr` accepts connections; panics with `log`'s contents if not.
pub fn wait_port(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}: {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
}
