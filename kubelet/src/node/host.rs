//! What the node reads about its host: capacity (cpu count, memory, root-dir file system size)
//! and the eviction signals `memory.available` (MemAvailable from /proc/meminfo),
//! `nodefs.available` (statvfs of the root dir) and `pid.available` (pid_max minus live pids).
//! Simulated nodes measure memory as their capacity minus their pods' use instead (see
//! `node::pods`).

use std::path::Path;

/// The host's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory: u64,
    /// The root dir's file system in bytes.
    pub ephemeral_storage: u64,
    /// `--max-pods`.
    pub pods: u64,
}

/// The eviction signals, each `None` when it cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    /// Bytes of memory available.
    pub memory_available: Option<u64>,
    /// Bytes free on the root dir's file system.
    pub nodefs_available: Option<u64>,
    /// PIDs left.
    pub pid_available: Option<u64>,
}

fn meminfo(key: &str) -> Option<u64> {
    let t = std::fs::read_to_string("/proc/meminfo").ok()?;
    t.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map(|kb| kb * 1024)
}

/// The host's capacity, with `max_pods`.
pub fn capacity(root_dir: &Path, max_pods: u64) -> Capacity {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let storage = nix::sys::statvfs::statvfs(root_dir).map(|s| s.blocks() * s.fragment_size()).unwrap_or(0);
    Capacity { cpu_millis: cpus * 1000, memory: meminfo("MemTotal:").unwrap_or(0), ephemeral_storage: storage, pods: max_pods }
}

/// The eviction signals now.
pub fn signals(root_dir: &Path) -> Signals {
    let nodefs = nix::sys::statvfs::statvfs(root_dir).ok().map(|s| s.blocks_available() * s.fragment_size());
    let pid_max: Option<u64> = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok());
    let live = std::fs::read_dir("/proc")
        .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count() as u64)
        .ok();
    let pid_available = match (pid_max, live) {
        (Some(m), Some(l)) => Some(m.saturating_sub(l)),
        _ => None,
    };
    Signals { memory_available: meminfo("MemAvailable:"), nodefs_available: nodefs, pid_available }
}

/// Identity of the host for `status.nodeInfo`.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `/etc/machine-id`, or empty.
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The kernel release.
pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// PRETTY_NAME from /etc/os-release.
pub fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into())
}
