//! Membership changes during faults: an admin client adds a member as a learner, the harness
//! starts it (joining an existing cluster), the admin promotes it once it has caught up, then
//! removes one of the original members, which the harness stops. Each step is retried through
//! timeouts and leader changes the way an operator would: by looking at the member list.

use crate::net::channel;
use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest};
use keel_store::seams::{Rng, SplitMix64};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// What the admin asks of the harness, and what it did.
#[derive(Debug, Default)]
pub struct Changes {
    /// The new member was added: start its host.
    pub start_new: bool,
    /// This original member was removed: stop its host.
    pub removed: Option<usize>,
    /// The admin is finished (or gave up).
    pub done: bool,
    /// What happened, for the record.
    pub steps: Vec<String>,
}

/// Shared between the admin client and the harness.
pub type Signals = Rc<RefCell<Changes>>;

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The admin: add `new_peer_url` as a learner, promote it, remove one of `originals`.
pub async fn admin(
    signals: Signals,
    members: Vec<SocketAddr>,
    originals: Vec<String>,
    new_peer_url: String,
    seed: u64,
    start: Duration,
    give_up: Duration,
) -> turmoil::Result {
    let mut rng = SplitMix64(seed);
    tokio::time::sleep(start).await;
    let step = |s: String| signals.borrow_mut().steps.push(format!("{} ms: {s}", now().as_millis()));
    let mut at = (rng.next_u64() % members.len() as u64) as usize;
    let mut client = || {
        at = (at + 1) % members.len();
        ClusterClient::new(channel(members[at]))
    };
    // Add, as a learner. A timed-out add may have happened: the member list tells.
    let new_id = loop {
        if now() > give_up {
            step("gave up adding".into());
            signals.borrow_mut().done = true;
            return Ok(());
        }
        let mut c = client();
        if let Ok(list) = c.member_list(MemberListRequest { linearizable: true }).await
            && let Some(m) = list.into_inner().members.iter().find(|m| m.peer_ur_ls.contains(&new_peer_url))
        {
            break m.id;
        }
        match c.member_add(MemberAddRequest { peer_ur_ls: vec![new_peer_url.clone()], is_learner: true }).await {
            Ok(r) => break r.into_inner().member.map_or(0, |m| m.id),
            Err(e) => step(format!("add: {}", e.message())),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    step(format!("added learner {new_id:x}"));
    signals.borrow_mut().start_new = true;
    // Promote once it has caught up ("not in sync" until then).
    loop {
        if now() > give_up {
            step("gave up promoting".into());
            signals.borrow_mut().done = true;
            return Ok(());
        }
        let mut c = client();
        match c.member_promote(MemberPromoteRequest { id: new_id }).await {
            Ok(_) => break,
            Err(e) if e.message() == "etcdserver: can only promote a learner member" => {
                step(format!("promote: {}", e.message()));
                break;
            }
            Err(e) => step(format!("promote: {}", e.message())),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    step(format!("promoted {new_id:x}"));
    // Remove one of the original members.
    let victim = (rng.next_u64() % originals.len() as u64) as usize;
    loop {
        if now() > give_up {
            step("gave up removing".into());
            signals.borrow_mut().done = true;
            return Ok(());
        }
        let mut c = client();
        let Ok(list) = c.member_list(MemberListRequest { linearizable: true }).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let Some(id) = list.into_inner().members.iter().find(|m| m.peer_ur_ls.contains(&originals[victim])).map(|m| m.id) else {
            break; // already gone
        };
        match c.member_remove(MemberRemoveRequest { id }).await {
            Ok(_) => break,
            Err(e) => step(format!("remove: {}", e.message())),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    step(format!("removed member {}", victim + 1));
    let mut s = signals.borrow_mut();
    s.removed = Some(victim);
    s.done = true;
    Ok(())
}
