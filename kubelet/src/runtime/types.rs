//! What the kubelet and a runtime say to each other: container configs in, container records
//! out. These are plain data so the pod status core can be tested without a runtime.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A pod's uid, the key of everything the runtime keeps for the pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodUid(pub String);

impl fmt::Display for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One run of one container: `<pod uid>_<container name>_<attempt>`, unique for the node's life.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerId(pub String);

impl ContainerId {
    /// The id of `attempt` of container `name` in pod `uid`.
    pub fn new(uid: &PodUid, name: &str, attempt: u32) -> ContainerId {
        ContainerId(format!("{}_{}_{}", uid.0, name, attempt))
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which pod a sandbox or container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    /// `metadata.uid`.
    pub uid: PodUid,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// What a pod's sandbox needs: the shared network (and, later, IPC) of its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The pod.
    pub pod: PodRef,
    /// `spec.hostNetwork`: no network namespace, the node's addresses.
    pub host_network: bool,
}

/// A sandbox that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The pod IP (the host's address with hostNetwork).
    pub ip: Option<String>,
    /// The network namespace's path, when the pod has its own.
    pub netns: Option<PathBuf>,
}

/// A volume bind-mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The prepared path on the host (under the pod's volume folder, or a hostPath).
    pub host_path: PathBuf,
    /// `mountPath`, absolute and free of `..` (checked before).
    pub container_path: String,
    /// `readOnly`.
    pub read_only: bool,
}

/// Everything a runtime needs to start one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The pod.
    pub pod: PodRef,
    /// `name`.
    pub name: String,
    /// Which run of this container (0 first, then restartCount).
    pub attempt: u32,
    /// An init container.
    pub init: bool,
    /// `image`, recorded only: no image is pulled.
    pub image: String,
    /// `command` + `args`, with `$(VAR)` references expanded.
    pub argv: Vec<String>,
    /// The environment, in order.
    pub env: Vec<(String, String)>,
    /// `workingDir`.
    pub working_dir: Option<String>,
    /// Volume mounts.
    pub mounts: Vec<Mount>,
    /// The pod's hostname (`spec.hostname` or the pod name).
    pub hostname: String,
    /// The memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// The cpu limit in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// The cpu request in millicores (cpu shares).
    pub cpu_request_millis: Option<u64>,
    /// The pod's annotations (the simulated runtime reads its behaviour there).
    pub annotations: BTreeMap<String, String>,
}

impl ContainerConfig {
    /// This container run's id.
    pub fn id(&self) -> ContainerId {
        ContainerId::new(&self.pod.uid, &self.name, self.attempt)
    }
}

/// Where a container run is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Its process runs.
    Running,
    /// It ended.
    Exited {
        /// When it ended.
        finished_at: Timestamp,
        /// The exit code (128 + signal when killed by one).
        exit_code: i32,
        /// `OOMKilled`, `StartError`, or none (the status core says `Completed`/`Error`).
        reason: Option<String>,
        /// A message (why it could not start).
        message: Option<String>,
    },
}

/// One container run the runtime knows about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The run's id.
    pub id: ContainerId,
    /// The container's name.
    pub name: String,
    /// Which run.
    pub attempt: u32,
    /// An init container.
    pub init: bool,
    /// The image name it was started with.
    pub image: String,
    /// When its process started.
    pub started_at: Timestamp,
    /// Running or exited.
    pub state: ContainerState,
}

impl ContainerRecord {
    /// Whether its process still runs.
    pub fn running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

/// A container's resource use, for `/stats/summary` and eviction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used so far, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory working set in bytes.
    pub memory_bytes: u64,
}

/// How a probe or hook reaches into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// Run `command` inside the container; exit 0 passes.
    Exec(Vec<String>),
    /// GET `scheme://host:port/path`; 200..400 passes.
    Http {
        /// `http` or `https`.
        scheme: String,
        /// The pod IP unless `host` is set.
        host: String,
        /// The port.
        port: u16,
        /// The path with query.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// Connect to `host:port`.
    Tcp {
        /// The pod IP unless `host` is set.
        host: String,
        /// The port.
        port: u16,
    },
}
