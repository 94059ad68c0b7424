//! One started process: its command line (so it can be restarted the same way), its log file,
//! and signals by PID. Dropping a [`Proc`] kills it (SIGKILL) and reaps it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A process a test started.
pub struct Proc {
    /// A short name for messages (`store-1`, `apiserver-2`, `scheduler-a`).
    pub name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `program` with `args`; stdout and stderr go to `log` (appended, so restarts keep
    /// the earlier output).
    pub fn start(name: &str, program: impl Into<PathBuf>, args: Vec<OsString>, log: &Path) -> Proc {
        Proc::start_env(name, program, args, Vec::new(), log)
    }

    /// [`Proc::start`] with extra environment variables.
    pub fn start_env(name: &str, program: impl Into<PathBuf>, args: Vec<OsString>, envs: Vec<(OsString, OsString)>, log: &Path) -> Proc {
        let mut p = Proc { name: name.to_string(), program: program.into(), args, envs, log: log.to_path_buf(), child: None };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the process log");
        let err = log.try_clone().expect("clone the log handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    /// The PID of the running process (0 when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends `sig` (`-9`, `-STOP`, `-CONT`, `-TERM`, `-INT`) by PID.
    pub fn signal(&self, sig: &str) {
        if self.pid() != 0 {
            let _ = Command::new("kill").args([sig, &self.pid().to_string()]).status();
        }
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for it to exit (SIGKILL after that). Its exit status.
    pub fn terminate(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        self.signal("-TERM");
        let deadline = std::time::Instant::now() + limit;
        let mut c = self.child.take()?;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
                _ => {
                    let _ = c.kill();
                    return c.wait().ok();
                }
            }
        }
    }

    /// Starts it again with the same command line (after [`Proc::kill9`] or an exit).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// What it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
