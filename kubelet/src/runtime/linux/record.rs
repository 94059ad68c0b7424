//! What the Linux runtime keeps on disk per container run, in
//! `<root-dir>/pods/<uid>/containers/<name>_<attempt>/`: `config.json` (written by the kubelet
//! before the shim starts), `state.json` (written by the shim once the container's process runs:
//! the pids and the process start time, so a pid reused by another process is not mistaken for
//! the container), `exit.json` (written by the shim when the process ends). A kubelet that starts
//! again reads these and adopts what runs.
//!
//! Invariant: each file is written to a temporary name and renamed, so a reader sees all or
//! nothing of it.

use crate::runtime::ContainerConfig;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The shim's instructions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The container.
    pub container: ContainerConfig,
    /// The run's folder.
    pub dir: PathBuf,
    /// The pod's network namespace (`None`: the host's network).
    pub netns: Option<PathBuf>,
    /// Where the container's root is assembled.
    pub rootfs: PathBuf,
    /// The live log file.
    pub log_path: PathBuf,
    /// Rotate the log past this many bytes.
    pub log_max_size: u64,
    /// Keep this many log files.
    pub log_max_files: usize,
    /// `cgroup.procs` files the container's process joins.
    pub cgroup_procs: Vec<PathBuf>,
    /// The file whose `oom_kill` count tells an OOM kill (memory.oom_control / memory.events).
    pub oom_file: Option<PathBuf>,
    /// Host folders hidden from the container (the kubelet's root dir).
    pub mask: Vec<PathBuf>,
    /// `PATH` when the pod sets none (the kubelet's own).
    pub default_path: String,
}

/// Written by the shim when the process runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The shim's pid.
    pub shim_pid: i32,
    /// The container's first process (pid 1 inside), as the host sees it.
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub pid_start: u64,
    /// When it started.
    pub started_at: Timestamp,
}

/// Written by the shim when the process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exit {
    /// Exit code; 128 + signal when a signal ended it.
    pub exit_code: i32,
    /// When it ended.
    pub finished_at: Timestamp,
    /// `OOMKilled`, `StartError`, or none.
    pub reason: Option<String>,
    /// Why it could not start.
    pub message: Option<String>,
}

/// Writes `value` as JSON to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// Reads JSON from `path`; `None` when absent or unreadable.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The start time (clock ticks since boot) of process `pid`, if it exists and is not a zombie.
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process recorded in `s` still runs (same pid, same start time).
pub fn alive(s: &State) -> bool {
    process_start(s.pid) == Some(s.pid_start)
}

/// Whether the shim recorded in `s` still runs (any process with that pid: the shim's own start
/// time is not recorded, so a reused pid would keep this true; it is used only to wait for the
/// exit record after the container process ended).
pub fn shim_alive(s: &State) -> bool {
    process_start(s.shim_pid).is_some()
}
