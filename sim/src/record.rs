//! What the simulated clients saw, recorded as they see it. Everything runs on the simulation's
//! one thread, so the recorder is shared through `Rc<RefCell<…>>`, and "time" is a logical
//! clock: each invoke and each return takes the next tick, which orders them exactly.

use crate::history::{History, Operation, Request, Response};
use crate::watch::WatchLog;
use std::cell::RefCell;
use std::fmt::Write;
use std::rc::Rc;

/// A serializable (possibly stale) get: it must equal the store at its header revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleRead {
    /// Key.
    pub key: String,
    /// Value read.
    pub value: Option<String>,
    /// Its mod revision (0 when absent).
    pub mod_revision: i64,
    /// Header revision.
    pub revision: i64,
}

/// A list of a prefix read in pages at one pinned revision (Kubernetes' list with limit and
/// continue): it must equal the store's keys under the prefix at that revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRead {
    /// Prefix listed.
    pub prefix: String,
    /// The pinned revision (the first page's header).
    pub revision: i64,
    /// Pages read.
    pub pages: usize,
    /// (key, value, mod revision), all pages.
    pub kvs: Vec<(String, String, i64)>,
}

/// One lease the lease keeper kept alive for a while, then revoked or left to expire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseLife {
    /// Lease ID.
    pub lease: i64,
    /// Its keys (no one else writes or deletes them).
    pub keys: Vec<String>,
    /// Simulated time before which the lease must not end on its own: the last successful
    /// keepalive's send time plus its TTL divided by the fastest drift, less an election
    /// timeout (a deposed leader may still answer a keepalive for that long).
    pub not_before: std::time::Duration,
    /// When the keeper asked to revoke it (it may end any time after).
    pub revoked_from: Option<std::time::Duration>,
}

/// A watcher's successive streams: each resumes where the one before stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchChain {
    /// Streams in order.
    pub links: Vec<WatchLog>,
}

/// One member's history once the run is over: every event from the oldest revision it still
/// holds (1, or its compacted revision) up to the last it delivered, read in one watch after
/// the liveness check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalHistory {
    /// The first revision it covers.
    pub from: i64,
    /// The last revision it covers (its last event or progress notification).
    pub to: i64,
    /// Its events, in revision order.
    pub events: Vec<crate::watch::Event>,
}

/// Everything recorded in one run.
#[derive(Debug, Default)]
pub struct Recorded {
    clock: u64,
    /// KV operations.
    pub history: History,
    /// Serializable gets.
    pub stale_reads: Vec<StaleRead>,
    /// Paged lists.
    pub lists: Vec<ListRead>,
    /// Watchers (Kubernetes-style: list, then watch from the list's revision).
    pub watchers: Vec<WatchChain>,
    /// Watchers of every shape (prefix or key, prev_kv or not, filters, progress or not).
    pub shaped: Vec<WatchChain>,
    /// The reference watcher: every key from revision 1.
    pub reference: WatchChain,
    /// The reference watcher could not resume (compacted past it): history checks are skipped.
    pub reference_lost: bool,
    /// The liveness check's verdict once faults stopped.
    pub liveness: Option<Result<String, String>>,
    /// The revision of the liveness check's last write (the reference watches up to it).
    pub final_revision: i64,
    /// The lease keeper saw a lease gone (keepalive TTL ≤ 0) before it may end: (lease, when).
    pub early_ends: Vec<(i64, std::time::Duration)>,
    /// Membership changes made (membership scenario).
    pub membership: Vec<String>,
    /// Leases kept alive, then revoked or left to expire.
    pub leases: Vec<LeaseLife>,
    /// Deletions the reference watcher received: (key, revision, simulated arrival time).
    pub deletions: Vec<(String, i64, std::time::Duration)>,
    /// Faults as applied (or found to be no-ops), with their simulated times.
    pub faults: Vec<String>,
    /// Crashes: when, which member, and the unsynced Raft log bytes it lost.
    pub crashes: Vec<(std::time::Duration, String, usize)>,
    /// The simulated time of every answer, by its logical return instant.
    pub returned_at: std::collections::BTreeMap<u64, std::time::Duration>,
    /// Each member's history after the run (member, or why it could not be read).
    pub final_histories: Vec<(String, Result<FinalHistory, String>)>,
    /// Member names by client address (set by the harness).
    pub member_names: std::collections::BTreeMap<std::net::SocketAddr, String>,
    /// Workload clients still running (the liveness check waits for none).
    pub active_clients: u32,
    /// Set by the harness when faults have stopped: the members the liveness check asks.
    pub liveness_members: Option<Vec<std::net::SocketAddr>>,
    /// The controlplane scenario's record, rendered (`crate::cp::Record`).
    pub controlplane: Option<String>,
}

/// Shared handle to the recorder.
pub type Recorder = Rc<RefCell<Recorded>>;

impl Recorded {
    /// The next logical instant.
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Record an operation invoked at `call` that returned `response` now (`None`: no answer).
    pub fn finish(&mut self, client: u32, call: u64, request: Request, response: Option<Response>) {
        let ret = response.as_ref().map(|_| self.tick());
        if let Some(ret) = ret {
            self.returned_at.insert(ret, turmoil::sim_elapsed().unwrap_or_default());
        }
        self.history.push(Operation { client, call, ret, request, response });
    }

    /// Everything recorded, as text: the byte-for-byte comparable form of a run.
    pub fn render(&self) -> String {
        let mut s = self.history.render();
        for r in &self.stale_reads {
            let _ = writeln!(s, "stale {r:?}");
        }
        for l in &self.lists {
            let _ = writeln!(s, "list {l:?}");
        }
        for (i, w) in self.watchers.iter().chain(&self.shaped).chain(std::iter::once(&self.reference)).enumerate() {
            for l in &w.links {
                let _ = writeln!(s, "watch {i} {l:?}");
            }
        }
        for d in &self.deletions {
            let _ = writeln!(s, "deleted {d:?}");
        }
        for f in &self.faults {
            let _ = writeln!(s, "fault {f}");
        }
        for c in &self.crashes {
            let _ = writeln!(s, "crash {c:?}");
        }
        for f in &self.final_histories {
            let _ = writeln!(s, "final history {f:?}");
        }
        for l in &self.leases {
            let _ = writeln!(s, "lease {l:?}");
        }
        for m in &self.membership {
            let _ = writeln!(s, "membership {m}");
        }
        if let Some(cp) = &self.controlplane {
            s.push_str(cp);
        }
        let _ =
            writeln!(s, "reference lost: {}; final revision {}; liveness: {:?}", self.reference_lost, self.final_revision, self.liveness);
        s
    }
}
