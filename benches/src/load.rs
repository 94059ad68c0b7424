//! Workloads of the load generator. Every workload speaks the etcd v3 gRPC API only, so the same
//! run can target etcd or Keel.
//!
//! Its Txns come from `keel_etcd::txn` (the shapes the apiserver sends), but it keeps raw tonic
//! clients on its own connections instead of `keel_etcd::Client`: a run spreads `--conns`
//! separate HTTP/2 connections over the endpoints and adds an auth token to every request,
//! and measuring the store means nothing may sit between the client loop and the wire.

use crate::report::{RunResult, process_cpu_secs};
use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Adds the auth token (from `--user`) to every request; does nothing without one.
#[derive(Clone)]
pub struct AddToken(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

/// A connection whose requests carry the run's token.
pub type Chan = InterceptedService<Channel, AddToken>;

/// Which operations to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Puts of random keys over the key space.
    Put,
    /// Linearizable point gets.
    Range,
    /// Serializable point gets.
    RangeSerializable,
    /// Prefix ranges over `--prefix-keys` keys.
    RangePrefix,
    /// Kubernetes-style optimistic update: Txn(mod_revision == last) put, else read.
    Txn,
    /// `--watchers` watchers on one prefix, one writer; latency from put acknowledgement to
    /// event delivery.
    Watch,
    /// Lease grant, one keep-alive, revoke.
    Lease,
    /// `--read-ratio` linearizable gets, the rest puts.
    Mixed,
    /// Puts of distinct keys `k/0`, `k/1`, … in order (fills the store; use with `--total`).
    Fill,
}

/// How to run.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadConfig {
    /// etcd endpoints (host:port), comma-separated; clients are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// gRPC connections shared by the clients.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// Run for this many seconds (ignored when --total is set).
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Run this many operations instead of a duration.
    #[arg(long)]
    pub total: Option<u64>,
    /// Watchers for the watch workload.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Keys under the prefix for range-prefix.
    #[arg(long, default_value_t = 100)]
    pub prefix_keys: u64,
    /// Share of reads in the mixed workload.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// `user:password` to authenticate as (auth on); every request carries the token.
    #[arg(long)]
    pub user: Option<String>,
}

async fn channels(cfg: &LoadConfig) -> anyhow::Result<Vec<Chan>> {
    let mut raw = Vec::new();
    for i in 0..cfg.conns.max(1) {
        let ep = &cfg.endpoints[i % cfg.endpoints.len()];
        let ch = Endpoint::from_shared(format!("http://{ep}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {ep}"))?;
        raw.push(ch);
    }
    let token = match &cfg.user {
        Some(u) => {
            let (name, password) = u.split_once(':').context("--user wants user:password")?;
            let req = AuthenticateRequest { name: name.into(), password: password.into() };
            let mut auth = keel_proto::etcdserverpb::auth_client::AuthClient::new(raw[0].clone());
            let token = auth.authenticate(req).await.context("authenticating")?.into_inner().token;
            Some(token.parse().context("token is not ASCII")?)
        }
        None => None,
    };
    Ok(raw.into_iter().map(|ch| InterceptedService::new(ch, AddToken(token.clone()))).collect())
}

/// A fast deterministic generator per client (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn key(prefix: &str, n: u64, size: usize) -> Bytes {
    let digits = size.saturating_sub(prefix.len()).max(1);
    Bytes::from(format!("{prefix}{n:0digits$}"))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// When the measured phase ends.
#[derive(Clone)]
struct Stop {
    deadline: Option<Instant>,
    remaining: Arc<AtomicU64>,
    /// The next key of the fill workload.
    next_key: Arc<AtomicU64>,
}

impl Stop {
    fn new(cfg: &LoadConfig) -> Stop {
        match cfg.total {
            Some(n) => Stop { deadline: None, remaining: Arc::new(AtomicU64::new(n)), next_key: Default::default() },
            None => Stop {
                deadline: Some(Instant::now() + Duration::from_secs_f64(cfg.duration_secs)),
                remaining: Arc::new(AtomicU64::new(u64::MAX)),
                next_key: Default::default(),
            },
        }
    }
    /// Claim one more operation, or learn the run is over.
    fn next(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        self.remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1)).is_ok()
    }
}

/// Write `n` keys under `prefix` with many clients (not measured).
async fn preload(chans: &[Chan], prefix: &str, n: u64, cfg: &LoadConfig) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let value = Bytes::from(vec![b'v'; cfg.value_size]);
    let mut tasks = Vec::new();
    for c in 0..cfg.clients.clamp(1, 64) {
        let mut kv = KvClient::new(chans[c % chans.len()].clone());
        let (next, value, prefix, key_size) = (next.clone(), value.clone(), prefix.to_string(), cfg.key_size);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, tonic::Status>(());
                }
                kv.put(PutRequest { key: key(&prefix, i, key_size), value: value.clone(), ..Default::default() }).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Run one workload and measure it.
pub async fn run(workload: Workload, cfg: &LoadConfig) -> anyhow::Result<RunResult> {
    let chans = channels(cfg).await?;
    match workload {
        Workload::Range | Workload::RangeSerializable | Workload::Mixed | Workload::Txn => {
            preload(&chans, "k/", cfg.keyspace, cfg).await?;
        }
        Workload::RangePrefix => preload(&chans, "p/", cfg.prefix_keys, cfg).await?,
        _ => {}
    }
    if workload == Workload::Watch {
        return run_watch(cfg, &chans).await;
    }
    let stop = Stop::new(cfg);
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let ch = chans[c % chans.len()].clone();
        let (stop, errors, cfg) = (stop.clone(), errors.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move { client_loop(workload, c, ch, &cfg, stop, errors).await }));
    }
    let mut hist = histogram();
    for t in tasks {
        hist.add(t.await?).context("merging histograms")?;
    }
    let elapsed = start.elapsed();
    Ok(RunResult {
        workload: format!("{workload:?}").to_lowercase(),
        clients: cfg.clients,
        conns: chans.len(),
        ops: hist.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latency_us: hist,
        generator_cpu_secs: process_cpu_secs() - cpu0,
    })
}

async fn client_loop(workload: Workload, c: usize, ch: Chan, cfg: &LoadConfig, stop: Stop, errors: Arc<AtomicU64>) -> Histogram<u64> {
    let mut hist = histogram();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut kv = KvClient::new(ch.clone());
    let mut lease = LeaseClient::new(ch);
    let value = Bytes::from(vec![b'v'; cfg.value_size]);
    // The txn workload updates keys this client owns, remembering each key's mod revision.
    let mut known_rev: HashMap<u64, i64> = HashMap::new();
    while stop.next() {
        let t0 = Instant::now();
        let ok = match workload {
            Workload::Put => kv
                .put(PutRequest { key: key("k/", rng.next() % cfg.keyspace, cfg.key_size), value: value.clone(), ..Default::default() })
                .await
                .is_ok(),
            Workload::Range | Workload::RangeSerializable => {
                let serializable = workload == Workload::RangeSerializable;
                let req = RangeRequest { key: key("k/", rng.next() % cfg.keyspace, cfg.key_size), serializable, ..Default::default() };
                kv.range(req).await.is_ok()
            }
            Workload::RangePrefix => kv
                .range(RangeRequest { key: Bytes::from_static(b"p/"), range_end: Bytes::from_static(b"p0"), ..Default::default() })
                .await
                .is_ok(),
            Workload::Mixed => {
                let k = key("k/", rng.next() % cfg.keyspace, cfg.key_size);
                if (rng.next() % 10_000) as f64 / 10_000.0 < cfg.read_ratio {
                    kv.range(RangeRequest { key: k, ..Default::default() }).await.is_ok()
                } else {
                    kv.put(PutRequest { key: k, value: value.clone(), ..Default::default() }).await.is_ok()
                }
            }
            Workload::Txn => {
                let n = (rng.next() % (cfg.keyspace / cfg.clients as u64).max(1)) * cfg.clients as u64 + c as u64;
                let k = key("k/", n % cfg.keyspace, cfg.key_size);
                let rev = *known_rev.get(&n).unwrap_or(&0);
                let txn = keel_etcd::txn::put_if(&k, value.clone(), rev, 0);
                match kv.txn(txn).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        let new_rev = match keel_etcd::txn::outcome(r) {
                            keel_etcd::Guarded::Done(rev) => rev,
                            keel_etcd::Guarded::Failed(current) => current.map_or(0, |kv| kv.mod_revision),
                        };
                        known_rev.insert(n, new_rev);
                        true
                    }
                    Err(_) => false,
                }
            }
            Workload::Lease => lease_once(&mut lease).await.is_ok(),
            Workload::Fill => {
                let n = stop.next_key.fetch_add(1, Ordering::Relaxed);
                kv.put(PutRequest { key: key("k/", n, cfg.key_size), value: value.clone(), ..Default::default() }).await.is_ok()
            }
            Workload::Watch => unreachable!("watch has its own driver"),
        };
        if ok {
            let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    hist
}

async fn lease_once(lease: &mut LeaseClient<Chan>) -> Result<(), tonic::Status> {
    let id = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await?.into_inner().id;
    let mut replies = lease.lease_keep_alive(tokio_stream::once(LeaseKeepAliveRequest { id })).await?.into_inner();
    replies.message().await?;
    lease.lease_revoke(LeaseRevokeRequest { id }).await?;
    Ok(())
}

/// Watchers spread over the connections, one writer; each delivered event is one operation and
/// its latency runs from the put's acknowledgement to delivery (0 when it arrives first).
async fn run_watch(cfg: &LoadConfig, chans: &[Chan]) -> anyhow::Result<RunResult> {
    let acked: Arc<Mutex<HashMap<i64, Instant>>> = Default::default();
    let mut watchers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(cfg.watchers.max(1));
    for w in 0..cfg.watchers {
        let mut client = WatchClient::new(chans[w % chans.len()].clone());
        let (acked, ready_tx) = (acked.clone(), ready_tx.clone());
        watchers.push(tokio::spawn(async move {
            let create = WatchCreateRequest { key: Bytes::from_static(b"w/"), range_end: Bytes::from_static(b"w0"), ..Default::default() };
            let req = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
            let mut hist = histogram();
            let Ok(resp) = client.watch(tokio_stream::once(req).chain(tokio_stream::pending())).await else { return hist };
            let mut stream = resp.into_inner();
            let _ = stream.message().await; // created
            let _ = ready_tx.send(()).await;
            while let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
                let now = Instant::now();
                for e in r.events {
                    let rev = e.kv.map_or(0, |kv| kv.mod_revision);
                    let ack = acked.lock().unwrap_or_else(|p| p.into_inner()).get(&rev).copied();
                    let lat = ack.map_or(0, |a| now.saturating_duration_since(a).as_micros() as u64);
                    let _ = hist.record(lat.max(1));
                }
            }
            hist
        }));
    }
    drop(ready_tx);
    // Start writing once every watcher is created (or has given up).
    for _ in 0..cfg.watchers {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let stop = Stop::new(cfg);
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let mut kv = KvClient::new(chans[0].clone());
    let value = Bytes::from(vec![b'v'; cfg.value_size]);
    let mut errors = 0;
    let mut i = 0u64;
    while stop.next() {
        match kv.put(PutRequest { key: key("w/", i % cfg.keyspace, cfg.key_size), value: value.clone(), ..Default::default() }).await {
            Ok(r) => {
                let rev = r.into_inner().header.map_or(0, |h| h.revision);
                acked.lock().unwrap_or_else(|p| p.into_inner()).insert(rev, Instant::now());
            }
            Err(_) => errors += 1,
        }
        i += 1;
    }
    let mut hist = histogram();
    for w in watchers {
        hist.add(w.await?).context("merging histograms")?;
    }
    let elapsed = start.elapsed();
    Ok(RunResult {
        workload: "watch".into(),
        clients: cfg.watchers,
        conns: chans.len(),
        ops: hist.len(),
        errors,
        elapsed,
        latency_us: hist,
        generator_cpu_secs: process_cpu_secs() - cpu0,
    })
}
