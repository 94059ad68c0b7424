//! Pod status from the desired spec and what the runtime reports — the pure core of the pod
//! worker, after kubelet's `generateAPIPodStatus`, `convertToAPIContainerStatuses`, `getPhase`
//! and the `Generate*Condition` functions (pkg/kubelet/kubelet_pods.go, pkg/kubelet/status).
//!
//! Invariants: a terminal phase (`Succeeded`, `Failed`) never goes back; conditions keep their
//! `lastTransitionTime` while their status stays; conditions the kubelet does not own (readiness
//! gates, anything a controller wrote) are carried over untouched; `restartCount` is the latest
//! run's attempt number, which the runtime keeps on disk, so it survives a kubelet restart.

use crate::pod::qos::qos_class;
use crate::runtime::{ContainerRecord, ContainerState};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// Why a container that is not running waits (set by the pod worker's last sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// `CrashLoopBackOff`, `CreateContainerConfigError`, `ContainerCreating`, ...
    pub reason: String,
    /// The message shown beside it.
    pub message: Option<String>,
}

/// What the probes say about one running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeView {
    /// The readiness result (true without a readiness probe).
    pub ready: bool,
    /// The startup result (true without a startup probe).
    pub started: bool,
}

/// A terminal verdict the worker reached outside the containers (eviction, deadline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `Failed` (or `Succeeded`).
    pub phase: &'static str,
    /// `Evicted`, `DeadlineExceeded`, ...
    pub reason: String,
    /// The message.
    pub message: String,
}

/// Everything the status depends on.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The pod as the apiserver has it (spec and the status last written).
    pub pod: &'a Pod,
    /// Every run of every container of the pod the runtime knows about.
    pub records: &'a [ContainerRecord],
    /// Waiting reasons for containers that do not run, by container name.
    pub waiting: &'a BTreeMap<String, Waiting>,
    /// Probe results of running containers, by container name.
    pub probes: &'a BTreeMap<String, ProbeView>,
    /// The sandbox (network) is set up.
    pub sandbox_ready: bool,
    /// The pod IP, when it has one.
    pub pod_ip: Option<String>,
    /// The node's address.
    pub host_ip: Option<String>,
    /// A verdict that ends the pod.
    pub verdict: Option<&'a Verdict>,
    /// Now.
    pub now: Timestamp,
}

/// The latest and the one-before-latest run of container `name`.
fn runs<'r>(records: &'r [ContainerRecord], name: &str) -> (Option<&'r ContainerRecord>, Option<&'r ContainerRecord>) {
    let mut mine: Vec<&ContainerRecord> = records.iter().filter(|r| r.name == name).collect();
    mine.sort_by_key(|r| r.attempt);
    let latest = mine.pop();
    (latest, mine.pop())
}

fn terminated(r: &ContainerRecord) -> Option<ContainerStateTerminated> {
    match &r.state {
        ContainerState::Running => None,
        ContainerState::Exited { finished_at, exit_code, reason, message } => Some(ContainerStateTerminated {
            container_id: Some(format!("keel://{}", r.id)),
            exit_code: *exit_code,
            finished_at: Some(Time(*finished_at)),
            message: message.clone(),
            reason: Some(reason.clone().unwrap_or_else(|| if *exit_code == 0 { "Completed".into() } else { "Error".into() })),
            signal: None,
            started_at: Some(Time(r.started_at)),
        }),
    }
}

fn waiting_state(w: &Waiting) -> ApiState {
    ApiState { waiting: Some(ContainerStateWaiting { reason: Some(w.reason.clone()), message: w.message.clone() }), ..Default::default() }
}

/// One container's status. `default_reason` is used when it never ran and the worker gave none.
fn container_status(c: &Container, input: &Input<'_>, init: bool, default_reason: &str) -> ContainerStatus {
    let (latest, previous) = runs(input.records, &c.name);
    let waiting = input.waiting.get(&c.name);
    let mut s = ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        restart_count: latest.map(|r| r.attempt as i32).unwrap_or(0),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    match latest {
        None => {
            let w = waiting.cloned().unwrap_or(Waiting { reason: default_reason.into(), message: None });
            s.state = Some(waiting_state(&w));
        }
        Some(r) => {
            s.container_id = Some(format!("keel://{}", r.id));
            s.image_id = format!("keel://{}", r.image);
            match terminated(r) {
                None => {
                    let probe = input.probes.get(&c.name).copied().unwrap_or(ProbeView { ready: false, started: false });
                    s.state = Some(ApiState {
                        running: Some(ContainerStateRunning { started_at: Some(Time(r.started_at)) }),
                        ..Default::default()
                    });
                    s.started = Some(probe.started);
                    s.ready = probe.started && probe.ready;
                    s.last_state = previous.and_then(terminated).map(|t| ApiState { terminated: Some(t), ..Default::default() });
                }
                Some(t) => match waiting {
                    // It exited and will run again: waiting, its run is the last state.
                    Some(w) => {
                        s.state = Some(waiting_state(w));
                        s.last_state = Some(ApiState { terminated: Some(t), ..Default::default() });
                    }
                    None => {
                        s.ready = init && t.exit_code == 0;
                        s.state = Some(ApiState { terminated: Some(t), ..Default::default() });
                        s.last_state = previous.and_then(terminated).map(|t| ApiState { terminated: Some(t), ..Default::default() });
                    }
                },
            }
        }
    }
    s
}

fn terminated_of(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn last_terminated_of(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn is_waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

/// kubelet's `getPhase`.
pub fn phase(restart_policy: &str, init: &[ContainerStatus], regular: &[ContainerStatus]) -> &'static str {
    let (mut pending_init, mut failed_init) = (0, 0);
    for s in init {
        if is_running(s) {
            pending_init += 1;
        } else if let Some(t) = terminated_of(s) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if is_waiting(s) {
            match last_terminated_of(s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in regular {
        if is_running(s) {
            running += 1;
        } else if let Some(t) = terminated_of(s) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if is_waiting(s) {
            if last_terminated_of(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            waiting += 1;
        }
    }
    // Initialization pending and no regular container has run yet.
    if pending_init > 0 && running == 0 && stopped == 0 {
        return "Pending";
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(String::from) },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

/// The pod status.
pub fn pod_status(input: &Input<'_>) -> PodStatus {
    let spec = input.pod.spec.clone().unwrap_or_default();
    let old = input.pod.status.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> = init_specs.iter().map(|c| container_status(c, input, true, "PodInitializing")).collect();
    let init_done = init.iter().all(|s| terminated_of(s).is_some_and(|t| t.exit_code == 0));
    let default_regular = if init_done { "ContainerCreating" } else { "PodInitializing" };
    let regular: Vec<ContainerStatus> = spec.containers.iter().map(|c| container_status(c, input, false, default_regular)).collect();

    let mut phase_now = phase(restart_policy, &init, &regular).to_string();
    let old_phase = old.phase.clone().unwrap_or_default();
    let (mut reason, mut message) = (old.reason.clone(), old.message.clone());
    if let Some(v) = input.verdict {
        phase_now = v.phase.into();
        reason = Some(v.reason.clone());
        message = Some(v.message.clone());
    } else if old_phase == "Succeeded" || old_phase == "Failed" {
        phase_now = old_phase;
    }
    let terminal = phase_now == "Succeeded" || phase_now == "Failed";
    let completed = phase_now == "Succeeded";

    let incomplete: Vec<&str> =
        init.iter().filter(|s| !(s.ready || terminated_of(s).is_some_and(|t| t.exit_code == 0))).map(|s| s.name.as_str()).collect();
    let unready: Vec<&str> = regular.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let initialized = incomplete.is_empty() || completed;
    let containers_ready = unready.is_empty() && !terminal;
    let gates_ok = spec
        .readiness_gates
        .iter()
        .flatten()
        .all(|g| old.conditions.iter().flatten().any(|c| c.type_ == g.condition_type && c.status == "True"));
    let not_ready_reason = if completed { "PodCompleted" } else { "ContainersNotReady" };
    let mut owned = vec![
        condition("PodReadyToStartContainers", input.sandbox_ready && !terminal || completed, None, None),
        condition(
            "Initialized",
            initialized,
            Some(if completed { "PodCompleted" } else { "ContainersNotInitialized" }),
            Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(not_ready_reason),
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        ),
        condition(
            "Ready",
            containers_ready && gates_ok,
            Some(if containers_ready { "ReadinessGatesNotReady" } else { not_ready_reason }),
            Some(if containers_ready {
                "the status of pod readiness gate is not \"True\"".to_string()
            } else {
                format!("containers with unready status: [{}]", unready.join(" "))
            }),
        ),
    ];
    if completed {
        // A completed pod's containers are not "unready"; kubelet says PodCompleted, no list.
        for c in owned.iter_mut().filter(|c| c.status == "False") {
            c.message = None;
        }
    }
    let mut conditions: Vec<PodCondition> = Vec::new();
    if !old.conditions.iter().flatten().any(|c| c.type_ == "PodScheduled") {
        conditions.push(condition("PodScheduled", true, None, None));
    }
    for c in old.conditions.iter().flatten() {
        if !owned.iter().any(|o| o.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    for mut c in owned {
        let prev = old.conditions.iter().flatten().find(|o| o.type_ == c.type_);
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(Time(input.now)),
        };
        conditions.push(c);
    }
    for c in conditions.iter_mut().filter(|c| c.type_ == "PodScheduled" && c.last_transition_time.is_none()) {
        c.last_transition_time = Some(Time(input.now));
    }

    PodStatus {
        phase: Some(phase_now),
        conditions: Some(conditions),
        reason,
        message,
        host_ip: input.host_ip.clone(),
        host_ips: input.host_ip.clone().map(|ip| vec![HostIP { ip }]),
        pod_ip: input.pod_ip.clone(),
        pod_ips: input.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: old.start_time.clone().or(Some(Time(input.now))),
        qos_class: Some(qos_class(&spec).as_str().into()),
        init_container_statuses: if init.is_empty() { None } else { Some(init) },
        container_statuses: Some(regular),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerId, PodUid};
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u1"}, "spec": spec})).unwrap_or_else(|e| panic!("{e}"))
    }

    fn run(name: &str, attempt: u32, init: bool, exit: Option<i32>) -> ContainerRecord {
        ContainerRecord {
            id: ContainerId::new(&PodUid("u1".into()), name, attempt),
            name: name.into(),
            attempt,
            init,
            image: "img".into(),
            started_at: t(attempt as i64 * 10),
            state: match exit {
                None => ContainerState::Running,
                Some(code) => {
                    ContainerState::Exited { finished_at: t(attempt as i64 * 10 + 5), exit_code: code, reason: None, message: None }
                }
            },
        }
    }

    struct Case {
        name: &'static str,
        spec: serde_json::Value,
        records: Vec<ContainerRecord>,
        waiting: Vec<(&'static str, &'static str)>,
        ready: Vec<&'static str>,
        phase: &'static str,
        /// (condition, status) pairs that must hold.
        conditions: Vec<(&'static str, &'static str)>,
        /// (container, state kind, reason) of regular containers.
        states: Vec<(&'static str, &'static str, &'static str)>,
    }

    fn state_of(s: &ContainerStatus) -> (&'static str, String) {
        let st = s.state.clone().unwrap_or_default();
        if let Some(w) = st.waiting {
            ("waiting", w.reason.unwrap_or_default())
        } else if let Some(t) = st.terminated {
            ("terminated", t.reason.unwrap_or_default())
        } else {
            ("running", String::new())
        }
    }

    #[test]
    fn pod_status_table() {
        let one = json!({"containers": [{"name": "c", "image": "img"}]});
        let never = json!({"restartPolicy": "Never", "containers": [{"name": "c"}]});
        let on_failure = json!({"restartPolicy": "OnFailure", "containers": [{"name": "c"}]});
        let with_init = json!({"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]});
        let cases = vec![
            Case {
                name: "nothing ran yet",
                spec: one.clone(),
                records: vec![],
                waiting: vec![],
                ready: vec![],
                phase: "Pending",
                conditions: vec![("Ready", "False"), ("PodScheduled", "True"), ("Initialized", "True")],
                states: vec![("c", "waiting", "ContainerCreating")],
            },
            Case {
                name: "running and ready",
                spec: one.clone(),
                records: vec![run("c", 0, false, None)],
                waiting: vec![],
                ready: vec!["c"],
                phase: "Running",
                conditions: vec![("Ready", "True"), ("ContainersReady", "True")],
                states: vec![("c", "running", "")],
            },
            Case {
                name: "running, readiness failing",
                spec: one.clone(),
                records: vec![run("c", 0, false, None)],
                waiting: vec![],
                ready: vec![],
                phase: "Running",
                conditions: vec![("Ready", "False"), ("ContainersReady", "False")],
                states: vec![("c", "running", "")],
            },
            Case {
                name: "crash loop keeps Running under Always",
                spec: one.clone(),
                records: vec![run("c", 0, false, Some(1)), run("c", 1, false, Some(1))],
                waiting: vec![("c", "CrashLoopBackOff")],
                ready: vec![],
                phase: "Running",
                conditions: vec![("Ready", "False")],
                states: vec![("c", "waiting", "CrashLoopBackOff")],
            },
            Case {
                name: "Never and exit 0 succeeds",
                spec: never.clone(),
                records: vec![run("c", 0, false, Some(0))],
                waiting: vec![],
                ready: vec![],
                phase: "Succeeded",
                conditions: vec![("Ready", "False")],
                states: vec![("c", "terminated", "Completed")],
            },
            Case {
                name: "Never and exit 1 fails",
                spec: never.clone(),
                records: vec![run("c", 0, false, Some(1))],
                waiting: vec![],
                ready: vec![],
                phase: "Failed",
                conditions: vec![],
                states: vec![("c", "terminated", "Error")],
            },
            Case {
                name: "OnFailure, failed and restarting",
                spec: on_failure.clone(),
                records: vec![run("c", 0, false, Some(2))],
                waiting: vec![("c", "CrashLoopBackOff")],
                ready: vec![],
                phase: "Running",
                conditions: vec![],
                states: vec![("c", "waiting", "CrashLoopBackOff")],
            },
            Case {
                name: "OnFailure, exit 0 succeeds",
                spec: on_failure.clone(),
                records: vec![run("c", 0, false, Some(0))],
                waiting: vec![],
                ready: vec![],
                phase: "Succeeded",
                conditions: vec![],
                states: vec![("c", "terminated", "Completed")],
            },
            Case {
                name: "init container running",
                spec: with_init.clone(),
                records: vec![run("i", 0, true, None)],
                waiting: vec![],
                ready: vec![],
                phase: "Pending",
                conditions: vec![("Initialized", "False")],
                states: vec![("c", "waiting", "PodInitializing")],
            },
            Case {
                name: "init done, main running",
                spec: with_init.clone(),
                records: vec![run("i", 0, true, Some(0)), run("c", 0, false, None)],
                waiting: vec![],
                ready: vec!["c"],
                phase: "Running",
                conditions: vec![("Initialized", "True"), ("Ready", "True")],
                states: vec![("c", "running", "")],
            },
            Case {
                name: "init crash looping",
                spec: with_init.clone(),
                records: vec![run("i", 0, true, Some(1))],
                waiting: vec![("i", "CrashLoopBackOff")],
                ready: vec![],
                phase: "Pending",
                conditions: vec![("Initialized", "False")],
                states: vec![("c", "waiting", "PodInitializing")],
            },
            Case {
                name: "bad config waits with its reason",
                spec: one.clone(),
                records: vec![],
                waiting: vec![("c", "CreateContainerConfigError")],
                ready: vec![],
                phase: "Pending",
                conditions: vec![],
                states: vec![("c", "waiting", "CreateContainerConfigError")],
            },
        ];
        for case in cases {
            let p = pod(case.spec.clone());
            let waiting: BTreeMap<String, Waiting> =
                case.waiting.iter().map(|(c, r)| (c.to_string(), Waiting { reason: r.to_string(), message: None })).collect();
            let probes: BTreeMap<String, ProbeView> =
                ["c", "i"].iter().map(|c| (c.to_string(), ProbeView { ready: case.ready.contains(c), started: true })).collect();
            let input = Input {
                pod: &p,
                records: &case.records,
                waiting: &waiting,
                probes: &probes,
                sandbox_ready: true,
                pod_ip: Some("10.0.0.2".into()),
                host_ip: Some("192.0.2.1".into()),
                verdict: None,
                now: t(100),
            };
            let s = pod_status(&input);
            assert_eq!(s.phase.as_deref(), Some(case.phase), "{}", case.name);
            for (kind, want) in &case.conditions {
                let got = s.conditions.iter().flatten().find(|c| c.type_ == *kind).map(|c| c.status.clone());
                assert_eq!(got.as_deref(), Some(*want), "{}: condition {kind}", case.name);
            }
            for (c, kind, reason) in &case.states {
                let cs = s
                    .container_statuses
                    .iter()
                    .flatten()
                    .find(|s| s.name == *c)
                    .unwrap_or_else(|| panic!("{}: no status for {c}", case.name));
                assert_eq!(state_of(cs), (*kind, reason.to_string()), "{}: {c}", case.name);
            }
        }
    }

    #[test]
    fn restart_count_last_state_and_transition_times_are_kept() {
        let p = pod(json!({"containers": [{"name": "c"}]}));
        let records = vec![run("c", 0, false, Some(137)), run("c", 1, false, Some(1)), run("c", 2, false, None)];
        let probes: BTreeMap<String, ProbeView> = [("c".to_string(), ProbeView { ready: true, started: true })].into();
        let none = BTreeMap::new();
        let input = Input {
            pod: &p,
            records: &records,
            waiting: &none,
            probes: &probes,
            sandbox_ready: true,
            pod_ip: None,
            host_ip: None,
            verdict: None,
            now: t(100),
        };
        let s = pod_status(&input);
        let cs = &s.container_statuses.clone().unwrap_or_default()[0];
        assert_eq!(cs.restart_count, 2);
        assert_eq!(cs.last_state.as_ref().and_then(|l| l.terminated.as_ref()).map(|t| t.exit_code), Some(1));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        // Same statuses later: transition times stay.
        let mut p2 = p.clone();
        p2.status = Some(s.clone());
        let later = Input { pod: &p2, now: t(200), ..input.clone() };
        let s2 = pod_status(&later);
        assert_eq!(s.conditions, s2.conditions);
        assert_eq!(s.start_time, s2.start_time);
        // A terminal phase stays terminal.
        let mut done = p.clone();
        done.status = Some(PodStatus { phase: Some("Failed".into()), ..Default::default() });
        let s3 = pod_status(&Input { pod: &done, ..input.clone() });
        assert_eq!(s3.phase.as_deref(), Some("Failed"));
        // A verdict wins.
        let v = Verdict { phase: "Failed", reason: "Evicted".into(), message: "The node was low on resource: memory. ".into() };
        let s4 = pod_status(&Input { verdict: Some(&v), ..input });
        assert_eq!((s4.phase.as_deref(), s4.reason.as_deref()), (Some("Failed"), Some("Evicted")));
    }
}
