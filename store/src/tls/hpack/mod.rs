//! A mirror of the server's HPACK decoder (RFC 7541) that finds `:authority` values written as
//! URLs and rewrites them into valid authorities, leaving every other byte alone.
//!
//! Invariants:
//! - The mirror's dynamic table holds exactly the entries (names and sizes) the server's decoder
//!   holds, because it sees every header block of the connection, in order, before the server.
//! - A rewritten value has the decoded length of the original, so a rewritten entry has the size
//!   the client's encoder gave it and both sides evict the same entries afterwards.
//! - Only a value that is not a valid authority, is visible ASCII and contains `://` is touched;
//!   anything else (valid or not) reaches the server as the client sent it, so the server's
//!   checks of the other pseudo-headers, of the path and of malformed blocks still apply.

mod huffman_table;

use std::collections::VecDeque;
use std::sync::OnceLock;

/// The header block could not be decoded; the server's decoder will refuse it too.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Names of the static table (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&[u8]; 61] = [
    b":authority",
    b":method",
    b":method",
    b":path",
    b":path",
    b":scheme",
    b":scheme",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"accept",
    b"access-control-allow-origin",
    b"age",
    b"allow",
    b"authorization",
    b"cache-control",
    b"content-disposition",
    b"content-encoding",
    b"content-language",
    b"content-length",
    b"content-location",
    b"content-range",
    b"content-type",
    b"cookie",
    b"date",
    b"etag",
    b"expect",
    b"expires",
    b"from",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"last-modified",
    b"link",
    b"location",
    b"max-forwards",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"range",
    b"referer",
    b"refresh",
    b"retry-after",
    b"server",
    b"set-cookie",
    b"strict-transport-security",
    b"transfer-encoding",
    b"user-agent",
    b"vary",
    b"via",
    b"www-authenticate",
];

/// The dynamic table size before any size update (SETTINGS_HEADER_TABLE_SIZE's default, which
/// the h2 server under tonic keeps).
const DEFAULT_TABLE_SIZE: usize = 4096;
/// Bytes an entry costs beyond its name and value (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// One dynamic table entry: its name and its size (name + value + 32).
struct Entry {
    name: Vec<u8>,
    size: usize,
}

/// The decoder state of one connection's request direction.
pub struct Mirror {
    /// Newest entry first (dynamic index 62 is `entries[0]`).
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl Default for Mirror {
    fn default() -> Self {
        Mirror { entries: VecDeque::new(), size: 0, max_size: DEFAULT_TABLE_SIZE }
    }
}

impl Mirror {
    /// Decode one complete header block; `Ok(Some(block))` when an `:authority` value was
    /// rewritten (the new block to send instead), `Ok(None)` when it goes through as it is.
    pub fn rewrite(&mut self, block: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0; // block[..copied] is already in `out`
        let mut pos = 0;
        while pos < block.len() {
            let b = block[pos];
            if b & 0x80 != 0 {
                let (index, next) = integer(block, pos, 7)?;
                self.name(index)?;
                pos = next;
            } else if b & 0xe0 == 0x20 {
                let (size, next) = integer(block, pos, 5)?;
                self.max_size = size;
                self.evict(0);
                pos = next;
            } else {
                let (indexing, prefix) = if b & 0xc0 == 0x40 { (true, 6) } else { (false, 4) };
                let (index, mut next) = integer(block, pos, prefix)?;
                let name = if index == 0 {
                    let (name, after) = string(block, next)?;
                    next = after;
                    name
                } else {
                    self.name(index)?.to_vec()
                };
                let value_at = next;
                let (value, after) = string(block, next)?;
                if name == b":authority"
                    && let Some(fixed) = fix_authority(&value)
                {
                    let out = out.get_or_insert_with(|| Vec::with_capacity(block.len() + fixed.len()));
                    out.extend_from_slice(&block[copied..value_at]);
                    encode_raw_string(out, &fixed);
                    copied = after;
                }
                if indexing {
                    self.insert(name, value.len());
                }
                pos = after;
            }
        }
        Ok(out.map(|mut out| {
            out.extend_from_slice(&block[copied..]);
            out
        }))
    }

    /// The name at `index` (1-based, static table first).
    fn name(&self, index: usize) -> Result<&[u8], Malformed> {
        match index {
            0 => Err(Malformed),
            1..=61 => Ok(STATIC_NAMES[index - 1]),
            _ => self.entries.get(index - 62).map(|e| e.name.as_slice()).ok_or(Malformed),
        }
    }

    fn insert(&mut self, name: Vec<u8>, value_len: usize) {
        let size = name.len() + value_len + ENTRY_OVERHEAD;
        self.evict(size);
        // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
        if size <= self.max_size {
            self.size += size;
            self.entries.push_front(Entry { name, size });
        }
    }

    /// Drop the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }
}

/// An HPACK integer with an `n`-bit prefix starting at `block[pos]`: its value and the position
/// after it.
fn integer(block: &[u8], pos: usize, n: u32) -> Result<(usize, usize), Malformed> {
    let mask = (1usize << n) - 1;
    let first = *block.get(pos).ok_or(Malformed)? as usize & mask;
    if first < mask {
        return Ok((first, pos + 1));
    }
    let mut value = mask;
    let mut shift = 0;
    let mut at = pos + 1;
    loop {
        let b = *block.get(at).ok_or(Malformed)?;
        at += 1;
        // Five continuation bytes hold more than any size a header block can have.
        if shift > 28 {
            return Err(Malformed);
        }
        value += ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok((value, at));
        }
    }
}

/// An HPACK string literal at `block[pos]`, decoded, and the position after it.
fn string(block: &[u8], pos: usize) -> Result<(Vec<u8>, usize), Malformed> {
    let huffman = *block.get(pos).ok_or(Malformed)? & 0x80 != 0;
    let (len, start) = integer(block, pos, 7)?;
    let end = start.checked_add(len).filter(|&e| e <= block.len()).ok_or(Malformed)?;
    let raw = &block[start..end];
    let value = if huffman { huffman_decode(raw)? } else { raw.to_vec() };
    Ok((value, end))
}

/// Append `value` as a string literal without Huffman coding.
fn encode_raw_string(out: &mut Vec<u8>, value: &[u8]) {
    let len = value.len();
    if len < 0x7f {
        out.push(len as u8);
    } else {
        out.push(0x7f);
        let mut rest = len - 0x7f;
        while rest >= 0x80 {
            out.push((rest as u8 & 0x7f) | 0x80);
            rest >>= 7;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(value);
}

/// The Huffman codes grouped by bit length, each group sorted by code, for lookup while decoding.
struct Codes {
    /// `by_len[n]`: (code, byte) of every n-bit code, sorted by code.
    by_len: Vec<Vec<(u32, u8)>>,
}

fn codes() -> &'static Codes {
    static CODES: OnceLock<Codes> = OnceLock::new();
    CODES.get_or_init(|| {
        let mut by_len = vec![Vec::new(); 31];
        for byte in 0..=255u8 {
            let i = byte as usize;
            by_len[huffman_table::ENCODE_CODE_LENGTHS[i] as usize].push((huffman_table::ENCODE_CODES[i], byte));
        }
        for group in &mut by_len {
            group.sort_unstable();
        }
        Codes { by_len }
    })
}

/// Decode a Huffman-coded string: the padding must be fewer than 8 one-bits (RFC 7541 §5.2).
fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, Malformed> {
    let codes = codes();
    let mut out = Vec::with_capacity(raw.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for &b in raw {
        for i in (0..8).rev() {
            code = (code << 1) | u32::from((b >> i) & 1);
            len += 1;
            if len > 30 {
                return Err(Malformed);
            }
            if let Ok(at) = codes.by_len[len].binary_search_by_key(&code, |&(c, _)| c) {
                out.push(codes.by_len[len][at].1);
                (code, len) = (0, 0);
            }
        }
    }
    if len >= 8 || code != (1u32 << len) - 1 {
        return Err(Malformed);
    }
    Ok(out)
}

/// The authority to send instead of `value`, or `None` when `value` stays: a valid authority
/// stays, and so does anything that is not a URL (or a list of them, as etcd 3.5.0's
/// `#initially=[…]`) written where an authority belongs. The result has `value`'s length, so the
/// dynamic table entry keeps its size: `scheme://host:port` becomes `scheme--@host:port`
/// (userinfo, so the host and port survive), failing that every byte outside `[A-Za-z0-9.-]`
/// becomes `-`.
pub fn fix_authority(value: &[u8]) -> Option<Vec<u8>> {
    let valid = |v: &[u8]| http::uri::Authority::try_from(v).is_ok();
    let url_like = value.windows(3).any(|w| w == b"://") && value.iter().all(|b| (0x21..=0x7e).contains(b));
    if !url_like || valid(value) {
        return None;
    }
    if let Some(at) = value.windows(3).position(|w| w == b"://") {
        let scheme_ok = value[..at].iter().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(b));
        let mut userinfo = value[..at].to_vec();
        userinfo.extend_from_slice(b"--@");
        userinfo.extend_from_slice(&value[at + 3..]);
        if scheme_ok && valid(&userinfo) {
            return Some(userinfo);
        }
    }
    let plain: Vec<u8> = value.iter().map(|&b| if b.is_ascii_alphanumeric() || b == b'.' { b } else { b'-' }).collect();
    valid(&plain).then_some(plain)
}

#[cfg(test)]
mod tests;
