//! The simulated clients: KV traffic, Kubernetes-style traffic, kube-apiserver's compaction
//! loop, the lease keeper, and the liveness check run once faults stop (the watchers are in
//! [`crate::watchers`]). Each records what it saw in the [`Recorder`].

use crate::history::{Request, Response};
use crate::nemesis::Nemesis;
use crate::net::channel;
use crate::record::{LeaseLife, ListRead, Recorder, StaleRead};
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::request_op::Request as Op;
use keel_proto::etcdserverpb::response_op::Response as OpResp;
use keel_proto::etcdserverpb::*;
use keel_store::seams::{Rng, SplitMix64};
use std::net::SocketAddr;
use std::time::Duration;
use tonic::transport::Channel;

pub(crate) fn trace(msg: &str) {
    if std::env::var_os("KEEL_SIM_TRACE").is_some() {
        eprintln!("{} ms: {msg}", now().as_millis());
    }
}

/// Counts a workload client as running while it lives (the liveness check waits for none).
pub(crate) struct Active(Recorder);

impl Active {
    pub(crate) fn enter(rec: &Recorder) -> Active {
        rec.borrow_mut().active_clients += 1;
        Active(rec.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.try_borrow_mut() {
            r.active_clients = r.active_clients.saturating_sub(1);
        }
    }
}

/// Sim time now.
pub(crate) fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// A client's view of the cluster: the members' addresses and the one it talks to now.
pub struct Conn {
    members: Vec<SocketAddr>,
    at: usize,
    pub(crate) ch: Channel,
    /// Seeded randomness of this client.
    pub rng: SplitMix64,
}

impl Conn {
    /// A client starting at a random member.
    pub fn new(members: Vec<SocketAddr>, seed: u64) -> Conn {
        let mut rng = SplitMix64(seed);
        let at = (rng.next_u64() % members.len() as u64) as usize;
        let ch = channel(members[at]);
        Conn { members, at, ch, rng }
    }

    /// Move to another member (after an error).
    pub fn switch(&mut self) {
        self.at = (self.at + 1 + (self.rng.next_u64() % (self.members.len() as u64)) as usize) % self.members.len();
        self.ch = channel(self.members[self.at]);
    }

    /// A number below `n`.
    pub fn pick(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.ch.clone())
    }
}

fn compare_mod(key: &str, rev: i64) -> keel_proto::etcdserverpb::Compare {
    keel_proto::etcdserverpb::Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec().into(),
        target_union: Some(TargetUnion::ModRevision(rev)),
        ..Default::default()
    }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() })) }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn first_kv(r: &RangeResponse) -> (Option<String>, i64) {
    r.kvs.first().map_or((None, 0), |kv| (Some(text(&kv.value)), kv.mod_revision))
}

/// Run `req` against the cluster; the store's answer, or `None` when the call failed (then the
/// operation may or may not have happened).
pub async fn execute(conn: &Conn, req: &Request) -> Option<Response> {
    let mut kv = conn.kv();
    let rev = |h: &Option<ResponseHeader>| h.as_ref().map_or(0, |h| h.revision);
    match req {
        Request::Get { key } => {
            let r = kv.range(RangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() }).await.ok()?.into_inner();
            let (value, mod_revision) = first_kv(&r);
            Some(Response::Get { value, mod_revision, revision: rev(&r.header) })
        }
        Request::Put { key, value } | Request::PutWithLease { key, value, .. } => {
            let lease = if let Request::PutWithLease { lease, .. } = req { *lease } else { 0 };
            let r = kv
                .put(PutRequest {
                    key: key.as_bytes().to_vec().into(),
                    value: value.as_bytes().to_vec().into(),
                    lease,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            Some(Response::Put { revision: rev(&r.header) })
        }
        Request::Delete { key } => {
            let r =
                kv.delete_range(DeleteRangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() }).await.ok()?.into_inner();
            Some(Response::Delete { deleted: r.deleted, revision: rev(&r.header) })
        }
        Request::MultiPut { kvs } => {
            let success = kvs
                .iter()
                .map(|(k, v)| RequestOp {
                    request: Some(Op::RequestPut(PutRequest {
                        key: k.as_bytes().to_vec().into(),
                        value: v.as_bytes().to_vec().into(),
                        ..Default::default()
                    })),
                })
                .collect();
            let r = kv.txn(TxnRequest { success, ..Default::default() }).await.ok()?.into_inner();
            Some(Response::Put { revision: rev(&r.header) })
        }
        Request::CompareAndPut { key, expected_mod, .. } | Request::CompareAndDelete { key, expected_mod } => {
            let write = match req {
                Request::CompareAndPut { .. } => Op::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec().into(),
                    value: value_of(req).as_bytes().to_vec().into(),
                    ..Default::default()
                }),
                _ => Op::RequestDeleteRange(DeleteRangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() }),
            };
            let r = kv
                .txn(TxnRequest {
                    compare: vec![compare_mod(key, *expected_mod)],
                    success: vec![RequestOp { request: Some(write) }],
                    failure: vec![range_op(key)],
                })
                .await
                .ok()?
                .into_inner();
            let (value, mod_revision) = if r.succeeded {
                (None, 0)
            } else {
                match r.responses.first().and_then(|o| o.response.as_ref()) {
                    Some(OpResp::ResponseRange(range)) => first_kv(range),
                    _ => (None, 0),
                }
            };
            Some(Response::Txn { succeeded: r.succeeded, revision: rev(&r.header), value, mod_revision })
        }
        Request::LeaseRevoke { lease } => {
            let r = LeaseClient::new(conn.ch.clone()).lease_revoke(LeaseRevokeRequest { id: *lease }).await.ok()?.into_inner();
            Some(Response::Revoke { revision: rev(&r.header) })
        }
    }
}

fn value_of(req: &Request) -> &str {
    match req {
        Request::CompareAndPut { value, .. } => value,
        _ => "",
    }
}

/// Execute and record one operation.
async fn run_op(rec: &Recorder, client: u32, conn: &mut Conn, req: Request) -> Option<Response> {
    let call = rec.borrow_mut().tick();
    let resp = execute(conn, &req).await;
    trace(&format!("client {client} via {} tick {call}: {req:?} -> {resp:?}", conn.members[conn.at]));
    if resp.is_none() {
        conn.switch();
    }
    // A read that failed changed nothing and proves nothing: leave it out.
    if resp.is_some() || req.writes() {
        rec.borrow_mut().finish(client, call, req, resp.clone());
    }
    resp
}

/// What a workload client does until `stop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Gets (linearizable and serializable), puts, deletes, multi-put txns, lease puts and
    /// revokes over a few keys.
    Kv,
    /// Kubernetes-style: create-if-absent, read-then-update and read-then-delete on
    /// mod_revision, paged lists at a pinned revision.
    Kube,
}

/// Keys of the KV traffic: `k/0` … `k/4`.
pub const KV_KEYS: u64 = 5;
/// The prefix of the Kubernetes-style traffic's keys.
pub const KUBE_PREFIX: &str = "/registry/pods/default/";

/// One workload client.
pub async fn client(rec: Recorder, id: u32, members: Vec<SocketAddr>, seed: u64, traffic: Traffic, stop: Duration) -> turmoil::Result {
    let _active = Active::enter(&rec);
    let mut conn = Conn::new(members, seed);
    let mut n = 0u64;
    let mut lease: Option<(i64, bool)> = None; // (id, has keys)
    let mut leases = 0i64;
    while now() < stop {
        n += 1;
        let value = format!("c{id}-{n}");
        match traffic {
            Traffic::Kv => {
                let key = format!("k/{}", conn.pick(KV_KEYS));
                match conn.pick(100) {
                    0..25 => {
                        run_op(&rec, id, &mut conn, Request::Get { key }).await;
                    }
                    25..35 => serializable_get(&rec, &mut conn, key).await,
                    35..60 => {
                        run_op(&rec, id, &mut conn, Request::Put { key, value }).await;
                    }
                    60..65 => {
                        run_op(&rec, id, &mut conn, Request::Delete { key }).await;
                    }
                    65..78 => {
                        let other = format!("k/{}", (conn.pick(KV_KEYS - 1) + 1 + key[2..].parse::<u64>().unwrap_or(0)) % KV_KEYS);
                        run_op(&rec, id, &mut conn, Request::MultiPut { kvs: vec![(key, value.clone()), (other, value)] }).await;
                    }
                    78..92 => match lease {
                        Some((l, _)) => {
                            if run_op(&rec, id, &mut conn, Request::PutWithLease { key, value, lease: l }).await.is_some() {
                                lease = Some((l, true));
                            }
                        }
                        None => {
                            leases += 1;
                            let l = (i64::from(id) << 32) | leases;
                            let granted = LeaseClient::new(conn.ch.clone()).lease_grant(LeaseGrantRequest { ttl: 3600, id: l }).await;
                            match granted {
                                Ok(_) => lease = Some((l, false)),
                                Err(_) => conn.switch(),
                            }
                        }
                    },
                    _ => {
                        if let Some((l, _)) = lease.take() {
                            run_op(&rec, id, &mut conn, Request::LeaseRevoke { lease: l }).await;
                        }
                    }
                }
            }
            Traffic::Kube => {
                let key = format!("{KUBE_PREFIX}p{}", conn.pick(KV_KEYS));
                match conn.pick(100) {
                    0..30 => {
                        run_op(&rec, id, &mut conn, Request::CompareAndPut { key, expected_mod: 0, value }).await;
                    }
                    30..65 => {
                        if let Some(Response::Get { value: Some(_), mod_revision, .. }) =
                            run_op(&rec, id, &mut conn, Request::Get { key: key.clone() }).await
                        {
                            run_op(&rec, id, &mut conn, Request::CompareAndPut { key, expected_mod: mod_revision, value }).await;
                        }
                    }
                    65..80 => {
                        if let Some(Response::Get { value: Some(_), mod_revision, .. }) =
                            run_op(&rec, id, &mut conn, Request::Get { key: key.clone() }).await
                        {
                            run_op(&rec, id, &mut conn, Request::CompareAndDelete { key, expected_mod: mod_revision }).await;
                        }
                    }
                    _ => {
                        if let Some(l) = paged_list(&mut conn, KUBE_PREFIX, 2).await {
                            rec.borrow_mut().lists.push(l);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5 + conn.pick(45))).await;
    }
    Ok(())
}

async fn serializable_get(rec: &Recorder, conn: &mut Conn, key: String) {
    let req = RangeRequest { key: key.as_bytes().to_vec().into(), serializable: true, ..Default::default() };
    match conn.kv().range(req).await {
        Ok(r) => {
            let r = r.into_inner();
            let (value, mod_revision) = first_kv(&r);
            let revision = r.header.as_ref().map_or(0, |h| h.revision);
            rec.borrow_mut().stale_reads.push(StaleRead { key, value, mod_revision, revision });
        }
        Err(_) => conn.switch(),
    }
}

pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    keel_store::mvcc::prefix_end(prefix.as_bytes()).to_vec()
}

/// List `prefix` in pages of `limit` at the revision of the first page (Kubernetes' list with
/// limit and continue). `None` when a page failed (compacted, or the member was unreachable).
pub async fn paged_list(conn: &mut Conn, prefix: &str, limit: i64) -> Option<ListRead> {
    let end = prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut kvs = Vec::new();
    let mut pages = 0;
    loop {
        let req = RangeRequest { key: from.clone().into(), range_end: end.clone().into(), limit, revision, ..Default::default() };
        let r = match conn.kv().range(req).await {
            Ok(r) => r.into_inner(),
            Err(_) => {
                conn.switch();
                return None;
            }
        };
        pages += 1;
        if revision == 0 {
            revision = r.header.as_ref().map_or(0, |h| h.revision);
        }
        for kv in &r.kvs {
            kvs.push((text(&kv.key), text(&kv.value), kv.mod_revision));
        }
        match (r.more, r.kvs.last()) {
            (true, Some(last)) => {
                from = last.key.to_vec();
                from.push(0);
            }
            _ => return Some(ListRead { prefix: prefix.to_string(), revision, pages, kvs }),
        }
    }
}

/// The lease keeper: grant a lease (TTL 5 s), attach keys to it, keep it alive for 1–4 s, then
/// revoke it or stop and let it expire; again until `stop`. Its expiry is in the history as a
/// revoke that may happen any time after the grant (the model places it where the answers need
/// it); when it may *not* happen yet is recorded as the lease's `not_before`.
pub async fn lease_keeper(rec: Recorder, id: u32, members: Vec<SocketAddr>, seed: u64, stop: Duration) -> turmoil::Result {
    const TTL: i64 = 5;
    let _active = Active::enter(&rec);
    let mut conn = Conn::new(members, seed);
    let mut n = 0i64;
    while now() + Duration::from_secs(1) < stop {
        n += 1;
        let lease = (i64::from(id) << 32) | n;
        let granted_tick = rec.borrow_mut().tick();
        let sent = now();
        match LeaseClient::new(conn.ch.clone()).lease_grant(LeaseGrantRequest { ttl: TTL, id: lease }).await {
            Ok(_) => {}
            Err(_) => {
                // It may exist anyway; with no keys its expiry changes nothing.
                conn.switch();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let bound = |sent: Duration, ttl: i64| sent + Duration::from_secs_f64(ttl as f64 / Nemesis::MAX_DRIFT);
        let mut life = LeaseLife { lease, keys: Vec::new(), not_before: bound(sent, TTL), revoked_from: None };
        for k in 0..1 + conn.pick(2) {
            let key = format!("lease/{id}/{n}/{k}");
            let put = Request::PutWithLease { key: key.clone(), value: format!("l{id}-{n}-{k}"), lease };
            if run_op(&rec, id, &mut conn, put).await.is_some() {
                life.keys.push(key);
            }
        }
        let keep_until = (now() + Duration::from_millis(1000 + conn.pick(3000))).min(stop);
        while now() < keep_until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let sent = now();
            let answer = keep_alive_once(&conn, lease).await;
            trace(&format!("lease {lease:x} keepalive sent {} ms via {}: {answer:?}", sent.as_millis(), conn.members[conn.at]));
            match answer {
                Some(ttl) if ttl > 0 => life.not_before = life.not_before.max(bound(sent, ttl)),
                Some(_) => {
                    // Gone. Before it may end, that is an early end the keeper saw itself.
                    if now() < life.not_before {
                        rec.borrow_mut().early_ends.push((lease, now()));
                    }
                    break;
                }
                None => conn.switch(),
            }
        }
        if conn.pick(2) == 0 {
            life.revoked_from = Some(now());
            run_op(&rec, id, &mut conn, Request::LeaseRevoke { lease }).await;
        }
        {
            let mut r = rec.borrow_mut();
            let expiry = Request::LeaseRevoke { lease };
            r.history.push(crate::history::Operation { client: id, call: granted_tick, ret: None, request: expiry, response: None });
            r.leases.push(life);
        }
        let pause = Duration::from_millis(500 + conn.pick(2500));
        if now() + pause >= stop {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

/// One keepalive on a stream of its own: the TTL granted, or `None` when the call failed.
async fn keep_alive_once(conn: &Conn, lease: i64) -> Option<i64> {
    let req = futures::stream::iter([LeaseKeepAliveRequest { id: lease }]);
    let mut stream = LeaseClient::new(conn.ch.clone()).lease_keep_alive(req).await.ok()?.into_inner();
    let resp = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.ok()?.ok()??;
    Some(resp.ttl)
}

/// kube-apiserver's compaction loop: every `every`, bump `compact_rev_key` with a compare on
/// its mod revision, and on success compact to the revision seen at the tick before.
pub async fn compactor(rec: Recorder, id: u32, members: Vec<SocketAddr>, seed: u64, every: Duration, stop: Duration) -> turmoil::Result {
    let _active = Active::enter(&rec);
    let mut conn = Conn::new(members, seed);
    let key = "compact_rev_key".to_string();
    let (mut expected, mut previous, mut n) = (0i64, 0i64, 0u64);
    while now() + every < stop {
        tokio::time::sleep(every).await;
        n += 1;
        let req = Request::CompareAndPut { key: key.clone(), expected_mod: expected, value: format!("compact-{n}") };
        match run_op(&rec, id, &mut conn, req).await {
            Some(Response::Txn { succeeded: true, revision, .. }) => {
                // Never past what the reference watcher has seen: it judges everything else.
                let seen = rec.borrow().reference.links.iter().filter_map(crate::watchers::last_event).max().unwrap_or(0);
                let target = previous.min(seen + 1);
                if target > 1 {
                    let _ = conn.kv().compact(CompactionRequest { revision: target, physical: false }).await;
                }
                expected = revision;
                previous = revision;
            }
            Some(Response::Txn { succeeded: false, mod_revision, .. }) => expected = mod_revision,
            _ => {}
        }
    }
    Ok(())
}

/// How long one member's final history may take to read.
const FINAL_READ: Duration = Duration::from_secs(4);

/// Once faults have stopped: every member must serve a linearizable write within `deadline`,
/// and all members must then agree on the HashKV of the latest revision.
/// It starts once the harness hands it the members to check (`Recorded::liveness_members`);
/// hosts are all registered at the start, since one registered mid-run gets a clock that can
/// sit a millisecond off from run to run.
pub async fn liveness(rec: Recorder, id: u32, deadline: Duration) -> turmoil::Result {
    let members = loop {
        if let Some(m) = rec.borrow().liveness_members.clone() {
            break m;
        }
        if now() > deadline {
            rec.borrow_mut().liveness = Some(Err("the harness never started the liveness check".into()));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let verdict = check_liveness(&rec, id, &members, deadline).await;
    rec.borrow_mut().liveness = Some(verdict);
    // Each member's history, whatever the verdict: a member that lost acknowledged writes is
    // named by what its own history lacks.
    let upto = {
        let r = rec.borrow();
        r.history
            .ops
            .iter()
            .filter_map(|op| crate::lost_writes::acknowledged(op).map(|(_, rev)| rev))
            .max()
            .unwrap_or(0)
            .max(r.final_revision)
    };
    for addr in &members {
        let read = crate::watchers::final_history(*addr, upto, now() + FINAL_READ).await;
        let name = rec.borrow().member_names.get(addr).cloned().unwrap_or_else(|| addr.to_string());
        rec.borrow_mut().final_histories.push((name, read));
    }
    Ok(())
}

/// The voters' client addresses, from a linearizable member list through any of `members`.
async fn voters(members: &[SocketAddr], deadline: Duration) -> Result<Vec<SocketAddr>, String> {
    use keel_proto::etcdserverpb::cluster_client::ClusterClient;
    let mut last = String::new();
    loop {
        for addr in members {
            match ClusterClient::new(channel(*addr)).member_list(MemberListRequest { linearizable: true }).await {
                Ok(r) => {
                    return Ok(r
                        .into_inner()
                        .members
                        .iter()
                        .filter(|m| !m.is_learner)
                        .filter_map(|m| m.client_ur_ls.first()?.strip_prefix("http://")?.parse().ok())
                        .collect());
                }
                Err(e) => last = e.message().to_string(),
            }
        }
        if now() > deadline {
            return Err(format!("no member answered a linearizable member list: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn check_liveness(rec: &Recorder, id: u32, members: &[SocketAddr], deadline: Duration) -> Result<String, String> {
    // Every workload call has ended: nothing proposed before can land after the writes below.
    while rec.borrow().active_clients > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let members = &voters(members, deadline).await?;
    if members.is_empty() {
        return Err("the member list names no voter with a client URL".into());
    }
    let mut latest = 0;
    let mut attempt = 0;
    for (i, addr) in members.iter().enumerate() {
        let mut conn = Conn::new(vec![*addr], 0);
        loop {
            attempt += 1;
            let req = Request::Put { key: format!("liveness/{i}"), value: format!("live-{i}-{attempt}") };
            let call = rec.borrow_mut().tick();
            let resp = execute(&conn, &req).await;
            rec.borrow_mut().finish(id, call, req, resp.clone());
            if let Some(Response::Put { revision }) = resp {
                latest = latest.max(revision);
                break;
            }
            if now() > deadline {
                let put = PutRequest { key: b"liveness/why".to_vec().into(), ..Default::default() };
                let why = match conn.kv().put(put).await {
                    Ok(_) => "it answers now".to_string(),
                    Err(e) => format!("{:?}: {}", e.code(), e.message()),
                };
                return Err(format!("member {i} ({addr}) served no write before the deadline ({why})"));
            }
            conn = Conn::new(vec![*addr], 0);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    rec.borrow_mut().final_revision = latest;
    loop {
        let mut hashes = Vec::new();
        for addr in members {
            let r = MaintenanceClient::new(channel(*addr)).hash_kv(HashKvRequest { revision: latest }).await;
            hashes.push(r.map(|r| r.into_inner().hash).map_err(|e| e.message().to_string()));
        }
        if hashes.iter().all(|h| h.is_ok() && *h == hashes[0]) {
            return Ok(format!("all {} voters serve; HashKV at {latest} agrees", members.len()));
        }
        if now() > deadline {
            return Err(format!("HashKV at revision {latest} differs: {hashes:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
