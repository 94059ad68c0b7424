//! The neutral history every checker reads: what the store recorded under `/registry/` (each
//! change with its revision, put or delete, and the object's JSON), what the leader-elected
//! components said they did (acts, with holder identity and Lease term), and what the workload
//! saw acknowledged. Nothing here knows about processes, logs or sockets: the real-process
//! harness fills it from a watch and from log lines, the simulation from its own probes.
//!
//! Invariants a [`History`] promises its checkers (its producer's duty):
//! - `events` are in strictly increasing revision order, at most one event per key and
//!   revision, and complete from revision 1 (or from the first revision the producer states)
//!   to the end: the store's watch is ordered and gap-free.
//! - `seen` times are non-decreasing along `events`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A store revision (etcd's `mod_revision`; Kubernetes' `resourceVersion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub i64);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// What a store event did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Created or updated the key.
    Put,
    /// Deleted the key.
    Delete,
}

/// One change of a `/registry/` key, in the store's order.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreEvent {
    /// The revision of the change.
    pub revision: Revision,
    /// The key (`/registry/pods/default/web-1`).
    pub key: String,
    /// Put or delete.
    pub op: Op,
    /// The object after a put (None after a delete, or when the value is not JSON).
    pub object: Option<Value>,
    /// When the recorder received it, measured from the start of the run (the simulation:
    /// simulated time). Only the convergence checker reads it.
    pub seen: Duration,
}

/// A leader-elected component kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// keel-scheduler (Lease `kube-system/kube-scheduler`).
    Scheduler,
    /// keel-controller-manager (Lease `kube-system/kube-controller-manager`).
    ControllerManager,
}

impl Component {
    /// The key of the component's Lease in the store.
    pub fn lease_key(self) -> &'static str {
        match self {
            Component::Scheduler => "/registry/leases/kube-system/kube-scheduler",
            Component::ControllerManager => "/registry/leases/kube-system/kube-controller-manager",
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Component::Scheduler => "scheduler",
            Component::ControllerManager => "controller-manager",
        }
    }
}

/// A Lease holder's identity (`holderIdentity`: `<host>_<random>` for Keel's components).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HolderId(pub String);

/// A Lease term: the Lease's `leaseTransitions` while the holder leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub i64);

/// What an act did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActKind {
    /// Bound the pod at `key` to `node` (the scheduler).
    Bind {
        /// The node.
        node: String,
    },
    /// Created the object at `key`.
    Create,
    /// Updated the object at `key`.
    Update,
    /// Deleted the object at `key` (set its deletionTimestamp, or removed it).
    Delete,
}

/// One write a leader-elected component reported as acknowledged, with who it was then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Act {
    /// Which component.
    pub component: Component,
    /// Its identity (the Lease's holderIdentity while it leads).
    pub holder: HolderId,
    /// The Lease term it believed it held.
    pub term: Term,
    /// The store key the act wrote.
    pub key: String,
    /// What it did.
    pub kind: ActKind,
    /// The revision of the write when the component reported it (a response's
    /// resourceVersion); otherwise [`crate::locate`] finds it in the history.
    pub revision: Option<Revision>,
}

/// A condition an acknowledged write's object satisfies.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// The value at this JSON pointer equals this.
    Equals(String, Value),
    /// Something is at this JSON pointer.
    Present(String),
}

impl Expect {
    /// Whether `object` satisfies it.
    pub fn holds(&self, object: &Value) -> bool {
        match self {
            Expect::Equals(p, v) => object.pointer(p) == Some(v),
            Expect::Present(p) => object.pointer(p).is_some_and(|v| !v.is_null()),
        }
    }
}

/// A write the workload (or a component) saw acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct AckedWrite {
    /// Who wrote it (for messages: `workload`, `scheduler`).
    pub by: String,
    /// The store key.
    pub key: String,
    /// A put (create, update, graceful delete that set deletionTimestamp) or a delete.
    pub op: Op,
    /// The revision the acknowledgement named (a resourceVersion), when it named one.
    pub revision: Option<Revision>,
    /// What the written object must show (for writes acknowledged without a revision, e.g. by
    /// kubectl).
    pub expect: Vec<Expect>,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The store's changes under `/registry/`, in revision order.
    pub events: Vec<StoreEvent>,
    /// The components' acts, in the order they were reported (not necessarily revision order).
    pub acts: Vec<Act>,
    /// Writes acknowledged to the workload.
    pub acked: Vec<AckedWrite>,
    /// When the faults and the workload's changes stopped (the liveness phase began), measured
    /// like [`StoreEvent::seen`].
    pub quiet_from: Option<Duration>,
}

/// The state of every key at some revision, kept up to date event by event: the checkers walk
/// the history once, in order, through this.
#[derive(Clone, Debug, Default)]
pub struct State {
    objects: BTreeMap<String, Value>,
    /// The revision of the last event applied.
    pub revision: Revision,
}

impl State {
    /// Applies one event; returns the object the key held before it.
    pub fn apply(&mut self, e: &StoreEvent) -> Option<Value> {
        self.revision = e.revision;
        match (&e.op, &e.object) {
            (Op::Put, Some(v)) => self.objects.insert(e.key.clone(), v.clone()),
            _ => self.objects.remove(&e.key),
        }
    }

    /// The object at `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.objects.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.as_str(), v))
    }
}

/// A checker's finding: the guarantee it broke, where, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker (named after its guarantee).
    pub checker: &'static str,
    /// The revision where it shows, when there is one.
    pub revision: Option<Revision>,
    /// What happened, in words.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.revision {
            Some(r) => write!(f, "{} at {r}: {}", self.checker, self.message),
            None => write!(f, "{}: {}", self.checker, self.message),
        }
    }
}
