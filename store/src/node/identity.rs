//! Identity, like etcd's: a member of a new cluster derives its ID (and the cluster's) from
//! `--initial-cluster` and `--initial-cluster-token`; a member joining an existing cluster asks
//! the members listed there for the ID that `MemberAdd` gave its peer URLs; both are stored on
//! first start and read back afterwards, so a restart needs no cluster flags.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::mvcc::codec;
use crate::raft::network::Peers;
use crate::raft::types::PeerInfo;
use crate::storage::{Backend, WriteBatch};
use crate::types::{ClusterId, MemberId};
use keel_proto::etcdserverpb::Member as EtcdMember;
use keel_proto::keelpeerpb::MembersRequest;
use std::collections::BTreeMap;
use std::time::Duration;

const META_MEMBER_ID: &[u8] = b"m/member_id";
const META_CLUSTER_ID: &[u8] = b"m/cluster_id";

/// FNV-1a, for IDs derived from configuration (stable across restarts and builds).
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn meta(backend: &dyn Backend, key: &[u8]) -> Result<Option<i64>> {
    Ok(backend.get(key)?.and_then(|v| codec::decode_i64(&v)))
}

/// The members of a new cluster, from `--initial-cluster` (name → peer URLs), with their IDs.
fn initial_members(cfg: &Config) -> BTreeMap<MemberId, PeerInfo> {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, url) in &cfg.initial_cluster {
        by_name.entry(name).or_default().push(url.clone());
    }
    by_name
        .into_values()
        .map(|mut urls| {
            urls.sort();
            let id = fnv64(&[&urls.join(","), &cfg.initial_cluster_token]);
            // Name and client URLs are published by each member once it runs (until then it is
            // "unstarted", as in etcd); every member must start from the very same membership.
            (MemberId(id), PeerInfo { name: String::new(), peer_urls: urls, client_urls: Vec::new() })
        })
        .collect()
}

/// How this start relates to the cluster.
pub enum Start {
    /// The data dir already belongs to a member.
    Restart,
    /// First start of a member of a new cluster.
    New(BTreeMap<MemberId, PeerInfo>),
    /// First start of a member added to a running cluster.
    Join,
}

/// Work out this member's and the cluster's IDs (stored in the backend from the first start).
pub async fn identify(cfg: &Config, backend: &dyn Backend, peers: &Peers) -> Result<(MemberId, ClusterId, Start)> {
    if let (Some(m), Some(c)) = (meta(backend, META_MEMBER_ID)?, meta(backend, META_CLUSTER_ID)?) {
        return Ok((MemberId(m as u64), ClusterId(c as u64), Start::Restart));
    }
    let mut own = cfg.initial_advertise_peer_urls.clone();
    own.sort();
    let (member_id, cluster_id, start) = if cfg.initial_cluster_state == "existing" {
        let (m, c) = ask_cluster(cfg, &own, peers).await?;
        (MemberId(m), ClusterId(c), Start::Join)
    } else {
        let members = initial_members(cfg);
        let mut mine: Vec<String> = cfg.initial_cluster.iter().filter(|(n, _)| *n == cfg.name).map(|(_, u)| u.clone()).collect();
        mine.sort();
        let Some((&id, info)) = members.iter().find(|(_, i)| !mine.is_empty() && i.peer_urls == mine) else {
            return Err(Error::InvalidArgument(format!("couldn't find local name {:?} in the initial cluster configuration", cfg.name)));
        };
        if info.peer_urls != own {
            return Err(Error::InvalidArgument(format!(
                "--initial-cluster has {}={} but --initial-advertise-peer-urls has {}",
                cfg.name,
                info.peer_urls.join(","),
                own.join(",")
            )));
        }
        let mut all: Vec<String> = cfg.initial_cluster.iter().map(|(n, u)| format!("{n}={u}")).collect();
        all.sort();
        let cluster = fnv64(&[&all.join(","), &cfg.initial_cluster_token, "cluster"]);
        (id, ClusterId(cluster), Start::New(members))
    };
    let mut first = WriteBatch::default();
    first.put(META_MEMBER_ID.to_vec(), codec::encode_i64(member_id.0 as i64));
    first.put(META_CLUSTER_ID.to_vec(), codec::encode_i64(cluster_id.0 as i64));
    backend.write(first)?;
    backend.sync().await?;
    Ok((member_id, cluster_id, start))
}

/// How long a joining member keeps asking for its ID: a member that answers may not have
/// applied the `member add` yet (it lags, or is cut off), so one "not a member" is not final.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// A joining member asks the members named in `--initial-cluster` for its ID, until one that
/// knows it answers or [`JOIN_WAIT`] passes.
async fn ask_cluster(cfg: &Config, own: &[String], peers: &Peers) -> Result<(u64, u64)> {
    let deadline = tokio::time::Instant::now() + JOIN_WAIT;
    loop {
        let mut last = String::from("no other member is listed in --initial-cluster");
        let mut unknown = false;
        for (_, url) in cfg.initial_cluster.iter().filter(|(_, u)| !own.contains(u)) {
            let Ok(mut client) = peers.client(url) else { continue };
            match tokio::time::timeout(Duration::from_secs(2), client.members(MembersRequest {})).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    let found = r.members.iter().find(|m: &&EtcdMember| {
                        let mut urls = m.peer_ur_ls.clone();
                        urls.sort();
                        urls == own
                    });
                    match found {
                        Some(m) => return Ok((m.id, r.cluster_id)),
                        None => unknown = true,
                    }
                }
                Ok(Err(s)) => last = format!("{url}: {}", s.message()),
                Err(_) => last = format!("{url}: no answer"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::InvalidArgument(if unknown {
                format!("the cluster has no member with peer URLs {}; add it first (etcdctl member add)", own.join(","))
            } else {
                format!("could not reach the cluster to join it: {last}")
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
