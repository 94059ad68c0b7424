//! URL endpoints from etcdctl 3.4: the request side of every accepted connection passes
//! through a [`Rewriter`] that turns an HTTP/2 `:authority` written as a URL into a valid one.
//!
//! Why here: etcdctl 3.4 dials per-endpoint commands (`defrag`, `endpoint status|hashkv`,
//! `member add`, `move-leader`, `snapshot save`, …) with the endpoint as given, so
//! `--endpoints=http://127.0.0.1:2379` becomes `:authority: http://127.0.0.1:2379` (etcd 3.5.0
//! sends `#initially=[…]`). Go's HTTP/2 server ignores it; the h2 crate under hyper and tonic
//! refuses the stream (`PROTOCOL_ERROR`), has no setting to relax that, and its maintainers
//! declined one (hyperium/h2#525). Keel serves no virtual hosts, so the value carries nothing it
//! needs: rewriting it before h2 reads it is the smallest change that keeps every other check.
//!
//! Invariants:
//! - A connection that does not open with the HTTP/2 preface (HTTP/1.1: curl, the gateway) is
//!   passed through untouched, and so is everything after anything the rewriter cannot follow
//!   (a malformed header block, a frame sequence the protocol forbids): h2 then refuses it as
//!   it would have.
//! - Only HEADERS/CONTINUATION frames are examined; every other frame goes through byte for byte
//!   (DATA without an extra copy when the reader's buffer is no larger than what is left of it).
//!   Header frames are not flow-controlled, so a rewritten block may change their lengths.
//! - The server's decoder sees the rewritten block in the client's order, so the [`Mirror`]'s
//!   dynamic table stays equal to the server's (see [`super::hpack`]).

use super::hpack::Mirror;
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes of a frame header.
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Bytes of a HEADERS frame's priority fields.
const PRIORITY_FIELDS: usize = 5;
/// The largest frame the server takes (SETTINGS_MAX_FRAME_SIZE's default, which tonic keeps):
/// a rewritten block is cut into frames of at most this.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is not examined (the server refuses far smaller ones).
const MAX_BLOCK: usize = 1 << 20;
/// Bytes read from the connection at a time when they must be examined.
const READ_CHUNK: usize = 16_384;

/// Where the rewriter is in the client's byte stream.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Before the end of the HTTP/2 preface (or the first byte that differs from it).
    Preface,
    /// Inside HTTP/2 frames.
    Frames,
    /// Not HTTP/2, or no longer followed: bytes go through as they are.
    Passthrough,
}

/// The request-side state of one connection.
pub struct Rewriter {
    mode: Mode,
    /// Read from the client, not yet examined.
    input: BytesMut,
    /// Examined, for the server.
    output: BytesMut,
    /// Payload bytes of the current non-header frame still to pass through.
    skip: usize,
    /// The raw frames of a header block waiting for END_HEADERS.
    block: Vec<u8>,
    mirror: Mirror,
    /// Scratch space for reads that must be examined.
    scratch: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            mode: Mode::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            skip: 0,
            block: Vec::new(),
            mirror: Mirror::default(),
            scratch: Vec::new(),
        }
    }
}

impl Rewriter {
    /// Take bytes from the client; what is ready for the server comes out of [`Rewriter::take`].
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        self.examine();
    }

    /// The client closed its side: whatever is held back goes to the server as it is.
    pub fn finish(&mut self) {
        self.give_up();
    }

    /// Up to `max` bytes for the server.
    pub fn take(&mut self, max: usize) -> BytesMut {
        let n = max.min(self.output.len());
        self.output.split_to(n)
    }

    /// Read from `io` through the rewriter (the shell around [`Rewriter::feed`]).
    pub fn poll_read<IO: AsyncRead + Unpin>(
        &mut self,
        mut io: Pin<&mut IO>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.output.is_empty() {
                buf.put_slice(&self.take(buf.remaining()));
                return Poll::Ready(Ok(()));
            }
            let direct =
                self.input.is_empty() && (self.mode == Mode::Passthrough || (self.mode == Mode::Frames && self.skip >= buf.remaining()));
            if direct {
                let before = buf.filled().len();
                ready!(io.as_mut().poll_read(cx, buf))?;
                if self.mode == Mode::Frames {
                    self.skip -= buf.filled().len() - before;
                }
                return Poll::Ready(Ok(()));
            }
            if self.scratch.is_empty() {
                self.scratch = vec![0; READ_CHUNK];
            }
            let mut rb = ReadBuf::new(&mut self.scratch);
            ready!(io.as_mut().poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                self.finish();
                if self.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            self.input.extend_from_slice(&self.scratch[..n]);
            self.examine();
        }
    }

    /// Move what can be decided from `input` to `output`.
    fn examine(&mut self) {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    let rest = self.input.split();
                    self.output.extend_from_slice(&rest);
                    return;
                }
                Mode::Preface => {
                    let n = self.input.len().min(PREFACE.len());
                    if self.input[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    let preface = self.input.split_to(n);
                    self.output.extend_from_slice(&preface);
                    self.mode = Mode::Frames;
                }
                Mode::Frames => {
                    if self.skip > 0 {
                        let n = self.skip.min(self.input.len());
                        let pass = self.input.split_to(n);
                        self.output.extend_from_slice(&pass);
                        self.skip -= n;
                        if self.skip > 0 {
                            return;
                        }
                        continue;
                    }
                    if self.input.len() < FRAME_HEADER {
                        return;
                    }
                    let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
                    let (kind, flags) = (self.input[3], self.input[4]);
                    let in_block = !self.block.is_empty();
                    let header_frame = (kind == HEADERS && !in_block) || (kind == CONTINUATION && in_block);
                    if !header_frame {
                        if in_block {
                            // A frame inside a header block: a connection error the server reports.
                            self.give_up();
                            continue;
                        }
                        let header = self.input.split_to(FRAME_HEADER);
                        self.output.extend_from_slice(&header);
                        self.skip = len;
                        continue;
                    }
                    if self.block.len() + FRAME_HEADER + len > MAX_BLOCK {
                        self.give_up();
                        continue;
                    }
                    if self.input.len() < FRAME_HEADER + len {
                        return;
                    }
                    self.block.extend_from_slice(&self.input[..FRAME_HEADER + len]);
                    self.input.advance(FRAME_HEADER + len);
                    if flags & END_HEADERS != 0 {
                        self.finish_block();
                    }
                }
            }
        }
    }

    /// Stop following the stream: what is held back goes out as it came in.
    fn give_up(&mut self) {
        self.output.extend_from_slice(&self.block);
        self.block.clear();
        let rest = self.input.split();
        self.output.extend_from_slice(&rest);
        self.mode = Mode::Passthrough;
    }

    /// A header block is complete in `block`: send it on, rewritten if it must be.
    fn finish_block(&mut self) {
        let Some(parts) = split_block(&self.block) else { return self.give_up() };
        match self.mirror.rewrite(&parts.fragment) {
            Err(_) => self.give_up(),
            Ok(None) => {
                self.output.extend_from_slice(&self.block);
                self.block.clear();
            }
            Ok(Some(fragment)) => {
                let mut payload = parts.priority.map(|p| p.to_vec()).unwrap_or_default();
                payload.extend_from_slice(&fragment);
                let mut first = true;
                let mut chunks = payload.chunks(MAX_FRAME).peekable();
                while let Some(chunk) = chunks.next() {
                    let last = chunks.peek().is_none();
                    let (kind, mut flags) = if first { (HEADERS, parts.flags & (END_STREAM | PRIORITY)) } else { (CONTINUATION, 0) };
                    if last {
                        flags |= END_HEADERS;
                    }
                    let len = (chunk.len() as u32).to_be_bytes();
                    self.output.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
                    self.output.extend_from_slice(&parts.stream);
                    self.output.extend_from_slice(chunk);
                    first = false;
                }
                self.block.clear();
            }
        }
    }
}

/// A header block taken apart: the first frame's flags and stream, its priority fields, and
/// the header block fragment of all its frames joined.
struct BlockParts<'a> {
    flags: u8,
    stream: [u8; 4],
    priority: Option<&'a [u8]>,
    fragment: Vec<u8>,
}

/// `None` when the frames are malformed (padding longer than the frame and the like).
fn split_block(raw: &[u8]) -> Option<BlockParts<'_>> {
    let mut parts = BlockParts { flags: raw[4], stream: [raw[5], raw[6], raw[7], raw[8]], priority: None, fragment: Vec::new() };
    let mut at = 0;
    while at < raw.len() {
        let len = u32::from_be_bytes([0, raw[at], raw[at + 1], raw[at + 2]]) as usize;
        let (kind, flags) = (raw[at + 3], raw[at + 4]);
        let mut payload = raw.get(at + FRAME_HEADER..at + FRAME_HEADER + len)?;
        if kind == HEADERS {
            if flags & PADDED != 0 {
                let pad = *payload.first()? as usize;
                payload = payload.get(1..payload.len().checked_sub(pad)?)?;
            }
            if flags & PRIORITY != 0 {
                parts.priority = Some(payload.get(..PRIORITY_FIELDS)?);
                payload = &payload[PRIORITY_FIELDS..];
            }
        }
        parts.fragment.extend_from_slice(payload);
        at += FRAME_HEADER + len;
    }
    Some(parts)
}

#[cfg(test)]
mod tests;
