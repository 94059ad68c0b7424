//! A `keel up` cluster started by the harness: the `keel` binary from the same target folder,
//! its data and logs in a folder of ours, its parts read from `keel-up.state` (name, program,
//! address, PID — rewritten by keel up whenever it restarts a part). The harness signals parts
//! by PID; keel up's supervisor starts killed ones again. Stopping sends SIGINT to keel up
//! (which stops every part and resets the kubelets) and waits; whatever is left after that is
//! killed by the PIDs the state file named. Dropping a [`KeelUp`] stops it the same way.
//!
//! `keel up` always uses 127.0.0.1..N and 127.0.0.1:6443 (request faults-2), so a second
//! cluster on the machine would collide: [`KeelUp::start`] refuses to start when those
//! addresses answer, and takes an exclusive lock on `/tmp/keel-faults.lock` first so two runs
//! of the harness wait for each other.

use super::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// One process of the cluster, as `keel-up.state` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `m1`, `apiserver-2`, `scheduler-3`, `kubelet-1`, …
    pub name: String,
    /// The binary (`keel-store`, …).
    pub program: String,
    /// Where it answers.
    pub addr: String,
    /// Its PID (0 while keel up waits to start it again).
    pub pid: u32,
}

/// Parses `keel-up.state`; lines that are cut short (a read racing keel up's write) are left
/// out.
pub fn parse_state(text: &str) -> Vec<Part> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, program, addr, pid] = f[..] else { return None };
            Some(Part { name: name.into(), program: program.into(), addr: addr.into(), pid: pid.parse().ok()? })
        })
        .collect()
}

/// Whether `pid` is a live process (not a zombie) running `program` (comm is cut at 15 bytes).
pub fn alive(pid: u32, program: &str) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some((comm, rest)) = stat.split_once(") ") else { return false };
    let comm = comm.split_once(" (").map_or("", |(_, c)| c);
    let state = rest.chars().next().unwrap_or('X');
    !matches!(state, 'Z' | 'X') && program.starts_with(comm)
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: rustix::process::Signal) -> bool {
    rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
}

/// The folder holding the running executable (`target/debug`, also for test binaries in
/// `target/debug/deps`).
pub fn bin_dir() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    let mut dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// How to start the cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// Store members (and one of every other part per member address).
    pub members: usize,
    /// Where data and logs go (a temporary folder when None, removed after a clean run).
    pub data_dir: Option<PathBuf>,
    /// `keel up --simulated-nodes N`: one kubelet process (`kubelet-simulated` on 127.0.0.1)
    /// hosting N simulated nodes `keel-sim-0` … (no containers run). None: one real kubelet
    /// per member address (`keel-i`, bridges, cgroups and containers).
    pub simulated_nodes: Option<usize>,
}

/// The name keel up gives the one kubelet of `--simulated-nodes`.
pub const SIMULATED_KUBELET: &str = "kubelet-simulated";

/// A running `keel up`.
pub struct KeelUp {
    child: Option<Child>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    _lock: std::fs::File,
    /// Store members.
    pub members: usize,
    /// Simulated nodes (see [`Options::simulated_nodes`]).
    pub simulated_nodes: Option<usize>,
}

fn listening(addr: &str) -> bool {
    addr.parse().is_ok_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

impl KeelUp {
    /// Starts `keel up` and waits until every planned part has a PID and the apiserver
    /// answers through the balancer (the kubeconfig exists).
    pub async fn start(o: &Options) -> Result<KeelUp> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/keel-faults.lock")
            .map_err(Error::io("opening /tmp/keel-faults.lock"))?;
        let lock = tokio::task::spawn_blocking(move || rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map(|()| lock))
            .await
            .map_err(|e| Error::Timeout(format!("lock task: {e}")))?
            .map_err(|e| Error::io("locking /tmp/keel-faults.lock")(e.into()))?;
        let mut busy = vec!["127.0.0.1:6443".to_string()];
        busy.extend((1..=o.members).map(|i| format!("127.0.0.{i}:2379")));
        if let Some(b) = busy.iter().find(|a| listening(a)) {
            return Err(Error::Busy(b.clone()));
        }
        let (dir, temp) = match &o.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new().prefix("keel-faults-").tempdir().map_err(Error::io("creating a data folder"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let log = std::fs::File::create(dir.join("keel-up.log")).map_err(Error::io("creating keel-up.log"))?;
        let err = log.try_clone().map_err(Error::io("keel-up.log"))?;
        let keel = bin_dir().join("keel");
        let mut command = Command::new(&keel);
        command.args(["up", "--members", &o.members.to_string(), "--data-dir"]).arg(&dir);
        if let Some(n) = o.simulated_nodes {
            command.args(["--simulated-nodes", &n.to_string()]);
        }
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(Error::io(format!("starting {}", keel.display())))?;
        let up = KeelUp { child: Some(child), dir, _temp: temp, _lock: lock, members: o.members, simulated_nodes: o.simulated_nodes };
        let expected = up.expected_parts();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let parts = up.parts();
            let ready = up.kubeconfig().exists() && expected.iter().all(|n| parts.iter().any(|p| &p.name == n && alive(p.pid, &p.program)));
            if ready {
                return Ok(up);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("keel up did not start {expected:?}; see {}", up.dir.join("keel-up.log").display())));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The parts keel up starts: its plan, minus binaries that are not built.
    pub fn expected_parts(&self) -> Vec<String> {
        let bins = bin_dir();
        let mut out = Vec::new();
        for (prefix, program) in [
            ("m", "keel-store"),
            ("apiserver-", "keel-apiserver"),
            ("scheduler-", "keel-scheduler"),
            ("controller-manager-", "keel-controller-manager"),
            ("kubelet-", "keel-kubelet"),
        ] {
            if !bins.join(program).exists() {
                continue;
            }
            if program == "keel-kubelet" && self.simulated_nodes.is_some() {
                out.push(SIMULATED_KUBELET.to_string());
            } else {
                out.extend((1..=self.members).map(|i| format!("{prefix}{i}")));
            }
        }
        out
    }

    /// The kubelet process that runs node `i` (1-based): `kubelet-i`, or the one simulated
    /// kubelet.
    pub fn kubelet_part(&self, i: usize) -> String {
        if self.simulated_nodes.is_some() { SIMULATED_KUBELET.to_string() } else { format!("kubelet-{i}") }
    }

    /// The loopback address index (127.0.0.x) kubelet part of node `i` serves on.
    pub fn kubelet_address(&self, i: usize) -> usize {
        if self.simulated_nodes.is_some() { 1 } else { i }
    }

    /// The nodes the kubelets register.
    pub fn nodes(&self) -> usize {
        self.simulated_nodes.unwrap_or(self.members)
    }

    /// Whether `program` is built (and so part of the cluster).
    pub fn has(&self, program: &str) -> bool {
        bin_dir().join(program).exists()
    }

    /// The parts as `keel-up.state` names them now.
    pub fn parts(&self) -> Vec<Part> {
        std::fs::read_to_string(self.dir.join("keel-up.state")).map(|s| parse_state(&s)).unwrap_or_default()
    }

    /// The live PID of part `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.parts().into_iter().find(|p| p.name == name).filter(|p| alive(p.pid, &p.program)).map(|p| p.pid)
    }

    /// Whether every expected part runs.
    pub fn all_running(&self) -> bool {
        let parts = self.parts();
        self.expected_parts().iter().all(|n| parts.iter().any(|p| &p.name == n && alive(p.pid, &p.program)))
    }

    /// Waits up to `limit` for every part to run (keel up's back-off reaches 30 s).
    pub async fn wait_running(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.all_running() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    }

    /// The admin kubeconfig (its server is the balancer).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What part `name` logged so far (all its runs).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The store members' client endpoints.
    pub fn endpoints(&self) -> Vec<String> {
        (1..=self.members).map(|i| format!("http://127.0.0.{i}:2379")).collect()
    }

    /// Keeps the data folder after the cluster stops (for a failed run's logs).
    pub fn keep(&mut self) -> PathBuf {
        if let Some(t) = self._temp.take() {
            let _ = t.keep();
        }
        self.dir.clone()
    }

    /// SIGINT to keel up, then waits up to 120 s for it to stop every part (kubelets get 40 s
    /// for their pods); then SIGKILL to keel up and to every part still alive, by PID.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let parts = self.parts();
        signal(child.id(), rustix::process::Signal::INT);
        let mut waited = Duration::ZERO;
        while waited < Duration::from_secs(120) {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            waited += Duration::from_millis(100);
        }
        let _ = child.kill();
        let _ = child.wait();
        for p in parts {
            if alive(p.pid, &p.program) {
                signal(p.pid, rustix::process::Signal::KILL);
            }
        }
    }
}

impl Drop for KeelUp {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lines_are_read_and_cut_lines_left_out() {
        let s = "m1\tkeel-store\t127.0.0.1:2379\t100\napiserver-1\tkeel-apiserver\t127.0.0.1:6444\t0\nkubelet-1\tkeel-kub";
        let parts = parse_state(s);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], Part { name: "m1".into(), program: "keel-store".into(), addr: "127.0.0.1:2379".into(), pid: 100 });
        assert_eq!(parts[1].pid, 0);
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        let me = std::process::id();
        let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap_or_default();
        assert!(alive(me, comm.trim()));
        assert!(!alive(me, "something-else"));
        assert!(!alive(0, "keel-store"));
    }
}
