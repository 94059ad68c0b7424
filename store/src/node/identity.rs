//! Identity, like etcd's: a member of a new cluster derives its ID (and the cluster's) from
//! `--initial-cluster` and `--initial-cluster-token` exactly as etcd does (`membership.NewMember`
//! and `RaftCluster.genID`), so the same flags give etcd's IDs; a member joining an existing cluster asks
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

/// etcd's member ID: SHA-1 over the sorted peer URLs and the cluster token, concatenated.
pub fn etcd_member_id(peer_urls: &[String], token: &str) -> MemberId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b: Vec<u8> = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    MemberId(super::sha1::id(&b))
}

/// etcd's ID for a member `MemberAdd` adds (`membership.NewMember("", urls, "", &now)`): SHA-1
/// over the sorted peer URLs, an empty cluster name and the Unix second in decimal.
pub fn etcd_added_member_id(peer_urls: &[String], unix_secs: u64) -> MemberId {
    etcd_member_id(peer_urls, &unix_secs.to_string())
}

/// etcd's cluster ID: SHA-1 over the sorted member IDs, 8 big-endian bytes each.
pub fn etcd_cluster_id(members: impl IntoIterator<Item = MemberId>) -> ClusterId {
    let mut ids: Vec<u64> = members.into_iter().map(|m| m.0).collect();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    ClusterId(super::sha1::id(&b))
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
            let id = etcd_member_id(&urls, &cfg.initial_cluster_token).0;
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
        let cluster = etcd_cluster_id(members.keys().copied());
        (id, cluster, Start::New(members))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// IDs printed by etcd 3.4.23 for the same flags.
    #[test]
    fn ids_are_etcds_for_the_same_flags() {
        // `etcd` with no flags: default=http://localhost:2380, token etcd-cluster.
        let m = etcd_member_id(&["http://localhost:2380".into()], "etcd-cluster");
        assert_eq!(format!("{:x}", m.0), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", etcd_cluster_id([m]).0), "cdf818194e3a8c32");
    }

    /// `etcdctl member add x --learner --peer-urls=http://127.0.0.1:1,http://10.0.0.1:2` against
    /// etcd 3.4.23 at Unix second 1796633564 answered ID 1832407099250055022.
    #[test]
    fn added_member_ids_are_etcds_for_the_same_second() {
        let urls = ["http://127.0.0.1:1".to_string(), "http://10.0.0.1:2".to_string()];
        assert_eq!(etcd_added_member_id(&urls, 1796633564).0, 1832407099250055022);
        assert_ne!(etcd_added_member_id(&urls, 1796633563).0, 1832407099250055022);
    }
}
