//! The probe workers of one pod: one task per (running container, probe kind), each running its
//! check every `periodSeconds` after `initialDelaySeconds` through the runtime, feeding the pure
//! [`ProbeState`] and, when a result changes, waking the pod worker. Liveness and readiness wait
//! for the startup probe's success; the startup probe stops after it. A failed check records an
//! `Unhealthy` event (`Liveness probe failed: ...`), as kubelet does.
//!
//! Invariant: tasks belong to a container run; [`Prober::retain`] aborts those of runs that no
//! longer run, so a restarted container starts with fresh thresholds.

use crate::events::{Events, Kind, pod_ref};
use crate::pod::probe::{Outcome, ProbeKind, ProbeState, Timing, Transition};
use crate::runtime::{ContainerId, ProbeAction, Runtime};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

type Results = Arc<Mutex<BTreeMap<(ContainerId, ProbeKind), bool>>>;

/// The probes of one pod.
pub struct Prober {
    runtime: Arc<dyn Runtime>,
    events: Events,
    results: Results,
    wake: Arc<Notify>,
    tasks: BTreeMap<(ContainerId, ProbeKind), JoinHandle<()>>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.abort();
        }
    }
}

fn port_of(p: &IntOrString, c: &Container) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => {
            c.ports.iter().flatten().find(|cp| cp.name.as_deref() == Some(name)).and_then(|cp| u16::try_from(cp.container_port).ok())
        }
    }
}

/// The action of a probe (or lifecycle handler), or why it cannot run.
pub fn action(p: &Probe, c: &Container, pod_ip: &str) -> Result<ProbeAction, String> {
    if let Some(e) = &p.exec {
        return Ok(ProbeAction::Exec(e.command.clone().unwrap_or_default()));
    }
    if let Some(h) = &p.http_get {
        let port =
            port_of(&h.port, c).ok_or_else(|| format!("httpGet port {:?} is not a port number or a named container port", h.port))?;
        let mut path = h.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let headers = h.http_headers.iter().flatten().map(|x| (x.name.clone(), x.value.clone())).collect();
        return Ok(ProbeAction::Http {
            scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()),
            host: h.host.clone().unwrap_or_else(|| pod_ip.to_string()),
            port,
            path,
            headers,
        });
    }
    if let Some(t) = &p.tcp_socket {
        let port =
            port_of(&t.port, c).ok_or_else(|| format!("tcpSocket port {:?} is not a port number or a named container port", t.port))?;
        return Ok(ProbeAction::Tcp { host: t.host.clone().unwrap_or_else(|| pod_ip.to_string()), port });
    }
    if p.grpc.is_some() {
        return Err("grpc probes are not supported by keel-kubelet".into());
    }
    Err("the probe has no handler (exec, httpGet or tcpSocket)".into())
}

impl Prober {
    /// Probes for one pod; `wake` is notified when a result changes.
    pub fn new(runtime: Arc<dyn Runtime>, events: Events, wake: Arc<Notify>) -> Prober {
        Prober { runtime, events, results: Arc::new(Mutex::new(BTreeMap::new())), wake, tasks: BTreeMap::new() }
    }

    /// The current result of `kind` for run `id`; `None` when the container has no such probe.
    pub fn result(&self, id: &ContainerId, kind: ProbeKind) -> Option<bool> {
        self.results.lock().unwrap_or_else(|e| e.into_inner()).get(&(id.clone(), kind)).copied()
    }

    /// Makes sure the probes of running container `c` (run `id`) run.
    pub fn ensure(&mut self, pod: &Pod, c: &Container, id: &ContainerId, pod_ip: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let has_startup = c.startup_probe.is_some();
        for (kind, probe) in
            [(ProbeKind::Startup, &c.startup_probe), (ProbeKind::Liveness, &c.liveness_probe), (ProbeKind::Readiness, &c.readiness_probe)]
        {
            let Some(probe) = probe else { continue };
            let key = (id.clone(), kind);
            if self.tasks.contains_key(&key) {
                continue;
            }
            let act = match action(probe, c, pod_ip) {
                Ok(a) => a,
                Err(e) => {
                    problems.push(format!("{} probe: {e}", kind.title()));
                    continue;
                }
            };
            let mut state = ProbeState::initial(kind);
            if kind == ProbeKind::Startup {
                // Not started until the startup probe has passed.
                state.result = false;
            }
            self.results.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), state.result);
            let task = ProbeTask {
                runtime: self.runtime.clone(),
                events: self.events.clone(),
                results: self.results.clone(),
                wake: self.wake.clone(),
                id: id.clone(),
                kind,
                timing: Timing::of(probe),
                action: act,
                pod: pod.clone(),
                container: c.name.clone(),
                gated_by_startup: has_startup && kind != ProbeKind::Startup,
            };
            self.tasks.insert(key, tokio::spawn(task.run(state)));
        }
        problems
    }

    /// Stops the probes of runs not in `running`.
    pub fn retain(&mut self, running: &BTreeSet<ContainerId>) {
        self.tasks.retain(|(id, _), t| {
            let keep = running.contains(id);
            if !keep {
                t.abort();
            }
            keep
        });
        self.results.lock().unwrap_or_else(|e| e.into_inner()).retain(|(id, _), _| running.contains(id));
    }
}

struct ProbeTask {
    runtime: Arc<dyn Runtime>,
    events: Events,
    results: Results,
    wake: Arc<Notify>,
    id: ContainerId,
    kind: ProbeKind,
    timing: Timing,
    action: ProbeAction,
    pod: Pod,
    container: String,
    gated_by_startup: bool,
}

impl ProbeTask {
    async fn run(self, mut state: ProbeState) {
        tokio::time::sleep(self.timing.initial_delay).await;
        let mut tick = tokio::time::interval(self.timing.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.gated_by_startup {
                let started = self.results.lock().unwrap_or_else(|e| e.into_inner()).get(&(self.id.clone(), ProbeKind::Startup)).copied();
                if started != Some(true) {
                    continue;
                }
            }
            let outcome = self.runtime.probe(&self.id, self.kind, &self.action, self.timing.timeout).await;
            if let Outcome::Failure(msg) = &outcome {
                let r = pod_ref(&self.pod, Some(&self.container));
                self.events.record(&r, Kind::Warning, "Unhealthy", &format!("{} probe failed: {msg}", self.kind.title())).await;
            }
            let changed = state.observe(&outcome, &self.timing) != Transition::Same;
            let set = |kind: ProbeKind, v: bool| {
                self.results.lock().unwrap_or_else(|e| e.into_inner()).insert((self.id.clone(), kind), v);
                self.wake.notify_one();
            };
            match self.kind {
                ProbeKind::Startup if state.result => return set(ProbeKind::Startup, true),
                ProbeKind::Startup if state.last_ok == Some(false) && state.streak >= self.timing.failure_threshold => {
                    // A startup probe out of tries kills the run as a liveness failure does.
                    return set(ProbeKind::Liveness, false);
                }
                ProbeKind::Liveness if changed && !state.result => return set(ProbeKind::Liveness, false),
                ProbeKind::Readiness if changed => set(ProbeKind::Readiness, state.result),
                _ => {}
            }
        }
    }
}
