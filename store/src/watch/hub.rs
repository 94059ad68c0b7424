//! [`WatchHub`]: the watchers of every stream, their sync state and their outboxes.

use crate::error::Error;
use crate::mvcc::KeyRange;
use crate::seams::Bugs;
use crate::types::{Revision, WatchId};
use bytes::Bytes;
use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use keel_proto::mvccpb::{Event, event::EventType};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Event-carrying responses a stream may have queued before its watchers fall back to history.
pub const OUTBOX_EVENT_RESPONSES_MAX: usize = 1024;
/// Responses of any kind a stream may have queued; a client that keeps asking without reading
/// past this is disconnected.
pub const OUTBOX_TOTAL_MAX: usize = 4 * OUTBOX_EVENT_RESPONSES_MAX;

/// The ID etcd uses for a progress response that speaks for every watcher of a stream.
pub const ALL_WATCHERS: WatchId = WatchId(-1);

/// A watch stream's ID, unique within the hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// One stream's queue of responses, drained by that stream's sender.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<WatchResponse>,
    event_responses: usize,
    wake: Arc<Notify>,
    /// Set when the stream must end (overflow); the sender closes it.
    closed: bool,
    next_watch_id: WatchId,
    unsynced: usize,
    progress_pending: bool,
    /// IDs of watches cancelled for compaction: etcd keeps them taken on the stream (a create
    /// with one is a duplicate) until the client cancels them, which it then answers.
    retired: std::collections::BTreeSet<WatchId>,
}

impl Outbox {
    fn has_room(&self) -> bool {
        self.event_responses < OUTBOX_EVENT_RESPONSES_MAX
    }
    fn push(&mut self, resp: WatchResponse) {
        if !resp.events.is_empty() {
            self.event_responses += 1;
        }
        self.queue.push_back(resp);
        if self.queue.len() > OUTBOX_TOTAL_MAX {
            self.closed = true;
        }
        self.wake.notify_one();
    }
}

/// One watcher.
#[derive(Clone, Debug)]
pub struct Watcher {
    /// Keys watched.
    pub range: KeyRange,
    /// Skip PUT events.
    pub no_put: bool,
    /// Skip DELETE events.
    pub no_delete: bool,
    /// Attach previous key-values.
    pub prev_kv: bool,
    /// Send periodic progress notifications.
    pub progress_notify: bool,
    /// Events below this revision are never sent (start revision in the future).
    pub min_rev: Revision,
    /// Next revision to read from history when unsynced.
    pub next_rev: Revision,
    /// True when fed by `notify`.
    pub synced: bool,
    /// True when an event was queued since the last progress tick.
    pub active: bool,
    /// The `watch_drops_without_prev_kv` bug: this watcher (created without prev_kv) misses
    /// the events of revisions divisible by 7.
    pub drops_sevenths: bool,
}

impl Watcher {
    /// The events of `events` this watcher should see, trimmed of `prev_kv` unless asked.
    pub fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| {
                let Some(kv) = &e.kv else { return false };
                let put = e.r#type == EventType::Put as i32;
                kv.mod_revision >= self.min_rev.0
                    && self.range.contains(&kv.key)
                    && !(put && self.no_put)
                    && (put || !self.no_delete)
                    && !(self.drops_sevenths && kv.mod_revision % 7 == 0)
            })
            // Copies only what the watcher gets (the fields are reference-counted `Bytes`).
            .map(|e| Event { r#type: e.r#type, kv: e.kv.clone(), prev_kv: if self.prev_kv { e.prev_kv.clone() } else { None } })
            .collect()
    }
}

/// What the syncer needs to catch one watcher up.
#[derive(Clone, Debug)]
pub struct Lagging {
    /// Stream.
    pub stream: StreamId,
    /// Watch ID.
    pub id: WatchId,
    /// The watcher as it was.
    pub watcher: Watcher,
}

#[derive(Default)]
struct Inner {
    rev: Revision,
    next_stream: StreamId,
    streams: HashMap<StreamId, Outbox>,
    watchers: BTreeMap<(StreamId, WatchId), Watcher>,
}

/// All watchers of the member.
#[derive(Default)]
pub struct WatchHub {
    inner: Mutex<Inner>,
    syncer_wake: Notify,
    /// Known bugs switched on by a simulation (none in the binary).
    bugs: Bugs,
}

/// A stream's registration: its ID and the signal its sender waits on.
pub struct StreamHandle {
    /// Stream ID.
    pub id: StreamId,
    /// Notified when the outbox has something.
    pub wake: Arc<Notify>,
}

fn header(rev: Revision) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision: rev.0, ..Default::default() })
}

/// etcd's answer to a watch create it refuses: created and canceled at once, ID -1.
fn refusal(rev: Revision, why: Error) -> WatchResponse {
    WatchResponse {
        header: header(rev),
        watch_id: ALL_WATCHERS.0,
        created: true,
        canceled: true,
        cancel_reason: why.to_string(),
        ..Default::default()
    }
}

impl WatchHub {
    /// A hub whose watchers start after revision `rev`.
    pub fn new(rev: Revision) -> Self {
        WatchHub::with_bugs(rev, Bugs::default())
    }

    /// [`WatchHub::new`], with known bugs switched on (the simulation proves its checkers).
    pub fn with_bugs(rev: Revision, bugs: Bugs) -> Self {
        let hub = WatchHub { bugs, ..WatchHub::default() };
        hub.lock().rev = rev;
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of watchers (for metrics).
    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Register a new stream.
    pub fn open_stream(&self) -> StreamHandle {
        let mut inner = self.lock();
        inner.next_stream.0 += 1;
        let id = inner.next_stream;
        let outbox = Outbox::default();
        let wake = outbox.wake.clone();
        inner.streams.insert(id, outbox);
        StreamHandle { id, wake }
    }

    /// Remove a stream and its watchers.
    pub fn close_stream(&self, stream: StreamId) {
        let mut inner = self.lock();
        inner.streams.remove(&stream);
        let ids: Vec<_> = inner.watchers.range((stream, WatchId(i64::MIN))..=(stream, WatchId(i64::MAX))).map(|(k, _)| *k).collect();
        for k in ids {
            inner.watchers.remove(&k);
        }
    }

    /// Take everything queued for a stream. `None` when the stream must end.
    pub fn drain(&self, stream: StreamId) -> Option<Vec<WatchResponse>> {
        let mut inner = self.lock();
        let outbox = inner.streams.get_mut(&stream)?;
        if outbox.closed {
            return None;
        }
        outbox.event_responses = 0;
        let out: Vec<_> = outbox.queue.drain(..).collect();
        // Room was made: lagging watchers of this stream can continue.
        if outbox.unsynced > 0 {
            self.syncer_wake.notify_one();
        }
        Some(out)
    }

    /// Create a watcher from a client's request; the "created" response (or the refusal) is
    /// queued on the stream.
    pub fn create(&self, stream: StreamId, req: &WatchCreateRequest) {
        let mut inner = self.lock();
        let rev = inner.rev;
        let Some(outbox) = inner.streams.get_mut(&stream) else { return };
        let key = if req.key.is_empty() { Bytes::from_static(b"\0") } else { req.key.clone() };
        let range = KeyRange::new(&key, &req.range_end);
        if matches!(&range, KeyRange::Span(k, e) if e.as_ref() <= k.as_ref()) {
            outbox.push(refusal(rev, Error::WatcherRangeEmpty));
            return;
        }
        let retired = outbox.retired.clone();
        let id = if req.watch_id != 0 {
            if inner.watchers.contains_key(&(stream, WatchId(req.watch_id))) || retired.contains(&WatchId(req.watch_id)) {
                if let Some(outbox) = inner.streams.get_mut(&stream) {
                    outbox.push(refusal(rev, Error::DuplicateWatchId));
                }
                return;
            }
            WatchId(req.watch_id)
        } else {
            let mut id = outbox.next_watch_id;
            while inner.watchers.contains_key(&(stream, id)) || retired.contains(&id) {
                id.0 += 1;
            }
            if let Some(outbox) = inner.streams.get_mut(&stream) {
                outbox.next_watch_id = WatchId(id.0 + 1);
            }
            id
        };
        // 0 means "from now"; a negative start is kept as it is: etcd reads no history for it,
        // and cancels it as compacted once anything was (the syncer's history read).
        let start = req.start_revision;
        let synced = start == 0 || start > rev.0;
        let watcher = Watcher {
            range,
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            min_rev: Revision(start.max(0)),
            next_rev: if synced { rev.next() } else { Revision(start) },
            synced,
            active: false,
            drops_sevenths: self.bugs.watch_drops_without_prev_kv && !req.prev_kv,
        };
        inner.watchers.insert((stream, id), watcher);
        let Some(outbox) = inner.streams.get_mut(&stream) else { return };
        outbox.push(WatchResponse { header: header(rev), watch_id: id.0, created: true, ..Default::default() });
        if !synced {
            outbox.unsynced += 1;
            self.syncer_wake.notify_one();
        }
    }

    /// Cancel a watcher at the client's request.
    pub fn cancel(&self, stream: StreamId, id: WatchId) {
        let mut inner = self.lock();
        let rev = inner.rev;
        let Some(w) = inner.watchers.remove(&(stream, id)) else {
            if let Some(outbox) = inner.streams.get_mut(&stream)
                && outbox.retired.remove(&id)
            {
                outbox.push(WatchResponse { header: header(rev), watch_id: id.0, canceled: true, ..Default::default() });
            }
            return;
        };
        if let Some(outbox) = inner.streams.get_mut(&stream) {
            if !w.synced {
                outbox.unsynced -= 1;
            }
            outbox.push(WatchResponse { header: header(rev), watch_id: id.0, canceled: true, ..Default::default() });
            Self::maybe_progress(outbox, rev);
        }
    }

    /// A client's progress request: answered once every watcher of the stream is synced.
    pub fn request_progress(&self, stream: StreamId) {
        let mut inner = self.lock();
        let rev = inner.rev;
        if let Some(outbox) = inner.streams.get_mut(&stream) {
            outbox.progress_pending = true;
            Self::maybe_progress(outbox, rev);
        }
    }

    fn maybe_progress(outbox: &mut Outbox, rev: Revision) {
        if outbox.progress_pending && outbox.unsynced == 0 {
            outbox.progress_pending = false;
            outbox.push(WatchResponse { header: header(rev), watch_id: ALL_WATCHERS.0, ..Default::default() });
        }
    }

    /// The writer's hand-off: `events` (revision order) are durable and `rev` is visible.
    /// `fill_prev` reads the previous key-values the writer left unread; it is called (without
    /// the hub's lock) only when a watcher that wants them is there to deliver to, and the
    /// check and the delivery then happen under one hold of the lock, so a watcher created
    /// meanwhile is not missed.
    pub fn notify(&self, mut events: Vec<Event>, rev: Revision, fill_prev: impl FnOnce(&mut [Event])) {
        let mut guard = self.lock();
        if !events.is_empty() && guard.watchers.values().any(|w| w.synced && w.prev_kv) {
            drop(guard);
            fill_prev(&mut events);
            guard = self.lock();
        }
        let inner = &mut *guard;
        inner.rev = rev;
        if events.is_empty() {
            return;
        }
        let first_rev = events.first().and_then(|e| e.kv.as_ref()).map_or(rev, |kv| Revision(kv.mod_revision));
        let mut lagging = false;
        for ((stream, id), w) in inner.watchers.iter_mut() {
            if !w.synced {
                continue;
            }
            let selected = w.select(&events);
            if selected.is_empty() {
                continue;
            }
            let Some(outbox) = inner.streams.get_mut(stream) else { continue };
            if outbox.has_room() {
                w.active = true;
                outbox.push(WatchResponse { header: header(rev), watch_id: id.0, events: selected, ..Default::default() });
            } else {
                w.synced = false;
                w.next_rev = first_rev;
                outbox.unsynced += 1;
                lagging = true;
            }
        }
        if lagging {
            self.syncer_wake.notify_one();
        }
    }

    /// The store jumped to `rev` without events (a snapshot was installed): every synced
    /// watcher catches up from history, from the revision after what it has seen.
    pub fn jump(&self, rev: Revision) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let from = inner.rev.next();
        inner.rev = rev;
        for ((stream, _), w) in inner.watchers.iter_mut() {
            if w.synced {
                w.synced = false;
                w.next_rev = from;
                if let Some(outbox) = inner.streams.get_mut(stream) {
                    outbox.unsynced += 1;
                }
            }
        }
        self.syncer_wake.notify_one();
    }

    /// Wait until the syncer may have work.
    pub async fn syncer_wait(&self) {
        self.syncer_wake.notified().await
    }

    /// Unsynced watchers whose stream has room, and the hub revision to catch up to.
    pub fn lagging(&self) -> (Vec<Lagging>, Revision) {
        let inner = self.lock();
        let list = inner
            .watchers
            .iter()
            .filter(|(_, w)| !w.synced)
            .filter(|((s, _), _)| inner.streams.get(s).is_some_and(|o| o.has_room()))
            .map(|((s, id), w)| Lagging { stream: *s, id: *id, watcher: w.clone() })
            .collect();
        (list, inner.rev)
    }

    /// The syncer's hand-back: `events` cover history up to `covered` for a lagging watcher.
    pub fn caught_up(&self, lag: &Lagging, events: &[Event], covered: Revision) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let rev = inner.rev;
        let Some(w) = inner.watchers.get_mut(&(lag.stream, lag.id)) else { return };
        if w.synced || w.next_rev != lag.watcher.next_rev {
            return;
        }
        let Some(outbox) = inner.streams.get_mut(&lag.stream) else { return };
        let selected = w.select(events);
        if !selected.is_empty() {
            w.active = true;
            outbox.push(WatchResponse { header: header(covered.max(rev)), watch_id: lag.id.0, events: selected, ..Default::default() });
        }
        w.next_rev = covered.next();
        if w.next_rev > rev {
            w.synced = true;
            w.next_rev = rev.next();
            outbox.unsynced -= 1;
            Self::maybe_progress(outbox, rev);
        }
    }

    /// A lagging watcher needs history below the compacted revision: cancel it, as etcd does,
    /// with the compacted revision so the client knows where history starts.
    pub fn compacted(&self, lag: &Lagging, compact_rev: Revision) {
        let mut inner = self.lock();
        let rev = inner.rev;
        let Some(w) = inner.watchers.get(&(lag.stream, lag.id)) else { return };
        if w.synced || w.next_rev != lag.watcher.next_rev {
            return;
        }
        inner.watchers.remove(&(lag.stream, lag.id));
        if let Some(outbox) = inner.streams.get_mut(&lag.stream) {
            outbox.unsynced -= 1;
            outbox.retired.insert(lag.id);
            outbox.push(WatchResponse {
                // etcd leaves the revision out of a compaction cancel.
                header: header(Revision(0)),
                watch_id: lag.id.0,
                canceled: true,
                compact_revision: compact_rev.0,
                // etcd says why in `compact_revision` alone: `cancel_reason` stays empty.
                ..Default::default()
            });
            Self::maybe_progress(outbox, rev);
        }
    }

    /// Periodic progress notification for quiet synced watchers that asked for it.
    pub fn progress_tick(&self) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let rev = inner.rev;
        for ((stream, id), w) in inner.watchers.iter_mut() {
            if !w.progress_notify || !w.synced {
                continue;
            }
            if std::mem::take(&mut w.active) {
                continue;
            }
            if let Some(outbox) = inner.streams.get_mut(stream) {
                outbox.push(WatchResponse { header: header(rev), watch_id: id.0, ..Default::default() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::mvccpb::KeyValue;

    fn put(key: &str, rev: i64) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue { key: Bytes::copy_from_slice(key.as_bytes()), mod_revision: rev, ..Default::default() }),
            prev_kv: None,
        }
    }

    fn watch(key: &str, start: i64) -> WatchCreateRequest {
        WatchCreateRequest { key: Bytes::copy_from_slice(key.as_bytes()), start_revision: start, ..Default::default() }
    }

    #[test]
    fn created_then_events_then_progress_in_order() {
        let hub = WatchHub::new(Revision(1));
        let s = hub.open_stream();
        hub.create(s.id, &watch("a", 0));
        hub.notify(vec![put("a", 2), put("b", 2)], Revision(2), |_| {});
        hub.request_progress(s.id);
        let out = hub.drain(s.id).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out[0].created);
        assert_eq!(out[1].events.len(), 1);
        assert_eq!(out[2].watch_id, ALL_WATCHERS.0);
        assert_eq!(out[2].header.as_ref().unwrap().revision, 2);
    }

    #[test]
    fn previous_values_are_read_only_when_a_watcher_wants_them() {
        let hub = WatchHub::new(Revision(1));
        let s = hub.open_stream();
        hub.create(s.id, &watch("a", 0));
        let filled = std::cell::Cell::new(0);
        let fill = |evs: &mut [Event]| {
            filled.set(filled.get() + 1);
            for e in evs {
                e.prev_kv = Some(KeyValue { value: Bytes::from_static(b"old"), ..Default::default() });
            }
        };
        hub.notify(vec![put("a", 2)], Revision(2), fill);
        assert_eq!(filled.get(), 0, "no watcher asked for previous values");
        hub.create(s.id, &WatchCreateRequest { prev_kv: true, ..watch("a", 0) });
        hub.notify(vec![put("a", 3)], Revision(3), fill);
        assert_eq!(filled.get(), 1);
        let out = hub.drain(s.id).unwrap();
        let prevs: Vec<_> = out.iter().flat_map(|r| r.events.iter().map(|e| e.prev_kv.is_some())).collect();
        assert_eq!(prevs, vec![false, false, true], "only the watcher that asked sees it");
    }

    #[test]
    fn a_full_outbox_makes_the_watcher_lag_instead_of_queueing() {
        let hub = WatchHub::new(Revision(1));
        let s = hub.open_stream();
        hub.create(s.id, &watch("a", 0));
        for r in 2..(2 + OUTBOX_EVENT_RESPONSES_MAX as i64 + 5) {
            hub.notify(vec![put("a", r)], Revision(r), |_| {});
        }
        hub.request_progress(s.id);
        let out = hub.drain(s.id).unwrap();
        // created + OUTBOX_EVENT_RESPONSES_MAX event responses; the progress waits for catch-up.
        assert_eq!(out.len(), 1 + OUTBOX_EVENT_RESPONSES_MAX);
        let (lag, rev) = hub.lagging();
        assert_eq!(lag.len(), 1);
        let first_missing = 2 + OUTBOX_EVENT_RESPONSES_MAX as i64;
        assert_eq!(lag[0].watcher.next_rev, Revision(first_missing));
        let history: Vec<_> = (first_missing..=rev.0).map(|r| put("a", r)).collect();
        hub.caught_up(&lag[0], &history, rev);
        let out = hub.drain(s.id).unwrap();
        assert_eq!(out[0].events.len(), 5);
        assert_eq!(out[1].watch_id, ALL_WATCHERS.0, "progress only after catch-up");
    }

    #[test]
    fn duplicate_client_watch_id_is_refused() {
        let hub = WatchHub::new(Revision(1));
        let s = hub.open_stream();
        let mut w = watch("a", 0);
        w.watch_id = 7;
        hub.create(s.id, &w);
        hub.create(s.id, &w);
        let out = hub.drain(s.id).unwrap();
        assert_eq!(out[0].watch_id, 7);
        assert!(out[1].canceled && out[1].created);
    }

    #[test]
    fn a_watch_cancelled_for_compaction_keeps_its_id_until_the_client_cancels_it() {
        let hub = WatchHub::new(Revision(10));
        let s = hub.open_stream();
        let w = WatchCreateRequest { watch_id: 7, ..watch("a", 2) };
        hub.create(s.id, &w);
        let (lag, _) = hub.lagging();
        hub.compacted(&lag[0], Revision(5));
        hub.create(s.id, &w);
        hub.create(s.id, &watch("a", 0)); // an automatic ID: 0
        hub.cancel(s.id, WatchId(7));
        hub.cancel(s.id, WatchId(7)); // gone now: no answer
        hub.create(s.id, &w);
        let out: Vec<_> = hub.drain(s.id).unwrap().into_iter().map(|r| (r.watch_id, r.created, r.canceled, r.compact_revision)).collect();
        assert_eq!(
            out,
            vec![
                (7, true, false, 0),
                (7, false, true, 5),
                (-1, true, true, 0),
                (0, true, false, 0),
                (7, false, true, 0),
                (7, true, false, 0)
            ]
        );
    }
}
