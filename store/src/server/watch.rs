//! The Watch service: one bidi stream per client stream. A reader task turns requests into hub
//! calls; a sender task drains the stream's outbox into gRPC. Neither ever blocks the writer.

use super::context::Context;
use super::rpc::Rpc;
use crate::auth::Caller;
use crate::types::WatchId;
use futures::Stream;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::watch_server::Watch;
use keel_proto::etcdserverpb::{WatchRequest, WatchResponse};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses in flight between the sender task and gRPC per stream.
const GRPC_BUFFER: usize = 16;

/// etcd's Watch service.
#[derive(Clone)]
pub struct WatchService {
    ctx: Arc<Context>,
}

/// A stream of watch responses.
pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

impl WatchService {
    /// The Watch service of the member `ctx` serves.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// Open a watch stream fed by `requests`; the returned stream carries the responses. The
    /// stream stays open when the client half-closes (the HTTP gateway sends one request and
    /// then only reads), and ends when the client goes away.
    /// Each watch is checked against `caller`'s read rights when created; a refused one is
    /// answered created-and-canceled with the reason, as etcd does.
    pub fn open<S>(&self, mut requests: S, caller: Caller) -> Result<ResponseStream, Status>
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        self.ctx.gate(Rpc::Watch, false)?;
        let ctx = self.ctx.clone();
        let handle = ctx.applied.hub.open_stream();
        let (tx, rx) = mpsc::channel(GRPC_BUFFER);
        let stream_id = handle.id;
        let wake = handle.wake;
        let sender_ctx = ctx.clone();
        let sender_tx = tx.clone();
        // The sender ends when the client goes away (the response stream is dropped), even if
        // nothing is ever queued for it, and takes the stream's watchers with it.
        tokio::spawn(async move {
            'outer: loop {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = sender_tx.closed() => break,
                }
                let Some(batch) = sender_ctx.applied.hub.drain(stream_id) else {
                    let _ =
                        sender_tx.send(Err(Status::resource_exhausted("etcdserver: watch stream closed: too many pending requests"))).await;
                    break;
                };
                for mut resp in batch {
                    if sender_ctx.bugs.watch_skips_revisions && !resp.events.is_empty() {
                        resp.events.retain(|e| e.kv.as_ref().is_none_or(|kv| kv.mod_revision % 10 != 7));
                        if resp.events.is_empty() {
                            continue;
                        }
                    }
                    sender_ctx.complete_header(&mut resp.header);
                    if sender_tx.send(Ok(resp)).await.is_err() {
                        break 'outer;
                    }
                }
            }
            sender_ctx.applied.hub.close_stream(stream_id);
        });
        // The reader ends when the client stops sending, or goes away.
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = requests.next() => item,
                    _ = tx.closed() => None,
                };
                let req = match item {
                    Some(Ok(req)) => req,
                    // A request gRPC could not take (too large): the stream ends with its
                    // status, as etcd's Watch returns its receive error.
                    Some(Err(status)) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                    None => break,
                };
                match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        match ctx.admit(Rpc::Watch, &caller).await.and_then(|a| a.check_read(&c.key, &c.range_end)) {
                            Ok(()) => ctx.applied.hub.create(stream_id, &c),
                            Err(e) => {
                                let status = Status::from(e);
                                let refused = WatchResponse {
                                    header: ctx.header_now(),
                                    watch_id: -1,
                                    created: true,
                                    canceled: true,
                                    cancel_reason: format!("rpc error: code = {:?} desc = {}", status.code(), status.message()),
                                    ..Default::default()
                                };
                                if tx.send(Ok(refused)).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    Some(RequestUnion::CancelRequest(c)) => ctx.applied.hub.cancel(stream_id, WatchId(c.watch_id)),
                    Some(RequestUnion::ProgressRequest(_)) => ctx.applied.hub.request_progress(stream_id),
                    None => {}
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let c = super::caller(&request);
        Ok(Response::new(self.open(request.into_inner(), c)?))
    }
}
