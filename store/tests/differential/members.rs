//! Membership changes sent to one server (a single voting member) and its answers as a
//! transcript comparable between etcd and Keel: member IDs, the member's own name and URLs
//! and the header's IDs replaced by placeholders.
//!
//! The new members are learners (they never start; a learner leaves the quorum as it is), and
//! etcd allows one learner, so while one is in the cluster a well-formed URL is answered "too
//! many learner members" and a malformed one "given member URLs are invalid".

use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::transport::Channel;

/// Peer URLs etcd's `types.NewURLs` takes or refuses, each tried in a MemberAdd.
pub const PROBE_URLS: &[&str] = &[
    "",
    "foo",
    "127.0.0.1:7001",
    "ftp://127.0.0.1:7001",
    "http://127.0.0.1:7001/",
    "http://127.0.0.1:7001/x",
    "http://127.0.0.1",
    "http://127.0.0.1:",
    "http://127.0.0.1:x",
    "http://a:b:7001",
    "http://[::1]:7001",
    "http://[::1]",
    "http://[::1:7001",
    " http://127.0.0.1:7002 ",
    "HTTP://127.0.0.1:7003",
    "unix://x:7004",
    "unixs://x:7005",
    "http://a b:7006",
    "http://127.0.0.1:7007?x=1",
    "http://127.0.0.1:7008#f",
    "http://u@127.0.0.1:7009",
    "http:127.0.0.1:7010",
    "http://127.0.0.1:7011\n",
    "http://127.0.0.1:70x2",
    "http://%41:7013",
    "http://localhost:7014",
    "https://example.com:7015",
];

/// The member's own ID, name and URLs, and the learner's ID, replaced by placeholders.
struct Names(Vec<(String, &'static str)>);

impl Names {
    fn apply(&self, text: String) -> String {
        self.0.iter().fold(text, |t, (from, to)| t.replace(from.as_str(), to))
    }
}

/// A response with its member list in one order (etcd sorts by ID, and IDs differ between
/// the sides): this member first.
trait Members: std::fmt::Debug {
    fn members(&mut self) -> &mut Vec<Member>;
}

macro_rules! members {
    ($($t:ty),*) => { $(impl Members for $t { fn members(&mut self) -> &mut Vec<Member> { &mut self.members } })* };
}
members!(MemberAddResponse, MemberUpdateResponse, MemberRemoveResponse, MemberPromoteResponse, MemberListResponse);

fn text<T: Members>(mut r: T, me: u64) -> String {
    r.members().sort_by_key(|m| (m.id != me, m.is_learner));
    format!("{r:?}")
}

fn outcome<T: Members>(r: Result<tonic::Response<T>, tonic::Status>, me: u64) -> String {
    match r {
        Ok(r) => text(r.into_inner(), me),
        Err(s) => format!("error {:?}: {}", s.code(), s.message()),
    }
}

/// Header IDs and terms are cleared in the text (each side has its own).
fn clear_header(text: String) -> String {
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("header: Some(ResponseHeader {") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find("})").map_or(tail.len(), |e| e + 2);
        out.push_str("header");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Run the membership script against the server at `url`.
pub async fn transcript(url: &str) -> Vec<String> {
    let ch = Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect");
    let mut c = ClusterClient::new(ch);
    let me = c.member_list(MemberListRequest::default()).await.expect("member list").into_inner().members;
    let me = me.first().expect("one member").clone();
    let mut names = Names(vec![(me.id.to_string(), "SELF_ID"), (me.name.clone(), "SELF_NAME")]);
    names.0.extend(me.peer_ur_ls.iter().map(|u| (u.clone(), "SELF_PEER")));
    names.0.extend(me.client_ur_ls.iter().map(|u| (u.clone(), "SELF_CLIENT")));
    let mut out = Vec::new();
    let mut log = |what: String, answer: String, names: &Names| out.push(clear_header(names.apply(format!("{what}: {answer}"))));

    let add = |urls: &[&str]| MemberAddRequest { peer_ur_ls: urls.iter().map(|u| u.to_string()).collect(), is_learner: true };
    let first = c.member_add(add(&["http://127.0.0.1:7000"])).await.expect("add a learner").into_inner();
    let learner = first.member.as_ref().expect("the added member").id;
    assert_ne!(learner, 1234, "the unknown ID");
    names.0.insert(0, (learner.to_string(), "LEARNER_ID"));
    log("add learner".into(), text(first, me.id), &names);
    for u in PROBE_URLS {
        log(format!("add {u:?}"), outcome(c.member_add(add(&[u])).await, me.id), &names);
    }
    log("add no URLs".into(), outcome(c.member_add(add(&[])).await, me.id), &names);
    log("add own URL".into(), outcome(c.member_add(add(&[&me.peer_ur_ls[0]])).await, me.id), &names);
    let update = |id: u64, urls: &[&str]| -> MemberUpdateRequest {
        MemberUpdateRequest { id, peer_ur_ls: urls.iter().map(|u| u.to_string()).collect() }
    };
    // Not malformed URLs: etcd takes them and panics applying them (MustNewURLs).
    for u in ["http://127.0.0.1:7100", "http://127.0.0.1:7000", &me.peer_ur_ls[0]] {
        // etcd 3.4 answers (and records) an updated learner as a voting member (it replaces
        // the member's Raft attributes, learner flag and all); Keel keeps it a learner.
        let answer = c.member_update(update(learner, &[u])).await.map(|mut r| {
            r.get_mut().members.iter_mut().filter(|m| m.id == learner).for_each(|m| m.is_learner = true);
            r
        });
        log(format!("update learner {u:?}"), outcome(answer, me.id), &names);
    }
    log("update unknown".into(), outcome(c.member_update(update(1234, &["http://127.0.0.1:7200"])).await, me.id), &names);
    log("promote learner".into(), outcome(c.member_promote(MemberPromoteRequest { id: learner }).await, me.id), &names);
    log("promote self".into(), outcome(c.member_promote(MemberPromoteRequest { id: me.id }).await, me.id), &names);
    log("promote unknown".into(), outcome(c.member_promote(MemberPromoteRequest { id: 1234 }).await, me.id), &names);
    log("remove learner".into(), outcome(c.member_remove(MemberRemoveRequest { id: learner }).await, me.id), &names);
    log("remove learner again".into(), outcome(c.member_remove(MemberRemoveRequest { id: learner }).await, me.id), &names);
    log("update removed".into(), outcome(c.member_update(update(learner, &["http://127.0.0.1:7300"])).await, me.id), &names);
    log("promote removed".into(), outcome(c.member_promote(MemberPromoteRequest { id: learner }).await, me.id), &names);
    log("remove unknown".into(), outcome(c.member_remove(MemberRemoveRequest { id: 1234 }).await, me.id), &names);
    log("list".into(), outcome(c.member_list(MemberListRequest::default()).await, me.id), &names);
    out
}

/// What etcd cannot be asked: MemberUpdate with malformed peer URLs (etcd 3.4 takes them and
/// panics applying them, in `types.MustNewURLs`). Keel refuses them as MemberAdd does; the
/// answers, one per URL list.
pub async fn malformed_updates(url: &str) -> Vec<String> {
    let ch = Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect");
    let mut c = ClusterClient::new(ch);
    let me = c.member_list(MemberListRequest::default()).await.expect("member list").into_inner().members[0].id;
    let mut out = Vec::new();
    for urls in [vec![], vec![""], vec!["foo"], vec!["http://127.0.0.1:7000/"], vec!["http://127.0.0.1:7000", "ftp://a:1"]] {
        let req = MemberUpdateRequest { id: me, peer_ur_ls: urls.iter().map(|u| u.to_string()).collect() };
        out.push(outcome(c.member_update(req).await, me));
    }
    out
}

/// Remove a learner and add its peer URLs again at once: within the same second the new ID
/// is the removed one (it hashes the URLs and the second), which etcd refuses for good (as
/// "member not found"). A re-add that lands in the next second gets another ID and is
/// taken; it is removed and the round tried again. The refusal's text.
pub async fn readd_removed(url: &str) -> String {
    let ch = Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect");
    let mut c = ClusterClient::new(ch);
    let add = || MemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:7400".into()], is_learner: true };
    let mut id = c.member_add(add()).await.expect("add a learner").into_inner().member.expect("member").id;
    for _ in 0..20 {
        c.member_remove(MemberRemoveRequest { id }).await.expect("remove the learner");
        match c.member_add(add()).await {
            Ok(r) => {
                let again = r.into_inner().member.expect("member").id;
                assert_ne!(again, id, "the removed member's ID was admitted again");
                id = again;
            }
            Err(s) => return format!("error {:?}: {}", s.code(), s.message()),
        }
    }
    panic!("20 re-adds, each in another second")
}
