//! Writes forwarded from a follower to the leader, pipelined on one long-lived
//! `ForwardStream` call: batches go out as they form, without waiting for the answers to the
//! ones before, and a reader task hands each answer (matched by batch id) to the batch
//! waiting for it. One unary call per batch cost the leader more per batch than a message on an
//! open call, and a single batch in flight made a forwarded write wait for the previous batch's
//! answer first.
//!
//! Retries follow [`super::Replica::call_leader`]: a call that could not be opened is retried;
//! a batch handed to a call that then broke gets the call's error, since it may have been
//! proposed.

use crate::error::{Error, Result};
use crate::types::MemberId;
use keel_proto::keelpeerpb::{ForwardRequest, ForwardResponse};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Batches under way, by id; `None` once the call has ended.
type Waiting = Mutex<Option<HashMap<u64, oneshot::Sender<Result<ForwardResponse>>>>>;

/// One open forwarding call to a leader.
pub struct Link {
    /// The leader the call went to.
    pub leader: Option<MemberId>,
    batches: mpsc::UnboundedSender<ForwardRequest>,
    waiting: Arc<Waiting>,
}

fn lock(w: &Waiting) -> MutexGuard<'_, Option<HashMap<u64, oneshot::Sender<Result<ForwardResponse>>>>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl Link {
    /// A link over an opened call: `batches` feeds its request side, `answers` is its response
    /// side (read by a task of its own until the call ends).
    pub fn start(
        leader: Option<MemberId>,
        batches: mpsc::UnboundedSender<ForwardRequest>,
        mut answers: tonic::Streaming<ForwardResponse>,
    ) -> Arc<Link> {
        let waiting: Arc<Waiting> = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = waiting.clone();
        tokio::spawn(async move {
            let end = loop {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        let tx = lock(&reader).as_mut().and_then(|m| m.remove(&answer.id));
                        if let Some(tx) = tx {
                            let _ = tx.send(Ok(answer));
                        }
                    }
                    Ok(None) => break Error::Remote(tonic::Code::Unavailable, "etcdserver: leader changed".into()),
                    Err(status) => break Error::from_status(&status),
                }
            };
            let left = lock(&reader).take();
            for (_, tx) in left.into_iter().flatten() {
                let _ = tx.send(Err(end.clone()));
            }
        });
        Arc::new(Link { leader, batches, waiting })
    }

    /// True once the call has ended.
    pub fn closed(&self) -> bool {
        lock(&self.waiting).is_none() || self.batches.is_closed()
    }

    /// Send batch `id`. `None` when the call had already ended (nothing was sent: the caller
    /// may open another); otherwise its answer, the call's error, or a timeout at `deadline`.
    pub async fn send(&self, id: u64, commands: Vec<bytes::Bytes>, deadline: Instant) -> Option<Result<ForwardResponse>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).as_mut()?.insert(id, tx);
        if self.batches.send(ForwardRequest { commands, id }).is_err() {
            lock(&self.waiting).as_mut().map(|m| m.remove(&id));
            return None;
        }
        Some(match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => {
                lock(&self.waiting).as_mut().map(|m| m.remove(&id));
                Err(Error::Timeout)
            }
            Ok(Err(_)) => Err(Error::Stopped),
            Ok(Ok(answer)) => answer,
        })
    }
}
