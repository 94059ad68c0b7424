//! The Linux runtime: containers as host programs in their own PID, mount, UTS and IPC
//! namespaces, a network namespace per pod on a bridge, cgroup limits, logs to files. See
//! [`shim`] for how a container starts, [`rootfs`] for what it sees, [`network`] for the pod
//! network and [`record`] for what is kept on disk so a restarted kubelet adopts running
//! containers instead of starting them twice.
//!
//! No image is pulled: `image` is only recorded; `command`/`args` name a host program.

pub mod network;
pub mod probe;
pub mod record;
pub mod rootfs;
pub mod shim;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::pod::probe::{Outcome, ProbeKind};
use crate::runtime::cgroup::{Cgroups, Hierarchy, Limits};
use crate::runtime::ipam::{Cidr, Ipam};
use crate::runtime::*;
use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use record::{Exit, ShimConfig, State, read_json, write_json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

/// Settings of the Linux runtime (from flags).
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// `--root-dir`.
    pub root_dir: PathBuf,
    /// `--bridge-name`.
    pub bridge: String,
    /// `--pod-cidr`; without it pods share the host's network.
    pub pod_cidr: Option<Cidr>,
    /// The node's address (hostNetwork pods' IP).
    pub node_ip: String,
    /// Where cgroups are mounted (`/sys/fs/cgroup`).
    pub cgroup_base: PathBuf,
    /// `--cgroup-root`: Keel's folder under each controller.
    pub cgroup_root: String,
    /// This binary (the shim is a subcommand of it).
    pub self_exe: PathBuf,
    /// `--container-log-max-size` in bytes.
    pub log_max_size: u64,
    /// `--container-log-max-files`.
    pub log_max_files: usize,
    /// PATH for containers that set none.
    pub default_path: String,
    /// `--pod-max-pids` per container.
    pub pids_limit: Option<u64>,
}

/// The runtime.
pub struct LinuxRuntime {
    cfg: LinuxConfig,
    cgroups: Cgroups,
    ipam: Option<Ipam>,
    clock: Arc<dyn Clock>,
    degraded: Vec<String>,
}

/// Splits a container id into (pod uid, name, attempt).
pub fn parse_id(id: &ContainerId) -> Option<(String, String, u32)> {
    let mut it = id.0.rsplitn(3, '_');
    let attempt = it.next()?.parse().ok()?;
    let name = it.next()?.to_string();
    let uid = it.next()?.to_string();
    Some((uid, name, attempt))
}

impl LinuxRuntime {
    /// Checks the host, creates the bridge, and says what is missing.
    pub async fn new(cfg: LinuxConfig, clock: Arc<dyn Clock>) -> Result<LinuxRuntime> {
        let (cgroups, mut degraded) = Cgroups::detect(&cfg.cgroup_base, &cfg.cgroup_root);
        for d in ["pods", "logs"] {
            let p = cfg.root_dir.join(d);
            std::fs::create_dir_all(&p).map_err(Error::io(&p))?;
        }
        let mut ipam = None;
        match cfg.pod_cidr {
            None => degraded.push("no --pod-cidr: pods share the host's network namespace and address".into()),
            Some(cidr) => match network::ensure_bridge(&cfg.bridge, cidr).await {
                Ok(()) => ipam = Some(Ipam::new(cidr, Some(cfg.root_dir.join("ipam")))?),
                Err(e) => degraded.push(format!("no pod network ({e}): pods share the host's network namespace and address")),
            },
        }
        Ok(LinuxRuntime { cfg, cgroups, ipam, clock, degraded })
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.root_dir.join("pods").join(uid)
    }

    fn run_dir(&self, uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.pod_dir(uid).join("containers").join(format!("{name}_{attempt}"))
    }

    fn run_dir_of(&self, id: &ContainerId) -> Result<(PathBuf, String, String)> {
        let (uid, name, attempt) = parse_id(id).ok_or_else(|| Error::Runtime(format!("bad container id {id}")))?;
        Ok((self.run_dir(&uid, &name, attempt), uid, format!("{name}_{attempt}")))
    }

    /// The log file of a pod's logs folder, as kubelet lays out /var/log/pods.
    pub fn log_file(root: &Path, pod: &PodRef, name: &str, attempt: u32) -> PathBuf {
        root.join("logs").join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid)).join(name).join(format!("{attempt}.log"))
    }

    fn record(&self, dir: &Path) -> Option<ContainerRecord> {
        let cfg: ShimConfig = read_json(&dir.join("config.json"))?;
        let c = &cfg.container;
        let state: Option<State> = read_json(&dir.join("state.json"));
        let exit: Option<Exit> = read_json(&dir.join("exit.json"));
        let started_at = state.as_ref().map(|s| s.started_at).or(exit.as_ref().map(|e| e.finished_at)).unwrap_or_else(|| self.clock.now());
        let st = match (exit, &state) {
            (Some(e), _) => {
                ContainerState::Exited { finished_at: e.finished_at, exit_code: e.exit_code, reason: e.reason, message: e.message }
            }
            (None, Some(s)) if record::alive(s) => ContainerState::Running,
            (None, Some(s)) if record::shim_alive(s) => {
                // The process ended a moment ago; the shim is writing its exit record.
                ContainerState::Running
            }
            (None, _) => ContainerState::Exited {
                finished_at: self.clock.now(),
                exit_code: 255,
                reason: Some("Unknown".into()),
                message: Some("the container's shim is gone; its exit code was lost".into()),
            },
        };
        Some(ContainerRecord {
            id: c.id(),
            name: c.name.clone(),
            attempt: c.attempt,
            init: c.init,
            image: c.image.clone(),
            started_at,
            state: st,
        })
    }

    fn state_of(&self, id: &ContainerId) -> Result<(PathBuf, Option<State>)> {
        let (dir, _, _) = self.run_dir_of(id)?;
        let s = read_json(&dir.join("state.json"));
        Ok((dir, s))
    }

    /// Kills everything this kubelet's root dir and cgroup root hold, and removes its bridge,
    /// namespaces, cgroups and files (`keel-kubelet reset`, `--stop-pods-on-shutdown`, tests).
    pub async fn reset(&self) {
        for uid in self.pods().await.unwrap_or_default() {
            for r in self.containers(&uid).await.unwrap_or_default() {
                if let Ok((_, Some(s))) = self.state_of(&r.id)
                    && record::alive(&s)
                {
                    let _ = kill(Pid::from_raw(s.pid), Signal::SIGKILL);
                }
            }
        }
        for pid in self.cgroups.all_pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for uid in self.pods().await.unwrap_or_default() {
            let _ = self.remove_pod(&uid).await;
        }
        self.cgroups.remove_all();
        if self.ipam.is_some() {
            network::remove_bridge(&self.cfg.bridge).await;
        }
    }
}

#[async_trait]
impl Runtime for LinuxRuntime {
    fn features(&self) -> Features {
        Features { volumes: true, needs_command: true, degraded: self.degraded.clone() }
    }

    async fn ensure_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox> {
        let uid = &cfg.pod.uid.0;
        let dir = self.pod_dir(uid);
        let path = dir.join("sandbox.json");
        if let Some(s) = read_json::<Sandbox>(&path)
            && s.netns.as_ref().is_none_or(|n| n.exists())
        {
            return Ok(s);
        }
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        write_json(&dir.join("pod.json"), &cfg.pod).map_err(Error::io(&dir))?;
        let sandbox = match (&self.ipam, cfg.host_network) {
            (Some(ipam), false) => {
                let ip = ipam.allocate(uid)?;
                let cidr = ipam.cidr();
                let netns = network::setup_pod(uid, &self.cfg.bridge, cidr, ip).await?;
                Sandbox { ip: Some(ip.to_string()), netns: Some(netns) }
            }
            _ => Sandbox { ip: Some(self.cfg.node_ip.clone()), netns: None },
        };
        write_json(&path, &sandbox).map_err(Error::io(&path))?;
        Ok(sandbox)
    }

    async fn sandbox(&self, pod: &PodUid) -> Option<Sandbox> {
        let s: Sandbox = read_json(&self.pod_dir(&pod.0).join("sandbox.json"))?;
        s.netns.as_ref().is_none_or(|n| n.exists()).then_some(s)
    }

    async fn start_container(&self, c: &ContainerConfig) -> Result<ContainerId> {
        let id = c.id();
        let uid = &c.pod.uid.0;
        let dir = self.run_dir(uid, &c.name, c.attempt);
        if dir.join("config.json").exists() {
            return Err(Error::Runtime(format!("container {id} exists")));
        }
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let run = format!("{}_{}", c.name, c.attempt);
        let limits = Limits {
            memory: c.memory_limit,
            cpu_limit_millis: c.cpu_limit_millis,
            cpu_request_millis: c.cpu_request_millis,
            pids: self.cfg.pids_limit,
        };
        let procs = self.cgroups.create(uid, &run, &limits).map_err(|e| Error::Runtime(format!("cgroups for {id}: {e}")))?;
        let oom_file = match &self.cgroups.hierarchy {
            Hierarchy::V2(base) => Some(base.join(&self.cfg.cgroup_root).join(format!("pod{uid}")).join(&run).join("memory.events")),
            Hierarchy::V1 { memory: Some(m), .. } => {
                Some(m.join(&self.cfg.cgroup_root).join(format!("pod{uid}")).join(&run).join("memory.oom_control"))
            }
            Hierarchy::V1 { .. } => None,
        };
        let log_path = Self::log_file(&self.cfg.root_dir, &c.pod, &c.name, c.attempt);
        if let Some(p) = log_path.parent() {
            std::fs::create_dir_all(p).map_err(Error::io(p))?;
        }
        let sandbox = self.sandbox(&c.pod.uid).await;
        let shim = ShimConfig {
            container: c.clone(),
            dir: dir.clone(),
            netns: sandbox.and_then(|s| s.netns),
            rootfs: dir.join("rootfs"),
            log_path,
            log_max_size: self.cfg.log_max_size,
            log_max_files: self.cfg.log_max_files,
            cgroup_procs: procs,
            oom_file,
            mask: vec![self.cfg.root_dir.clone()],
            default_path: self.cfg.default_path.clone(),
        };
        let cfg_path = dir.join("config.json");
        write_json(&cfg_path, &shim).map_err(Error::io(&cfg_path))?;
        let mut child = Command::new(&self.cfg.self_exe)
            .arg("__shim")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::Runtime(format!("start the shim for {id}: {e}")))?;
        // Reap the shim when it ends (it outlives us if we die first; then init reaps it).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        for _ in 0..500 {
            if dir.join("state.json").exists() || dir.join("exit.json").exists() {
                return Ok(id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Runtime(format!("the shim of {id} did not report within 10s")))
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<()> {
        let (dir, state) = self.state_of(id)?;
        let Some(s) = state else { return Ok(()) };
        let exited = |dir: &Path, s: &State| dir.join("exit.json").exists() || !record::alive(s) && !record::shim_alive(s);
        if exited(&dir, &s) {
            return Ok(());
        }
        let pid = Pid::from_raw(s.pid);
        if record::alive(&s) {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if !record::alive(&s) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if record::alive(&s) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        for _ in 0..200 {
            if exited(&dir, &s) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(Error::Runtime(format!("container {id} did not exit after SIGKILL")))
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let (dir, uid, run) = self.run_dir_of(id)?;
        if let Some(cfg) = read_json::<ShimConfig>(&dir.join("config.json")) {
            let _ = std::fs::remove_file(&cfg.log_path);
            for f in crate::logs::files(&cfg.log_path) {
                let _ = std::fs::remove_file(f);
            }
        }
        self.cgroups.remove(&uid, Some(&run));
        std::fs::remove_dir_all(&dir).map_err(Error::io(&dir))
    }

    async fn containers(&self, pod: &PodUid) -> Result<Vec<ContainerRecord>> {
        let dir = self.pod_dir(&pod.0).join("containers");
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if let Some(r) = self.record(&e.path()) {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| (a.name.as_str(), a.attempt).cmp(&(b.name.as_str(), b.attempt)));
        Ok(out)
    }

    async fn pods(&self) -> Result<Vec<PodUid>> {
        let dir = self.cfg.root_dir.join("pods");
        let rd = std::fs::read_dir(&dir).map_err(Error::io(&dir))?;
        let mut out: Vec<PodUid> = rd.flatten().map(|e| PodUid(e.file_name().to_string_lossy().into_owned())).collect();
        out.sort();
        Ok(out)
    }

    async fn remove_pod(&self, pod: &PodUid) -> Result<()> {
        let uid = &pod.0;
        let dir = self.pod_dir(uid);
        if let Some(sb) = read_json::<Sandbox>(&dir.join("sandbox.json"))
            && sb.netns.is_some()
        {
            network::teardown_pod(uid).await;
        }
        if let Some(ipam) = &self.ipam {
            ipam.release(uid);
        }
        self.cgroups.remove(uid, None);
        if let Some(p) = read_json::<PodRef>(&dir.join("pod.json")) {
            let logs = self.cfg.root_dir.join("logs").join(format!("{}_{}_{}", p.namespace, p.name, p.uid));
            let _ = std::fs::remove_dir_all(logs);
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { path: dir, source: e }),
        }
    }

    async fn probe(&self, id: &ContainerId, _kind: ProbeKind, action: &ProbeAction, timeout: Duration) -> Outcome {
        match action {
            ProbeAction::Exec(argv) => match self.exec(id, argv, false, false).await {
                Err(e) => Outcome::Failure(e.to_string()),
                Ok(p) => probe::exec_outcome(p, timeout).await,
            },
            ProbeAction::Http { scheme, host, port, path, headers } => probe::http(scheme, host, *port, path, headers, timeout).await,
            ProbeAction::Tcp { host, port } => probe::tcp(host, *port, timeout).await,
        }
    }

    async fn exec(&self, id: &ContainerId, argv: &[String], stdin: bool, _tty: bool) -> Result<ExecProcess> {
        let (dir, state) = self.state_of(id)?;
        let s = state.filter(record::alive).ok_or_else(|| Error::Runtime(format!("container {id} is not running")))?;
        let cfg: ShimConfig = read_json(&dir.join("config.json"))
            .ok_or_else(|| Error::Corrupt { path: dir.join("config.json"), message: "unreadable".into() })?;
        if argv.is_empty() {
            return Err(Error::Runtime("exec needs a command".into()));
        }
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(s.pid.to_string()).args(["-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"]).args(argv);
        cmd.env_clear();
        if !cfg.container.env.iter().any(|(k, _)| k == "PATH") {
            cmd.env("PATH", &cfg.default_path);
        }
        cmd.env("HOSTNAME", &cfg.container.hostname).env("HOME", "/root");
        for (k, v) in &cfg.container.env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::Runtime(format!("nsenter: {e}")))?;
        let stdin_pipe = child.stdin.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
        let stdout = child.stdout.take().ok_or_else(|| Error::Runtime("no stdout pipe".into()))?;
        let stderr = child.stderr.take().ok_or_else(|| Error::Runtime("no stderr pipe".into()))?;
        let pid = child.id();
        let wait = Box::pin(async move {
            let st = child.wait().await.map_err(|e| Error::Runtime(format!("wait: {e}")))?;
            Ok(st.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(9)))
        });
        let kill_fn = Box::new(move || {
            if let Some(p) = pid {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
        });
        Ok(ExecProcess { stdin: stdin_pipe, stdout: Box::new(stdout), stderr: Box::new(stderr), wait, kill: kill_fn })
    }

    fn log_path(&self, pod: &PodRef, name: &str, attempt: u32) -> Option<PathBuf> {
        Some(Self::log_file(&self.cfg.root_dir, pod, name, attempt))
    }

    async fn usage(&self, id: &ContainerId) -> Option<Usage> {
        let (_, uid, run) = self.run_dir_of(id).ok()?;
        let (cpu_ns, memory_bytes) = self.cgroups.usage(&uid, Some(&run))?;
        Some(Usage { cpu_ns, memory_bytes })
    }
}
