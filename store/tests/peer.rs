//! The peer port (2380) against what no member sends: malformed Raft messages get
//! `InvalidArgument`, a stale leader's appends are refused with the member's higher vote,
//! undecodable forwarded writes are refused, one by one, and the member keeps serving clients.

mod common;

use common::*;
use futures::StreamExt;
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};
use keel_proto::keelpeerpb::forward_result::Outcome;
use keel_proto::keelpeerpb::peer_client::PeerClient;
use keel_proto::keelpeerpb::{ForwardRequest, ForwardResponse, RaftRequest};
use keel_store::raft::types::typ;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

async fn peer_client(m: &Member) -> PeerClient<Channel> {
    let ch = Endpoint::from_shared(format!("http://{}", m.peer)).expect("peer URL").connect().await.expect("connect to the peer port");
    PeerClient::new(ch)
}

fn garbage() -> RaftRequest {
    RaftRequest { meta: b"not json".to_vec().into(), entries: vec![b"\xff".to_vec().into()] }
}

/// An append from a leader of term 0: every member has a higher vote.
fn stale_append() -> RaftRequest {
    let vote = typ::Vote::new(0, keel_store::types::MemberId(7));
    let meta = serde_json::to_vec(&(vote, None::<typ::LogId>, None::<typ::LogId>)).expect("json");
    RaftRequest { meta: meta.into(), entries: vec![] }
}

async fn still_serves(m: &Member) {
    let mut kv = m.kv().await;
    kv.put(PutRequest { key: b("after"), value: b("ok"), ..Default::default() }).await.expect("put after the bad peer traffic");
    let got = kv.range(RangeRequest { key: b("after"), ..Default::default() }).await.expect("range").into_inner();
    assert_eq!(got.kvs.len(), 1);
}

#[tokio::test]
async fn malformed_appends_are_refused_one_at_a_time_and_in_a_stream() {
    let m = Member::start(&[]);
    let mut peer = peer_client(&m).await;

    let e = peer.append_entries(garbage()).await.expect_err("garbage refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let mut answers = peer.append_stream(futures::stream::iter(vec![garbage()])).await.expect("stream opens").into_inner();
    let e = answers.message().await.expect_err("garbage in a stream refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(answers.next().await.is_none(), "the stream ends at its first bad request");

    still_serves(&m).await;
}

#[tokio::test]
async fn a_stale_leaders_appends_are_answered_with_the_higher_vote_and_end_the_stream() {
    let m = Member::start(&[]);
    let mut peer = peer_client(&m).await;

    let one = peer.append_entries(stale_append()).await.expect("answered").into_inner();
    let text = String::from_utf8_lossy(&one.meta).to_string();
    assert!(text.contains("HigherVote"), "{text}");

    let requests = futures::stream::iter(vec![stale_append(), stale_append()]);
    let mut answers = peer.append_stream(requests).await.expect("stream opens").into_inner();
    let first = answers.message().await.expect("an answer").expect("one answer");
    let text = String::from_utf8_lossy(&first.meta).to_string();
    assert!(text.contains("HigherVote"), "{text}");
    assert!(answers.next().await.is_none(), "a refused append ends the stream");

    still_serves(&m).await;
}

fn refused(answer: &ForwardResponse) -> Vec<i32> {
    answer
        .results
        .iter()
        .map(|r| match &r.outcome {
            Some(Outcome::Failure(f)) => f.code,
            other => panic!("expected a refusal, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn undecodable_forwarded_writes_are_refused_unary_and_on_the_stream() {
    let m = Member::start(&[]);
    let mut peer = peer_client(&m).await;
    let junk = || bytes::Bytes::from_static(b"\xff\xff not a command");

    let one = peer.forward(ForwardRequest { commands: vec![junk(), junk()], id: 0 }).await.expect("answered").into_inner();
    assert_eq!(refused(&one), vec![Code::InvalidArgument as i32; 2]);

    let batches = vec![ForwardRequest { commands: vec![junk()], id: 7 }, ForwardRequest { commands: vec![junk(), junk()], id: 9 }];
    let mut answers = peer.forward_stream(futures::stream::iter(batches)).await.expect("stream opens").into_inner();
    let mut got = Vec::new();
    while let Some(answer) = answers.message().await.expect("answers") {
        got.push((answer.id, refused(&answer)));
    }
    got.sort();
    let invalid = Code::InvalidArgument as i32;
    assert_eq!(got, vec![(7, vec![invalid]), (9, vec![invalid, invalid])], "each batch answered once, by its id");

    still_serves(&m).await;
}
