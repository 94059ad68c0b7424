//! etcd's Cluster operations as Raft membership changes (joint consensus inside openraft).
//! Changes are made by the leader; other members pass them on over the peer protocol.
//!
//! - MemberAdd: the new member joins as a learner (openraft replicates to it once it runs); a
//!   voting member is then made a voter at once, as etcd does.
//! - MemberPromote: only a learner whose log is within 90 % of the leader's (etcd's rule).
//! - MemberRemove / MemberUpdate: remove the node / replace its peer URLs. A removed ID is
//!   remembered in the applied state (`StateMachine::removed`) and never admitted again.
//! - Publish: a started member sets its name and client URLs.

use super::Replica;
use super::types::{PeerInfo, typ};
use crate::error::{Error, Result};
use crate::types::MemberId;
use keel_proto::etcdserverpb::Member;
use openraft::ChangeMembers;
use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use std::collections::{BTreeMap, BTreeSet};

/// etcd promotes a learner only when its log reaches this share of the leader's.
const READY_PERCENT: f64 = 0.9;

fn err(e: RaftError<super::types::TypeConfig, ClientWriteError<super::types::TypeConfig>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Error::NotLeader,
        RaftError::APIError(e) => {
            tracing::warn!(error = %e, "membership change refused");
            Error::UnhealthyCluster
        }
        RaftError::Fatal(e) => Error::raft_stopped(e),
    }
}

/// How long a membership change waits for one in progress to finish.
const CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Replica {
    /// Propose a membership change, waiting (a while) for one already in progress to commit:
    /// openraft takes one change at a time, and members publish themselves as they start.
    async fn change(&self, changes: ChangeMembers<MemberId, PeerInfo>) -> Result<()> {
        let deadline = tokio::time::Instant::now() + CHANGE_WAIT;
        loop {
            match self.raft.change_membership(changes.clone(), false).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await
                }
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// The membership this member has applied (committed), as openraft stores it.
    fn applied_membership(&self) -> typ::StoredMembership {
        let sm = self.applied.read_state();
        super::state_machine::decode_membership(sm.membership.as_deref()).unwrap_or_else(|e| {
            // The member cannot have started on such a record (Raft reads it first); say so.
            tracing::error!(error = %e, "the applied membership does not decode");
            Default::default()
        })
    }

    /// Every member of the applied membership, in ID order (etcd lists its applied view too).
    pub fn members(&self) -> Vec<Member> {
        let stored = self.applied_membership();
        let membership = stored.membership();
        let voters: BTreeSet<MemberId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, info)| Member {
                id: id.0,
                name: info.name.clone(),
                peer_ur_ls: info.peer_urls.clone(),
                client_ur_ls: info.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect()
    }

    fn node(&self, id: MemberId) -> Option<PeerInfo> {
        self.metrics().membership_config.membership().get_node(&id).cloned()
    }

    /// Cluster.MemberAdd on the leader; returns the new member.
    pub async fn add_member(&self, new_id: MemberId, peer_urls: Vec<String>, learner: bool) -> Result<Member> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        // etcd's ValidateConfigurationChange, in its order. A removed ID is etcd's
        // ErrIDRemoved, which its gRPC layer answers as "member not found".
        if self.applied.read_state().removed.contains(&new_id.0) {
            return Err(Error::MemberNotFound);
        }
        let members = self.members();
        if members.iter().any(|m| m.id == new_id.0) {
            return Err(Error::MemberIdExists);
        }
        if members.iter().any(|m| m.peer_ur_ls.iter().any(|u| peer_urls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        if learner && members.iter().any(|m| m.is_learner) {
            return Err(Error::TooManyLearners);
        }
        let info = PeerInfo { name: String::new(), peer_urls: peer_urls.clone(), client_urls: Vec::new() };
        self.change(ChangeMembers::AddNodes(BTreeMap::from([(new_id, info)]))).await?;
        if !learner {
            self.change(ChangeMembers::AddVoterIds(BTreeSet::from([new_id]))).await?;
        }
        Ok(Member { id: new_id.0, name: String::new(), peer_ur_ls: peer_urls, client_ur_ls: Vec::new(), is_learner: learner })
    }

    /// Cluster.MemberRemove on the leader.
    pub async fn remove_member(&self, id: MemberId) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        let members = self.members();
        let Some(m) = members.iter().find(|m| m.id == id.0) else { return Err(Error::MemberNotFound) };
        if !m.is_learner {
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id]))).await?;
        }
        if self.node(id).is_some() {
            self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await?;
        }
        Ok(())
    }

    /// Cluster.MemberUpdate on the leader: new peer URLs.
    pub async fn update_member(&self, id: MemberId, peer_urls: Vec<String>) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        let Some(mut info) = self.node(id) else { return Err(Error::MemberNotFound) };
        if self.members().iter().any(|m| m.id != id.0 && m.peer_ur_ls.iter().any(|u| peer_urls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        info.peer_urls = peer_urls;
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(id, info)]))).await?;
        Ok(())
    }

    /// Cluster.MemberPromote on the leader.
    pub async fn promote_member(&self, id: MemberId) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        let members = self.members();
        let Some(m) = members.iter().find(|m| m.id == id.0) else { return Err(Error::MemberNotFound) };
        if !m.is_learner {
            return Err(Error::MemberNotLearner);
        }
        let metrics = self.metrics();
        let leader_last = metrics.last_log_index.unwrap_or(0) as f64;
        let matched = metrics.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |l| l.index) as f64;
        if matched < leader_last * READY_PERCENT {
            return Err(Error::LearnerNotReady);
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await?;
        Ok(())
    }

    /// A member's own name and client URLs, set by the leader.
    pub async fn publish_member(&self, id: MemberId, name: String, client_urls: Vec<String>) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        let Some(mut info) = self.node(id) else { return Err(Error::MemberNotFound) };
        if info.name == name && info.client_urls == client_urls {
            return Ok(());
        }
        info.name = name;
        info.client_urls = client_urls;
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(id, info)]))).await?;
        Ok(())
    }

    /// Cluster.MoveLeader on the leader: hand leadership to `target` and wait until it leads.
    pub async fn move_leader(&self, target: MemberId, deadline: tokio::time::Instant) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        let members = self.members();
        match members.iter().find(|m| m.id == target.0) {
            None => return Err(Error::MemberNotFound),
            Some(m) if m.is_learner || target == self.id => return Err(Error::BadLeaderTransferee),
            Some(_) => {}
        }
        self.raft.trigger().transfer_leader(target).await.map_err(Error::raft_stopped)?;
        while self.metrics().current_leader != Some(target) {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }
}
