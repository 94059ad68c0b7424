//! The store's history, recorded by the harness itself: one keel-etcd watch of `/registry/`
//! from revision 1, started before the workload, resumed by [`keel_etcd::Resumable`] from the
//! revision after the last one delivered whenever a member dies under it. So the record is
//! every change in revision order without gaps, as long as the store has not compacted past
//! the resume point — which ends the watch and marks the record incomplete (the checkers must
//! not run on it).
//!
//! The recorder connects to the members from 127.0.0.1 on their client port: no partition the
//! harness makes (peer ports, a kubelet's cgroup) touches it.

use super::{Error, Result};
use crate::history::{Op, Revision, StoreEvent};
use futures::StreamExt;
use keel_etcd::WatchItem;
use keel_etcd::proto::etcdserverpb::WatchCreateRequest;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
struct Shared {
    events: Vec<StoreEvent>,
    // The highest revision known delivered (events or progress).
    through: i64,
    broken: Option<String>,
}

/// A running recorder.
pub struct Recorder {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

/// The prefix recorded.
pub const PREFIX: &str = "/registry/";

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    /// Starts watching `endpoints`; `started` is the run's time origin for [`StoreEvent::seen`].
    pub fn start(endpoints: &[String], started: Instant) -> Result<Recorder> {
        let client = keel_etcd::Client::connect(endpoints, &keel_etcd::Config::default(), Arc::new(keel_etcd::Tcp))
            .map_err(|e| Error::History(format!("connecting to {endpoints:?}: {e}")))?;
        let create = WatchCreateRequest {
            key: PREFIX.as_bytes().to_vec().into(),
            range_end: keel_etcd::prefix_end(PREFIX.as_bytes()).into(),
            start_revision: 1,
            progress_notify: true,
            ..Default::default()
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sink = shared.clone();
        let task = tokio::spawn(async move {
            let mut stream = Box::pin(keel_etcd::Resumable::new(client, create).into_stream());
            while let Some(item) = stream.next().await {
                let seen = started.elapsed();
                let mut s = lock(&sink);
                match item {
                    WatchItem::Events(events) => {
                        for e in events {
                            let Some(kv) = e.kv else { continue };
                            let op = if e.r#type == 1 { Op::Delete } else { Op::Put };
                            let object = (op == Op::Put).then(|| serde_json::from_slice(&kv.value).ok()).flatten();
                            s.through = s.through.max(kv.mod_revision);
                            s.events.push(StoreEvent {
                                revision: Revision(kv.mod_revision),
                                key: String::from_utf8_lossy(&kv.key).into_owned(),
                                op,
                                object,
                                seen,
                            });
                        }
                    }
                    WatchItem::Progress(r) => s.through = s.through.max(r),
                    WatchItem::Compacted(r) => {
                        s.broken = Some(format!("the store compacted to revision {r} before the recorder resumed"));
                        return;
                    }
                }
            }
        });
        Ok(Recorder { shared, task })
    }

    /// Waits until everything up to `revision` is recorded (or `limit` passes).
    pub async fn until(&self, revision: i64, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let s = lock(&self.shared);
                if let Some(why) = &s.broken {
                    return Err(Error::History(why.clone()));
                }
                if s.through >= revision {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::History(format!("the recorder did not reach revision {revision} in {limit:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Events recorded so far.
    pub fn len(&self) -> usize {
        lock(&self.shared).events.len()
    }

    /// Whether nothing is recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops recording; the events, checked to be in strictly increasing revision order.
    pub fn finish(self) -> Result<Vec<StoreEvent>> {
        self.task.abort();
        let s = std::mem::take(&mut *lock(&self.shared));
        if let Some(why) = s.broken {
            return Err(Error::History(why));
        }
        if let Some(w) =
            s.events.windows(2).find(|w| w[1].revision < w[0].revision || (w[1].revision == w[0].revision && w[1].key == w[0].key))
        {
            return Err(Error::History(format!("out of order: {} {} after {} {}", w[1].revision, w[1].key, w[0].revision, w[0].key)));
        }
        Ok(s.events)
    }
}
