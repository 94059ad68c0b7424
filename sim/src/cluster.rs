//! Keel members as turmoil hosts: the real `Member` (same services, Raft and apply loop) over
//! simulated TCP, with its "disk" — state machine backend, Raft log, snapshot folder — kept
//! outside the host so a crash and restart finds what was synced.

use crate::disk::SimLogDisk;
use crate::net::{SimDialer, incoming};
use keel_store::applied::Applied;
use keel_store::config::{self, Invocation};
use keel_store::node::Member;
use keel_store::raft::Replica;
use keel_store::raft::log_store::LogDisk;
use keel_store::seams::{Bugs, Seams, SplitMix64, WallClock};
use keel_store::storage::memory::MemoryBackend;
use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// Client port of every member.
pub const CLIENT_PORT: u16 = 2379;
/// Peer port of every member.
pub const PEER_PORT: u16 = 2380;

/// A member's disk, outliving its incarnations.
#[derive(Clone)]
pub struct Disk {
    /// The state machine's backend.
    pub backend: MemoryBackend,
    /// The Raft log's bytes (syncs take simulated time; a crash may tear the unsynced tail).
    pub log: SimLogDisk,
    /// The member's lease clock (it drifts under the drift fault).
    pub clock: Arc<DriftClock>,
    /// Snapshot files (real files; a run stays below the snapshot threshold).
    pub dir: PathBuf,
}

impl Disk {
    /// Lose what was not synced, as a power cut would; the Raft log bytes lost.
    pub fn crash(&self) -> usize {
        self.backend.crash();
        self.log.crash()
    }
}

/// A member's lease clock: simulated time plus an offset that grows while the clock runs fast
/// (rate > 1) or shrinks while it runs slow, so leases see clock drift. The harness sets the
/// rate from outside the host, at a simulated instant.
#[derive(Default)]
pub struct DriftClock {
    // (simulated time of the last rate change, offset then in seconds, rate since)
    inner: std::sync::Mutex<(std::time::Duration, f64, f64)>,
}

impl DriftClock {
    /// A clock that runs true.
    pub fn new() -> DriftClock {
        DriftClock { inner: std::sync::Mutex::new((std::time::Duration::ZERO, 0.0, 1.0)) }
    }

    fn offset_at(state: &(std::time::Duration, f64, f64), at: std::time::Duration) -> f64 {
        let (anchor, offset, rate) = *state;
        offset + at.saturating_sub(anchor).as_secs_f64() * (rate - 1.0)
    }

    /// From simulated time `at` on, run at `rate` (1.0: true).
    pub fn set_rate(&self, rate: f64, at: std::time::Duration) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let offset = Self::offset_at(&s, at);
        *s = (at, offset, rate);
    }
}

impl keel_store::seams::LeaseClock for DriftClock {
    fn now(&self) -> tokio::time::Instant {
        let real = tokio::time::Instant::now();
        let at = turmoil::sim_elapsed().unwrap_or_default();
        let offset = Self::offset_at(&self.inner.lock().unwrap_or_else(|p| p.into_inner()), at);
        if offset >= 0.0 {
            real + std::time::Duration::from_secs_f64(offset)
        } else {
            real.checked_sub(std::time::Duration::from_secs_f64(-offset)).unwrap_or(real)
        }
    }
}

/// Wall-clock time of the simulation.
struct SimClock;

impl WallClock for SimClock {
    fn unix_secs(&self) -> u64 {
        turmoil::since_epoch().map_or(0, |d| d.as_secs())
    }
}

/// What the harness can see of a running member (for the Raft invariants).
#[derive(Clone)]
pub struct Running {
    /// What it has applied.
    pub applied: Arc<Applied>,
    /// Replication.
    pub replica: Arc<Replica>,
}

/// One member slot: its name, address, disk and the handle of its current incarnation.
pub struct Slot {
    /// Host name (`m1`, `m2`, …).
    pub name: String,
    /// Simulated IP.
    pub ip: IpAddr,
    /// Disk.
    pub disk: Disk,
    /// The running incarnation, if any (set by the host once started, cleared on crash).
    pub running: Rc<RefCell<Option<Running>>>,
    /// Incarnations started so far.
    pub incarnations: Rc<Cell<u64>>,
    /// Removed from the cluster (and stopped): faults leave it down, liveness leaves it out.
    pub removed: Cell<bool>,
    /// The member may start (the spare waits until it has been added).
    pub go: Rc<Cell<bool>>,
}

/// How a member is started.
#[derive(Clone)]
pub struct MemberSpec {
    /// Host name.
    pub name: String,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-state`.
    pub state: &'static str,
    /// Simulated IP.
    pub ip: IpAddr,
    /// Seed for the member's randomness (mixed with the incarnation).
    pub seed: u64,
    /// Bugs switched on.
    pub bugs: Bugs,
}

fn member_args(spec: &MemberSpec, dir: &std::path::Path) -> Vec<String> {
    let ip = spec.ip;
    [
        "--name",
        &spec.name,
        "--data-dir",
        &dir.display().to_string(),
        "--listen-client-urls",
        &format!("http://0.0.0.0:{CLIENT_PORT}"),
        "--advertise-client-urls",
        &format!("http://{ip}:{CLIENT_PORT}"),
        "--listen-peer-urls",
        &format!("http://0.0.0.0:{PEER_PORT}"),
        "--initial-advertise-peer-urls",
        &format!("http://{ip}:{PEER_PORT}"),
        "--initial-cluster",
        &spec.initial_cluster,
        "--initial-cluster-state",
        spec.state,
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        "--snapshot-count",
        "100000",
        "--experimental-watch-progress-notify-interval",
        "1s",
        "--logger",
        "capnslog",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The host software of one member: start it on its disk, serve peers, and once published,
/// clients. Called again by turmoil on every restart.
pub async fn run_member(
    spec: MemberSpec,
    disk: Disk,
    running: Rc<RefCell<Option<Running>>>,
    incarnation: u64,
    go: Rc<Cell<bool>>,
) -> turmoil::Result {
    while !go.get() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let args = member_args(&spec, &disk.dir);
    let cfg = match config::parse(&args, &[]).map_err(|e| e.to_string())? {
        (Invocation::Run(cfg), _) => cfg,
        _ => return Err("member flags did not describe a member".into()),
    };
    let mut mix = SplitMix64(spec.seed ^ incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let seams = Seams {
        rng: Box::new(SplitMix64(keel_store::seams::Rng::next_u64(&mut mix))),
        dialer: Arc::new(SimDialer),
        clock: Arc::new(SimClock),
        bugs: spec.bugs,
        lease_clock: disk.clock.clone(),
    };
    let log: Arc<dyn LogDisk> = Arc::new(disk.log.clone());
    let member = Member::start(&cfg, Arc::new(disk.backend.clone()), log, &disk.dir, seams).await.map_err(|e| e.to_string())?;
    *running.borrow_mut() = Some(Running { applied: member.applied.clone(), replica: member.replica.clone() });
    let peers = member.serve_peers(incoming(PEER_PORT).await?);
    tokio::spawn(async move {
        if let Err(e) = peers.await {
            tracing_error(&e.to_string());
        }
    });
    member.wait_published().await;
    member.serve(incoming(CLIENT_PORT).await?, futures::future::pending()).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn tracing_error(msg: &str) {
    eprintln!("peer server stopped: {msg}");
}
