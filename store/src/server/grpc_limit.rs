//! gRPC's limit on a received message, enforced and worded as grpc-go (so etcd) does: a
//! request message longer than the limit (`--max-request-bytes` + 512 KiB) fails the call
//! with `ResourceExhausted` "grpc: received message larger than max (N vs. M)", N the
//! message's length from its gRPC frame header and M the limit.
//!
//! tonic has the same check but answers `OutOfRange` in its own words, so the client port's
//! gRPC request bodies pass through [`LimitedBody`]: it follows the gRPC framing (a 1-byte
//! compression flag and a 4-byte big-endian length before each message) across DATA frames
//! and fails the body with the [`tonic::Status`] as soon as a header announces too long a
//! message, before its bytes are buffered. tonic finds the status in the body's error and
//! answers with it (a unary call's answer, or the end of a stream). Invariants: bytes pass
//! through unchanged; a body whose messages are all within the limit is never failed; the
//! check fires at the header, so tonic's own (equal) limit never fires first.

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use http::Request;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A gRPC frame header's length: the compression flag and the message length.
const HEADER: usize = 5;

/// Where the framing is: inside a header (bytes of it seen so far) or a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header { seen: usize, len: [u8; 4] },
    Body { left: usize },
}

/// A message announced longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// The message's length from its header.
    pub len: usize,
    /// The limit.
    pub max: usize,
}

impl Oversized {
    /// The status grpc-go answers with.
    pub fn status(self) -> tonic::Status {
        tonic::Status::resource_exhausted(format!("grpc: received message larger than max ({} vs. {})", self.len, self.max))
    }
}

/// Follows the gRPC framing of one request body: the pure core of [`LimitedBody`].
#[derive(Debug, Clone)]
pub struct FrameLimit {
    max: usize,
    state: State,
}

impl FrameLimit {
    /// A body's framing, at its start, with messages of at most `max` bytes.
    pub fn new(max: usize) -> FrameLimit {
        FrameLimit { max, state: State::Header { seen: 0, len: [0; 4] } }
    }

    /// The next bytes of the body; an error at the first header announcing too much.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Oversized> {
        while !data.is_empty() {
            match &mut self.state {
                State::Body { left } => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Header { seen: 0, len: [0; 4] };
                    }
                }
                State::Header { seen, len } => {
                    if *seen > 0 {
                        len[*seen - 1] = data[0];
                    }
                    *seen += 1;
                    data = &data[1..];
                    if *seen == HEADER {
                        let n = u32::from_be_bytes(*len) as usize;
                        if n > self.max {
                            return Err(Oversized { len: n, max: self.max });
                        }
                        self.state = if n == 0 { State::Header { seen: 0, len: [0; 4] } } else { State::Body { left: n } };
                    }
                }
            }
        }
        Ok(())
    }
}

/// A request body checked by a [`FrameLimit`]; once failed, it stays failed.
pub struct LimitedBody {
    inner: Body,
    limit: FrameLimit,
    failed: bool,
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(over) = this.limit.feed(data)
                {
                    this.failed = true;
                    return Poll::Ready(Some(Err(over.status())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(tonic::Status::from_error(Box::new(e))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `req` with its body checked against `max` when it is a gRPC request; others as they are.
pub fn limit_request(req: Request<Body>, max: usize) -> Request<Body> {
    let grpc = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc {
        return req;
    }
    req.map(|inner| Body::new(LimitedBody { inner, limit: FrameLimit::new(max), failed: false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend(std::iter::repeat_n(b'x', len as usize));
        f
    }

    /// `chunks` fed in order to a limit of 10 bytes: the outcome of the first failing chunk.
    fn run(chunks: &[Vec<u8>]) -> Result<(), Oversized> {
        let mut l = FrameLimit::new(10);
        chunks.iter().try_for_each(|c| l.feed(c))
    }

    #[test]
    fn messages_up_to_the_limit_pass_in_any_split() {
        let body: Vec<u8> = [frame(10), frame(0), frame(3), frame(10)].concat();
        // Every split point, so headers and bodies are cut everywhere.
        for at in 0..=body.len() {
            assert_eq!(run(&[body[..at].to_vec(), body[at..].to_vec()]), Ok(()), "split at {at}");
        }
        // One byte at a time.
        assert_eq!(run(&body.iter().map(|b| vec![*b]).collect::<Vec<_>>()), Ok(()));
    }

    #[test]
    fn a_header_over_the_limit_fails_where_it_ends() {
        let over = Err(Oversized { len: 11, max: 10 });
        type Case = (&'static str, Vec<Vec<u8>>, Result<(), Oversized>);
        let cases: &[Case] = &[
            ("alone", vec![frame(11)], over),
            ("header only", vec![frame(11)[..5].to_vec()], over),
            ("header split", vec![frame(11)[..2].to_vec(), frame(11)[2..5].to_vec()], over),
            ("after a good one", vec![[frame(4), frame(11)].concat()], over),
            ("length bytes are big-endian", vec![vec![0, 1, 0, 0, 0]], Err(Oversized { len: 1 << 24, max: 10 })),
            ("a body byte that looks like a header", vec![[frame(5)[..5].to_vec(), vec![0, 0, 0, 0, 99]].concat()], Ok(())),
            ("an unfinished header", vec![vec![0, 0, 0]], Ok(())),
        ];
        for (name, chunks, want) in cases {
            assert_eq!(run(chunks), *want, "{name}");
        }
    }

    #[test]
    fn the_status_is_grpc_gos() {
        let s = Oversized { len: 3145738, max: 2097152 }.status();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), "grpc: received message larger than max (3145738 vs. 2097152)");
    }
}
