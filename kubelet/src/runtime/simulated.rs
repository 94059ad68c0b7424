//! The simulated runtime: no processes, no namespaces, no files. A container "runs" from the
//! moment it is started until its pod's annotations say it ends, so one process can host
//! hundreds of nodes (kubemark's hollow nodes). Annotations (pod-level; a `.<container>` suffix
//! narrows one to a container, e.g. `sim.keel.dev/exit-after.web`):
//!
//! | annotation | effect |
//! |---|---|
//! | `sim.keel.dev/exit-after: 5s` | the container exits 5 s after it starts |
//! | `sim.keel.dev/exit-code: "1"` | with that exit code (default 0) |
//! | `sim.keel.dev/fail-readiness: "true"` | readiness probes fail |
//! | `sim.keel.dev/fail-liveness-after: 10s` | liveness probes fail from 10 s after start |
//! | `sim.keel.dev/memory: 100Mi` | the container's memory working set |
//! | `sim.keel.dev/cpu: 100m` | cpu use, in cores, for `/stats/summary` |
//!
//! Invariant: state lives in one map behind a std mutex, never held across an await.

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::pod::probe::{Outcome, ProbeKind};
use crate::pod::quantity::{cpu_millis, memory_bytes};
use crate::runtime::ipam::Ipam;
use crate::runtime::*;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

struct SimContainer {
    record: ContainerRecord,
    annotations: BTreeMap<String, String>,
    started: Instant,
}

#[derive(Default)]
struct SimPod {
    sandbox: Option<Sandbox>,
    containers: Vec<SimContainer>,
}

/// A runtime that runs nothing.
pub struct SimulatedRuntime {
    clock: Arc<dyn Clock>,
    ipam: Ipam,
    pods: Mutex<BTreeMap<PodUid, SimPod>>,
}

/// The annotation `key` for container `name`: `key.name` wins over `key`.
fn annotation<'a>(a: &'a BTreeMap<String, String>, key: &str, name: &str) -> Option<&'a str> {
    a.get(&format!("{key}.{name}")).or_else(|| a.get(key)).map(String::as_str)
}

/// `5s`, `100ms`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len()));
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

impl SimulatedRuntime {
    /// A runtime handing out pod IPs from `ipam` (in memory).
    pub fn new(clock: Arc<dyn Clock>, ipam: Ipam) -> SimulatedRuntime {
        SimulatedRuntime { clock, ipam, pods: Mutex::new(BTreeMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PodUid, SimPod>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves runs whose time is up to Exited.
    fn advance(&self, c: &mut SimContainer) {
        if !c.record.running() {
            return;
        }
        let Some(after) = annotation(&c.annotations, "sim.keel.dev/exit-after", &c.record.name).and_then(parse_duration) else { return };
        let elapsed = c.started.elapsed();
        if elapsed >= after {
            let code = annotation(&c.annotations, "sim.keel.dev/exit-code", &c.record.name).and_then(|v| v.parse().ok()).unwrap_or(0);
            let finished_at = c.record.started_at.checked_add(after).unwrap_or(c.record.started_at);
            c.record.state = ContainerState::Exited { finished_at, exit_code: code, reason: None, message: None };
        }
    }
}

#[async_trait]
impl Runtime for SimulatedRuntime {
    fn features(&self) -> Features {
        Features { volumes: false, needs_command: false, degraded: Vec::new() }
    }

    async fn ensure_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox> {
        let mut pods = self.lock();
        let pod = pods.entry(cfg.pod.uid.clone()).or_default();
        if let Some(s) = &pod.sandbox {
            return Ok(s.clone());
        }
        let ip = self.ipam.allocate(&cfg.pod.uid.0)?;
        let s = Sandbox { ip: Some(ip.to_string()), netns: None };
        pod.sandbox = Some(s.clone());
        Ok(s)
    }

    async fn sandbox(&self, pod: &PodUid) -> Option<Sandbox> {
        self.lock().get(pod).and_then(|p| p.sandbox.clone())
    }

    async fn start_container(&self, cfg: &ContainerConfig) -> Result<ContainerId> {
        let id = cfg.id();
        let now = self.clock.now();
        let mut pods = self.lock();
        let pod = pods.entry(cfg.pod.uid.clone()).or_default();
        if pod.containers.iter().any(|c| c.record.id == id) {
            return Err(Error::Runtime(format!("container {id} exists")));
        }
        pod.containers.push(SimContainer {
            record: ContainerRecord {
                id: id.clone(),
                name: cfg.name.clone(),
                attempt: cfg.attempt,
                init: cfg.init,
                image: cfg.image.clone(),
                started_at: now,
                state: ContainerState::Running,
            },
            annotations: cfg.annotations.clone(),
            started: Instant::now(),
        });
        Ok(id)
    }

    async fn stop_container(&self, id: &ContainerId, _grace: Duration) -> Result<()> {
        let now = self.clock.now();
        let mut pods = self.lock();
        for pod in pods.values_mut() {
            for c in pod.containers.iter_mut().filter(|c| &c.record.id == id) {
                if c.record.running() {
                    // A simulated process honours SIGTERM at once: exit 143.
                    c.record.state = ContainerState::Exited { finished_at: now, exit_code: 143, reason: None, message: None };
                }
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        for pod in self.lock().values_mut() {
            pod.containers.retain(|c| &c.record.id != id);
        }
        Ok(())
    }

    async fn containers(&self, pod: &PodUid) -> Result<Vec<ContainerRecord>> {
        let mut pods = self.lock();
        let Some(p) = pods.get_mut(pod) else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(p.containers.len());
        for c in p.containers.iter_mut() {
            self.advance(c);
            out.push(c.record.clone());
        }
        out.sort_by(|a, b| (a.name.as_str(), a.attempt).cmp(&(b.name.as_str(), b.attempt)));
        Ok(out)
    }

    async fn pods(&self) -> Result<Vec<PodUid>> {
        Ok(self.lock().keys().cloned().collect())
    }

    async fn remove_pod(&self, pod: &PodUid) -> Result<()> {
        self.lock().remove(pod);
        self.ipam.release(&pod.0);
        Ok(())
    }

    async fn probe(&self, id: &ContainerId, kind: ProbeKind, _action: &ProbeAction, _timeout: Duration) -> Outcome {
        let pods = self.lock();
        let Some(c) = pods.values().flat_map(|p| p.containers.iter()).find(|c| &c.record.id == id) else {
            return Outcome::Failure("container not found".into());
        };
        let name = &c.record.name;
        let fail = match kind {
            ProbeKind::Readiness => annotation(&c.annotations, "sim.keel.dev/fail-readiness", name) == Some("true"),
            ProbeKind::Liveness => annotation(&c.annotations, "sim.keel.dev/fail-liveness-after", name)
                .and_then(parse_duration)
                .is_some_and(|d| c.started.elapsed() >= d),
            ProbeKind::Startup => false,
        };
        if fail { Outcome::Failure("simulated failure".into()) } else { Outcome::Success }
    }

    async fn exec(&self, _id: &ContainerId, argv: &[String], _stdin: bool, _tty: bool) -> Result<ExecProcess> {
        Err(Error::Runtime(format!("the simulated runtime cannot exec {argv:?}")))
    }

    fn log_path(&self, _pod: &PodRef, _name: &str, _attempt: u32) -> Option<std::path::PathBuf> {
        None
    }

    async fn usage(&self, id: &ContainerId) -> Option<Usage> {
        let pods = self.lock();
        let c = pods.values().flat_map(|p| p.containers.iter()).find(|c| &c.record.id == id && c.record.running())?;
        let name = &c.record.name;
        let memory_bytes = annotation(&c.annotations, "sim.keel.dev/memory", name).and_then(memory_bytes).unwrap_or(0);
        let millis = annotation(&c.annotations, "sim.keel.dev/cpu", name).and_then(cpu_millis).unwrap_or(0);
        let cpu_ns = (c.started.elapsed().as_nanos() as u64).saturating_mul(millis) / 1000;
        Some(Usage { cpu_ns, memory_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("x"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn containers_exit_when_their_annotation_says() {
        let ipam = Ipam::new("10.1.0.0/24".parse().unwrap_or_else(|e| panic!("{e}")), None).unwrap_or_else(|e| panic!("{e}"));
        let rt = SimulatedRuntime::new(Arc::new(SystemClock), ipam);
        let pod = PodRef { uid: PodUid("u".into()), namespace: "default".into(), name: "p".into() };
        let sb = rt.ensure_sandbox(&SandboxConfig { pod: pod.clone(), host_network: false }).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sb.ip.as_deref(), Some("10.1.0.2"));
        let annotations = BTreeMap::from([
            ("sim.keel.dev/exit-after".to_string(), "5s".to_string()),
            ("sim.keel.dev/exit-code".to_string(), "3".to_string()),
        ]);
        let cfg = ContainerConfig {
            pod: pod.clone(),
            name: "c".into(),
            attempt: 0,
            init: false,
            image: "img".into(),
            argv: vec![],
            env: vec![],
            working_dir: None,
            mounts: vec![],
            hostname: "p".into(),
            memory_limit: None,
            cpu_limit_millis: None,
            cpu_request_millis: None,
            annotations,
        };
        rt.start_container(&cfg).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(rt.start_container(&cfg).await.is_err(), "one run per id");
        assert!(rt.containers(&pod.uid).await.unwrap_or_default()[0].running());
        tokio::time::sleep(Duration::from_secs(6)).await;
        let r = rt.containers(&pod.uid).await.unwrap_or_default();
        assert!(matches!(r[0].state, ContainerState::Exited { exit_code: 3, .. }), "{r:?}");
    }
}
