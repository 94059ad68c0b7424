//! A watch that outlives its stream: [`Resumable`] watches a key range from a revision and,
//! when the stream breaks (member gone, connection reset, watch canceled), watches again from
//! the revision after the last one it delivered, so its consumer sees every change once and in
//! order. Only compaction ends it: the revision it needs is gone, and it says so with
//! [`WatchItem::Compacted`] (the consumer lists again and starts a new watch).
//!
//! States: `Idle` (no stream; the next poll opens one from `next`), `Open` (forwarding the
//! stream), `Done` (compacted; nothing more). Between failed attempts it waits
//! [`Resumable::RETRY`], on `tokio::time` (turmoil drives it in the simulation).

use crate::client::{Client, WatchStream};
use futures::{Stream, StreamExt};
use keel_proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use keel_proto::mvccpb::Event;
use std::time::Duration;

/// What a resumable watch delivers.
#[derive(Debug)]
pub enum WatchItem {
    /// Changes, in revision order (with previous values when asked for).
    Events(Vec<Event>),
    /// Everything up to this revision has been delivered (a progress notification).
    Progress(i64),
    /// The store compacted past the revision the watch needed (at least this revision).
    Compacted(i64),
}

enum State {
    Idle { wait: bool },
    Open(Box<WatchStream>),
    Done,
}

/// A watch from a revision that resumes after breaks (see the module doc).
pub struct Resumable {
    client: Client,
    create: WatchCreateRequest,
    next: i64,
}

impl Resumable {
    /// Pause between attempts to open the stream again.
    pub const RETRY: Duration = Duration::from_millis(200);

    /// A watch of what `create` names (key, range_end, filters, prev_kv, progress_notify) from
    /// `create.start_revision`.
    pub fn new(client: Client, create: WatchCreateRequest) -> Resumable {
        let next = create.start_revision;
        Resumable { client, create, next }
    }

    /// The revision the watch will resume from.
    pub fn next_revision(&self) -> i64 {
        self.next
    }

    /// The items, forever (until compaction, or until dropped).
    pub fn into_stream(self) -> impl Stream<Item = WatchItem> + Send {
        futures::stream::unfold((self, State::Idle { wait: false }), |(mut me, mut state)| async move {
            loop {
                match state {
                    State::Done => return None,
                    State::Idle { wait } => {
                        if wait {
                            tokio::time::sleep(Resumable::RETRY).await;
                        }
                        let create = WatchCreateRequest { start_revision: me.next, ..me.create.clone() };
                        state = match me.client.watch(create).await {
                            Ok(s) => State::Open(Box::new(s)),
                            Err(e) => {
                                tracing::debug!("watch from {}: {e}; again", me.next);
                                State::Idle { wait: true }
                            }
                        };
                    }
                    State::Open(mut s) => match s.next().await {
                        Some(Ok(resp)) => {
                            if resp.compact_revision > 0 {
                                return Some((WatchItem::Compacted(resp.compact_revision), (me, State::Done)));
                            }
                            if resp.canceled {
                                state = State::Idle { wait: true };
                                continue;
                            }
                            match me.step(resp) {
                                Some(item) => return Some((item, (me, State::Open(s)))),
                                None => state = State::Open(s),
                            }
                        }
                        Some(Err(_)) | None => state = State::Idle { wait: true },
                    },
                }
            }
        })
    }

    /// The item one response brings, moving `next` past it.
    fn step(&mut self, resp: WatchResponse) -> Option<WatchItem> {
        if resp.events.is_empty() {
            // The creation notice carries the current revision but promises nothing.
            let h = resp.header.filter(|_| !resp.created)?;
            self.next = self.next.max(h.revision + 1);
            return Some(WatchItem::Progress(h.revision));
        }
        let last = resp.events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).max().unwrap_or(0);
        self.next = self.next.max(last + 1);
        Some(WatchItem::Events(resp.events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::etcdserverpb::ResponseHeader;
    use keel_proto::mvccpb::KeyValue;

    fn resumable(from: i64) -> Resumable {
        let client = match Client::connect(&["127.0.0.1:1".into()], &crate::Config::default(), std::sync::Arc::new(crate::Tcp)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        Resumable::new(client, WatchCreateRequest { start_revision: from, ..Default::default() })
    }

    fn header(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision, ..Default::default() })
    }

    #[tokio::test]
    async fn the_resume_point_moves_past_delivered_events_and_progress_only() {
        let mut w = resumable(5);
        assert!(w.step(WatchResponse { created: true, header: header(40), ..Default::default() }).is_none());
        assert_eq!(w.next_revision(), 5, "a creation notice promises nothing");
        let ev = |rev| Event { kv: Some(KeyValue { mod_revision: rev, ..Default::default() }), ..Default::default() };
        let item = w.step(WatchResponse { events: vec![ev(7), ev(9)], header: header(9), ..Default::default() });
        assert!(matches!(item, Some(WatchItem::Events(ref e)) if e.len() == 2));
        assert_eq!(w.next_revision(), 10);
        assert!(matches!(w.step(WatchResponse { header: header(12), ..Default::default() }), Some(WatchItem::Progress(12))));
        assert_eq!(w.next_revision(), 13);
        w.step(WatchResponse { header: header(11), ..Default::default() });
        assert_eq!(w.next_revision(), 13, "never backwards");
    }
}
