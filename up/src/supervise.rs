//! Running the plan: each process started from its [`Spec`], its output appended to
//! `<data-dir>/<name>.log`; one that exits on its own is started again after a back-off
//! (1 s doubling to 30 s, reset once it has run for a minute), as a service manager would, so a
//! `kill -9` of any part is survived by the cluster and mended by `keel up`. Stopping sends
//! SIGTERM to the components first, then the apiservers, then the members (each a client of the
//! next), and SIGKILL to whatever is left after 15 s.

use crate::plan::{Role, Spec};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const RESET_AFTER: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(15);
// Kubelets stop their pods first, each with its own grace period (30 s unless the pod says
// otherwise; a container that is PID 1 of its namespace ignores SIGTERM unless it handles it).
const KUBELET_STOP_GRACE: Duration = Duration::from_secs(40);

/// Makes the child get SIGTERM when keel up dies, however it dies (`kill -9` included), so its
/// parts stop as on Ctrl-C instead of running on unsupervised, holding the cluster's ports.
/// Linux sends the signal when the *thread* that spawned the child ends: keel up spawns from its
/// main thread (the `#[tokio::main]` loop), which lives as long as the process.
#[allow(unsafe_code)] // pre_exec: the one way to run prctl in the child between fork and exec.
fn stop_with_keel(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let keel = rustix::process::getpid();
    // SAFETY: runs in the forked child before exec; prctl and getppid are plain system calls,
    // async-signal-safe, and nothing is allocated or locked.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
            // keel up died between the fork and the prctl: the signal will never come.
            if rustix::process::getppid() != Some(keel) {
                return Err(std::io::Error::other("keel up exited while starting it"));
            }
            Ok(())
        });
    }
}

/// One supervised process.
pub struct Running {
    /// What it is.
    pub spec: Spec,
    program: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    // When to start it again after it exited (None while it runs).
    restart_at: Option<Instant>,
    /// How many times it was started again.
    pub restarts: u32,
}

impl Running {
    /// Starts `spec` from the binary next to `keel` in `bin_dir`.
    pub fn start(spec: Spec, bin_dir: &Path, data_dir: &Path) -> std::io::Result<Running> {
        let program = bin_dir.join(spec.role.program());
        let log = data_dir.join(format!("{}.log", spec.name));
        let mut r =
            Running { spec, program, log, child: None, started: Instant::now(), backoff: BACKOFF_FIRST, restart_at: None, restarts: 0 };
        r.spawn()?;
        Ok(r)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(&self.program);
        command.args(&self.spec.args).stdin(Stdio::null()).stdout(out).stderr(err);
        stop_with_keel(&mut command);
        let child = command.spawn().map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.program.display())))?;
        self.child = Some(child);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    /// The PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Notices an exit and schedules the restart; starts it again when the back-off is over.
    /// Returns a line to print when something happened.
    pub fn tend(&mut self, now: Instant) -> Option<String> {
        if let Some(c) = self.child.as_mut() {
            let Ok(Some(status)) = c.try_wait() else { return None };
            self.child = None;
            if now.duration_since(self.started) >= RESET_AFTER {
                self.backoff = BACKOFF_FIRST;
            }
            self.restart_at = Some(now + self.backoff);
            let line = format!(
                "keel: {} exited ({status}); starting it again in {:?} (log: {})",
                self.spec.name,
                self.backoff,
                self.log.display()
            );
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            return Some(line);
        }
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restarts += 1;
            return Some(match self.spawn() {
                Ok(()) => format!("keel: {} started again (pid {})", self.spec.name, self.pid().unwrap_or(0)),
                Err(e) => {
                    self.restart_at = Some(now + self.backoff);
                    format!("keel: {} could not be started again: {e}", self.spec.name)
                }
            });
        }
        None
    }

    fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = self.pid().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

/// Stops everything: SIGTERM by role (components, then apiservers, then members), waiting for
/// each group up to 15 s (kubelets 40 s: their pods' grace) before SIGKILL; then runs
/// `keel-kubelet reset` for every real kubelet, so a killed one leaves no container, namespace,
/// bridge or cgroup behind.
pub async fn stop_all(procs: &mut [Running]) {
    let groups: [&[Role]; 3] = [&[Role::Kubelet, Role::Scheduler, Role::ControllerManager], &[Role::Apiserver], &[Role::Store]];
    for roles in groups {
        let in_group = |r: &Running| roles.contains(&r.spec.role);
        for p in procs.iter_mut().filter(|p| in_group(p)) {
            p.restart_at = None;
            p.signal(rustix::process::Signal::TERM);
        }
        let grace = if roles.contains(&Role::Kubelet) { KUBELET_STOP_GRACE } else { STOP_GRACE };
        let deadline = Instant::now() + grace;
        loop {
            let mut left = 0;
            for p in procs.iter_mut().filter(|p| in_group(p)) {
                if let Some(c) = p.child.as_mut() {
                    match c.try_wait() {
                        Ok(None) => left += 1,
                        _ => p.child = None,
                    }
                }
            }
            if left == 0 {
                break;
            }
            if Instant::now() > deadline {
                for p in procs.iter_mut().filter(|p| in_group(p)) {
                    if let Some(mut c) = p.child.take() {
                        say!("keel: {} did not stop; killing it", p.spec.name);
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if roles.contains(&Role::Kubelet) {
            for p in procs.iter().filter(|p| in_group(p)) {
                let Some(args) = crate::plan::kubelet_reset(&p.spec) else { continue };
                match Command::new(&p.program).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).status() {
                    Ok(s) if s.success() => {}
                    other => say!("keel: keel-kubelet reset for {} failed ({other:?}); see {}", p.spec.name, p.log.display()),
                }
            }
        }
    }
}
