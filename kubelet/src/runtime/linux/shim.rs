//! The container shim and init, two hidden subcommands of `keel-kubelet` itself, run before any
//! thread or tokio runtime exists (namespaces can only be entered by a single-threaded process):
//!
//! ```text
//!  kubelet ──spawn──> keel-kubelet __shim <run dir>      (host PID namespace, own session)
//!                        setns(pod netns); unshare(mount, PID, UTS, IPC); sethostname;
//!                        assemble the root (rootfs.rs); spawn:
//!                     └─> keel-kubelet __init <run dir>  (PID 1 of the new PID namespace)
//!                           mount /proc; join the cgroups; chroot; chdir; exec the command
//!  shim: writes state.json, copies stdout/stderr into the CRI log, waits, writes exit.json
//! ```
//!
//! Why a re-exec of ourselves and not `unshare(1)`: the shim must outlive the kubelet (so a
//! restarted kubelet adopts the container), record the exit code and OOM kill, and own the log
//! pipes for rotation; `nix` gives safe `setns`, `unshare`, `mount`, `chroot` and `sethostname`,
//! and `std::process::Command` does the one fork, so the crate keeps `unsafe_code = deny`.
//!
//! Invariants: the shim never returns before writing `exit.json` once it got as far as reading
//! its config; the container's process is the command itself (PID 1, as in any container: it
//! gets only the signals it handles, and SIGKILL).

use super::record::{Exit, ShimConfig, State, process_start, read_json, write_json};
use super::rootfs;
use crate::clock::{Clock, SystemClock};
use crate::logs::{MAX_LINE, Stream, Writer};
use nix::sched::{CloneFlags, setns, unshare};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn start_error(dir: &Path, clock: &dyn Clock, message: String) -> i32 {
    let exit = Exit { exit_code: 128, finished_at: clock.now(), reason: Some("StartError".into()), message: Some(message) };
    let _ = write_json(&dir.join("exit.json"), &exit);
    1
}

/// `keel-kubelet __shim <dir>`; returns the shim's own exit code.
pub fn shim_main(dir: &Path) -> i32 {
    let clock = SystemClock;
    let Some(cfg) = read_json::<ShimConfig>(&dir.join("config.json")) else {
        return start_error(dir, &clock, "the run's config.json is missing or unreadable".into());
    };
    let _ = nix::unistd::setsid();
    if let Some(ns) = &cfg.netns {
        let joined =
            std::fs::File::open(ns).map_err(|e| e.to_string()).and_then(|f| setns(f, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string()));
        if let Err(e) = joined {
            return start_error(dir, &clock, format!("join the pod network namespace {}: {e}", ns.display()));
        }
    }
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if let Err(e) = unshare(flags) {
        return start_error(dir, &clock, format!("unshare mount, PID, UTS and IPC namespaces: {e}"));
    }
    if let Err(e) = nix::unistd::sethostname(&cfg.container.hostname) {
        return start_error(dir, &clock, format!("sethostname: {e}"));
    }
    if let Err(e) = rootfs::build(&cfg) {
        return start_error(dir, &clock, e);
    }
    let mut log = match Writer::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files) {
        Ok(w) => w,
        Err(e) => return start_error(dir, &clock, format!("open the log {}: {e}", cfg.log_path.display())),
    };
    let _ = std::fs::remove_file(dir.join("init-error"));
    let spawned = Command::new("/proc/self/exe")
        .arg("__init")
        .arg(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return start_error(dir, &clock, format!("start the container's init: {e}")),
    };
    let pid = child.id() as i32;
    let state = State { shim_pid: std::process::id() as i32, pid, pid_start: process_start(pid).unwrap_or(0), started_at: clock.now() };
    let _ = write_json(&dir.join("state.json"), &state);

    // No threads here: after unshare(CLONE_NEWPID) the kernel refuses to create them, so both
    // pipes are read in one poll loop.
    let mut pipes: Vec<Pipe> = Vec::new();
    if let Some(p) = child.stdout.take() {
        let fd: std::os::fd::OwnedFd = p.into();
        if let Ok(dup) = fd.try_clone() {
            pipes.push((Stream::Stdout, Box::new(std::fs::File::from(dup)), fd, Vec::new()));
        }
    }
    if let Some(p) = child.stderr.take() {
        let fd: std::os::fd::OwnedFd = p.into();
        if let Ok(dup) = fd.try_clone() {
            pipes.push((Stream::Stderr, Box::new(std::fs::File::from(dup)), fd, Vec::new()));
        }
    }
    copy_logs(&mut pipes, &mut log, &clock);
    let status = child.wait();
    let finished_at = clock.now();
    let exit_code = match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9)),
        Err(_) => 255,
    };
    let init_error = std::fs::read_to_string(dir.join("init-error")).unwrap_or_default();
    let oom =
        cfg.oom_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).is_some_and(|t| {
            t.lines().any(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > 0))
        });
    let (reason, message) = if !init_error.trim().is_empty() {
        (Some("StartError".to_string()), Some(init_error.trim().to_string()))
    } else if oom {
        (Some("OOMKilled".to_string()), None)
    } else {
        (None, None)
    };
    let exit_code = if reason.as_deref() == Some("StartError") { 128 } else { exit_code };
    let _ = write_json(&dir.join("exit.json"), &Exit { exit_code, finished_at, reason, message });
    0
}

/// One output pipe of the container: its stream, a reader, the fd to poll, the line so far.
type Pipe = (Stream, Box<dyn Read>, std::os::fd::OwnedFd, Vec<u8>);

/// Copies the pipes into the log until both are closed, as lines of at most [`MAX_LINE`]
/// bytes (longer ones become partial lines).
fn copy_logs(pipes: &mut Vec<Pipe>, log: &mut Writer, clock: &dyn Clock) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; 8192];
    while !pipes.is_empty() {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = pipes.iter().map(|(_, _, fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        };
        let mut closed = Vec::new();
        for (i, (stream, reader, _, line)) in pipes.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => {
                    closed.push(i);
                    if !line.is_empty() {
                        let _ = log.line(clock.now(), *stream, false, line);
                        line.clear();
                    }
                    continue;
                }
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    let _ = log.line(clock.now(), *stream, false, line);
                    line.clear();
                } else {
                    line.push(b);
                    if line.len() >= MAX_LINE {
                        let _ = log.line(clock.now(), *stream, true, line);
                        line.clear();
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            pipes.remove(i);
        }
    }
}

/// Looks `program` up as `execvp` would, inside `root`; the path inside the container.
fn resolve(root: &Path, program: &str, path_var: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(root.join(p.strip_prefix("/").unwrap_or(p)))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return (p.is_absolute() && executable(&p)).then_some(p);
    }
    path_var.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(program)).find(|p| executable(p))
}

/// `keel-kubelet __init <dir>`: PID 1 of the container. Returns only on failure (the exit code).
pub fn init_main(dir: &Path) -> i32 {
    let fail = |msg: String| -> i32 {
        let _ = std::fs::write(dir.join("init-error"), &msg);
        eprintln!("{msg}");
        128
    };
    let Some(cfg) = read_json::<ShimConfig>(&dir.join("config.json")) else { return fail("config.json unreadable".into()) };
    let root = &cfg.rootfs;
    let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NOEXEC | nix::mount::MsFlags::MS_NODEV;
    if let Err(e) = nix::mount::mount(Some("proc"), &root.join("proc"), Some("proc"), flags, None::<&str>) {
        return fail(format!("mount /proc: {e}"));
    }
    for procs in &cfg.cgroup_procs {
        if let Err(e) = std::fs::write(procs, "0") {
            return fail(format!("join cgroup {}: {e}", procs.display()));
        }
    }
    let c = &cfg.container;
    let Some(program) = c.argv.first() else { return fail("no command".into()) };
    let path_var = c.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_else(|| cfg.default_path.clone());
    let Some(resolved) = resolve(root, program, &path_var) else {
        return fail(format!("exec: \"{program}\": executable file not found in $PATH"));
    };
    // The error file must be opened before chroot: afterwards the run's folder is out of sight.
    let mut err_file = match std::fs::File::create(dir.join("init-error")) {
        Ok(f) => f,
        Err(e) => return fail(format!("create init-error: {e}")),
    };
    let mut late_fail = |msg: String| -> i32 {
        use std::io::Write;
        let _ = err_file.write_all(msg.as_bytes());
        eprintln!("{msg}");
        128
    };
    if let Err(e) = nix::unistd::chroot(root) {
        return fail(format!("chroot: {e}"));
    }
    let cwd = c.working_dir.clone().unwrap_or_else(|| "/".into());
    if let Err(e) = std::env::set_current_dir(&cwd) {
        return late_fail(format!("chdir to cwd ({cwd:?}) set in config.json failed: {e}"));
    }
    let mut cmd = Command::new(&resolved);
    cmd.arg0(program).args(&c.argv[1..]).env_clear();
    let has_path = c.env.iter().any(|(k, _)| k == "PATH");
    if !has_path {
        cmd.env("PATH", &cfg.default_path);
    }
    cmd.env("HOSTNAME", &c.hostname);
    if !c.env.iter().any(|(k, _)| k == "HOME") {
        cmd.env("HOME", "/root");
    }
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let e = cmd.exec();
    late_fail(format!("exec {}: {e}", resolved.display()))
}
