//! bbolt's page layouts as plain functions over byte slices: no I/O, every decoder checks its
//! bounds and answers [`Error`] for bytes that do not hold what they claim.
//!
//! Every page starts with a 16-byte header, little-endian (bbolt writes its structs as the CPU
//! lays them out; every etcd release that writes snapshots runs on little-endian machines):
//!
//! | offset | field |
//! |---|---|
//! | 0 | page ID (u64) |
//! | 8 | flags (u16): branch 0x01, leaf 0x02, meta 0x04, freelist 0x10 |
//! | 10 | count (u16): elements (leaf, branch) or free page IDs |
//! | 12 | overflow (u32): pages after this one that it also spans |
//!
//! A leaf element is `flags u32, pos u32, ksize u32, vsize u32`; a branch element is
//! `pos u32, ksize u32, pgid u64`. `pos` counts from the element itself to its key; a leaf's
//! value follows its key. Elements come right after the header, their keys and values after
//! the last element.

use crate::error::{Error, Result};

/// The page size Keel writes (etcd's on amd64 and arm64).
pub const PAGE_SIZE: usize = 4096;
/// Bytes of a page header.
pub const HEADER_SIZE: usize = 16;
/// Bytes of a leaf or branch element (both are 16).
pub const ELEMENT_SIZE: usize = 16;
/// Bytes of a bucket header (`root pgid u64, sequence u64`), the start of a bucket's value.
pub const BUCKET_HEADER_SIZE: usize = 16;
/// The marker of a bbolt meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The file format version bbolt writes.
pub const VERSION: u32 = 2;
/// A leaf element whose value is a bucket.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;
/// The freelist page ID of a database that does not store its freelist.
pub const NO_FREELIST: u64 = u64::MAX;
/// Bytes of the meta fields the checksum covers (magic through txid).
const META_SUMMED: usize = 56;

/// What a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Keys and the pages under them.
    Branch,
    /// Keys and values.
    Leaf,
    /// The database's root: page 0 or 1.
    Meta,
    /// The IDs of free pages.
    Freelist,
}

impl Kind {
    fn flags(self) -> u16 {
        match self {
            Kind::Branch => 0x01,
            Kind::Leaf => 0x02,
            Kind::Meta => 0x04,
            Kind::Freelist => 0x10,
        }
    }

    fn of(flags: u16) -> Option<Kind> {
        Some(match flags {
            0x01 => Kind::Branch,
            0x02 => Kind::Leaf,
            0x04 => Kind::Meta,
            0x10 => Kind::Freelist,
            _ => return None,
        })
    }
}

/// A page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The page's ID (0 for a bucket's inline page).
    pub id: u64,
    /// What it holds.
    pub kind: Kind,
    /// Elements or free IDs.
    pub count: u16,
    /// Further pages it spans.
    pub overflow: u32,
}

/// The fields of a meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Bytes per page.
    pub page_size: u32,
    /// Unused by bbolt (0).
    pub flags: u32,
    /// The page of the root bucket (whose keys name the top-level buckets).
    pub root: u64,
    /// The root bucket's sequence.
    pub sequence: u64,
    /// The freelist page, or [`NO_FREELIST`].
    pub freelist: u64,
    /// The high-water mark: pages in the file.
    pub pgid: u64,
    /// The transaction that wrote this meta; the valid one with the higher txid is current.
    pub txid: u64,
}

/// One leaf element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafItem<'a> {
    /// [`BUCKET_LEAF_FLAG`] when the value is a bucket.
    pub flags: u32,
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

/// One branch element: the first key under `pgid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchItem<'a> {
    /// The smallest key of the subtree.
    pub key: &'a [u8],
    /// The subtree's page.
    pub pgid: u64,
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("snapshot file: {what}"))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    b.get(at..at + 2).and_then(|s| s.try_into().ok()).map(u16::from_le_bytes).ok_or_else(|| corrupt("truncated page"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes).ok_or_else(|| corrupt("truncated page"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes).ok_or_else(|| corrupt("truncated page"))
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
pub fn fnv64a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Append a page header.
pub fn encode_header(h: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(&h.id.to_le_bytes());
    out.extend_from_slice(&h.kind.flags().to_le_bytes());
    out.extend_from_slice(&h.count.to_le_bytes());
    out.extend_from_slice(&h.overflow.to_le_bytes());
}

/// The header at the start of `page`.
pub fn decode_header(page: &[u8]) -> Result<Header> {
    let flags = u16_at(page, 8)?;
    let kind = Kind::of(flags).ok_or_else(|| corrupt(format!("page flags {flags:#x}")))?;
    Ok(Header { id: u64_at(page, 0)?, kind, count: u16_at(page, 10)?, overflow: u32_at(page, 12)? })
}

/// A whole meta page (`page_size` bytes) with its checksum.
pub fn encode_meta(id: u64, m: &Meta) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.page_size as usize);
    encode_header(&Header { id, kind: Kind::Meta, count: 0, overflow: 0 }, &mut out);
    let start = out.len();
    for v in [MAGIC, VERSION, m.page_size, m.flags] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [m.root, m.sequence, m.freelist, m.pgid, m.txid] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let sum = fnv64a(&out[start..start + META_SUMMED]);
    out.extend_from_slice(&sum.to_le_bytes());
    out.resize((m.page_size as usize).max(out.len()), 0);
    out
}

/// The meta in `page`, checked as bbolt checks it: magic, version, checksum.
pub fn decode_meta(page: &[u8]) -> Result<Meta> {
    let h = decode_header(page)?;
    if h.kind != Kind::Meta {
        return Err(corrupt("not a meta page"));
    }
    let m = HEADER_SIZE;
    if u32_at(page, m)? != MAGIC {
        return Err(corrupt("not a bbolt file (meta magic)"));
    }
    let version = u32_at(page, m + 4)?;
    if version != VERSION {
        return Err(corrupt(format!("bbolt version {version}")));
    }
    let summed = page.get(m..m + META_SUMMED).ok_or_else(|| corrupt("truncated meta"))?;
    if u64_at(page, m + META_SUMMED)? != fnv64a(summed) {
        return Err(corrupt("meta checksum mismatch"));
    }
    Ok(Meta {
        page_size: u32_at(page, m + 8)?,
        flags: u32_at(page, m + 12)?,
        root: u64_at(page, m + 16)?,
        sequence: u64_at(page, m + 24)?,
        freelist: u64_at(page, m + 32)?,
        pgid: u64_at(page, m + 40)?,
        txid: u64_at(page, m + 48)?,
    })
}

/// Bytes a leaf page with `items` takes (before padding to whole pages).
pub fn leaf_size(items: &[LeafItem<'_>]) -> usize {
    HEADER_SIZE + items.iter().map(|i| ELEMENT_SIZE + i.key.len() + i.value.len()).sum::<usize>()
}

/// A leaf page (not padded; overflow 0: the writer sets it when it places the page).
pub fn encode_leaf(id: u64, items: &[LeafItem<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leaf_size(items));
    encode_header(&Header { id, kind: Kind::Leaf, count: items.len() as u16, overflow: 0 }, &mut out);
    let mut data = HEADER_SIZE + ELEMENT_SIZE * items.len();
    for (i, item) in items.iter().enumerate() {
        let elem = HEADER_SIZE + ELEMENT_SIZE * i;
        for v in [item.flags, (data - elem) as u32, item.key.len() as u32, item.value.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        data += item.key.len() + item.value.len();
    }
    for item in items {
        out.extend_from_slice(item.key);
        out.extend_from_slice(item.value);
    }
    out
}

/// The elements of a leaf page.
pub fn decode_leaf(page: &[u8]) -> Result<Vec<LeafItem<'_>>> {
    let h = decode_header(page)?;
    if h.kind != Kind::Leaf {
        return Err(corrupt(format!("page {} is {:?}, not a leaf", h.id, h.kind)));
    }
    (0..h.count as usize)
        .map(|i| {
            let elem = HEADER_SIZE + ELEMENT_SIZE * i;
            let flags = u32_at(page, elem)?;
            let key_at = elem + u32_at(page, elem + 4)? as usize;
            let (ksize, vsize) = (u32_at(page, elem + 8)? as usize, u32_at(page, elem + 12)? as usize);
            let key = page.get(key_at..key_at + ksize).ok_or_else(|| corrupt(format!("leaf {} key out of page", h.id)))?;
            let value =
                page.get(key_at + ksize..key_at + ksize + vsize).ok_or_else(|| corrupt(format!("leaf {} value out of page", h.id)))?;
            Ok(LeafItem { flags, key, value })
        })
        .collect()
}

/// Bytes a branch page with `items` takes.
pub fn branch_size(items: &[BranchItem<'_>]) -> usize {
    HEADER_SIZE + items.iter().map(|i| ELEMENT_SIZE + i.key.len()).sum::<usize>()
}

/// A branch page (not padded).
pub fn encode_branch(id: u64, items: &[BranchItem<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(branch_size(items));
    encode_header(&Header { id, kind: Kind::Branch, count: items.len() as u16, overflow: 0 }, &mut out);
    let mut data = HEADER_SIZE + ELEMENT_SIZE * items.len();
    for (i, item) in items.iter().enumerate() {
        let elem = HEADER_SIZE + ELEMENT_SIZE * i;
        out.extend_from_slice(&((data - elem) as u32).to_le_bytes());
        out.extend_from_slice(&(item.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&item.pgid.to_le_bytes());
        data += item.key.len();
    }
    for item in items {
        out.extend_from_slice(item.key);
    }
    out
}

/// The elements of a branch page.
pub fn decode_branch(page: &[u8]) -> Result<Vec<BranchItem<'_>>> {
    let h = decode_header(page)?;
    if h.kind != Kind::Branch {
        return Err(corrupt(format!("page {} is {:?}, not a branch", h.id, h.kind)));
    }
    (0..h.count as usize)
        .map(|i| {
            let elem = HEADER_SIZE + ELEMENT_SIZE * i;
            let key_at = elem + u32_at(page, elem)? as usize;
            let ksize = u32_at(page, elem + 4)? as usize;
            let key = page.get(key_at..key_at + ksize).ok_or_else(|| corrupt(format!("branch {} key out of page", h.id)))?;
            Ok(BranchItem { key, pgid: u64_at(page, elem + 8)? })
        })
        .collect()
}

/// A freelist page listing `free` (sorted), with bbolt's convention for 0xFFFF or more IDs:
/// count 0xFFFF and the real count as the first u64.
pub fn encode_freelist(id: u64, free: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let count = if free.len() < 0xFFFF { free.len() as u16 } else { 0xFFFF };
    encode_header(&Header { id, kind: Kind::Freelist, count, overflow: 0 }, &mut out);
    if count == 0xFFFF {
        out.extend_from_slice(&(free.len() as u64).to_le_bytes());
    }
    for f in free {
        out.extend_from_slice(&f.to_le_bytes());
    }
    out
}

/// The free page IDs of a freelist page.
pub fn decode_freelist(page: &[u8]) -> Result<Vec<u64>> {
    let h = decode_header(page)?;
    if h.kind != Kind::Freelist {
        return Err(corrupt(format!("page {} is not a freelist", h.id)));
    }
    let (first, count) = if h.count == 0xFFFF { (1, u64_at(page, HEADER_SIZE)? as usize) } else { (0, h.count as usize) };
    (first..first + count).map(|i| u64_at(page, HEADER_SIZE + 8 * i)).collect()
}

/// A bucket's value: its header, then (for an inline bucket, `root` 0) its leaf page.
pub fn encode_bucket(root: u64, sequence: u64, inline_page: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BUCKET_HEADER_SIZE + inline_page.len());
    out.extend_from_slice(&root.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(inline_page);
    out
}

/// A bucket value's root page (0 for inline) and its inline page (empty unless inline).
pub fn decode_bucket(value: &[u8]) -> Result<(u64, &[u8])> {
    let root = u64_at(value, 0).map_err(|_| corrupt("bucket value shorter than its header"))?;
    let page = value.get(BUCKET_HEADER_SIZE..).ok_or_else(|| corrupt("bucket value shorter than its header"))?;
    Ok((root, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64a_matches_the_published_vectors() {
        // From the FNV reference test suite (fnv-1a 64).
        for (input, want) in
            [(&b""[..], 0xcbf2_9ce4_8422_2325u64), (&b"a"[..], 0xaf63_dc4c_8601_ec8c), (&b"foobar"[..], 0x8594_4171_f739_67e8)]
        {
            assert_eq!(fnv64a(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_meta_page_round_trips_and_a_changed_byte_breaks_its_checksum() {
        let m = Meta { page_size: 4096, flags: 0, root: 3, sequence: 0, freelist: 2, pgid: 4, txid: 1 };
        let page = encode_meta(1, &m);
        assert_eq!(page.len(), PAGE_SIZE);
        assert_eq!(decode_header(&page).unwrap(), Header { id: 1, kind: Kind::Meta, count: 0, overflow: 0 });
        assert_eq!(decode_meta(&page).unwrap(), m);
        let cases: &[(usize, &str)] = &[(16, "magic"), (20, "version"), (16 + 40, "checksum"), (16 + 56, "checksum")];
        for (at, what) in cases {
            let mut bad = page.clone();
            bad[*at] ^= 1;
            let err = decode_meta(&bad).unwrap_err().to_string();
            assert!(err.contains(what), "flipping byte {at}: {err}");
        }
    }

    #[test]
    fn meta_fields_sit_where_bbolt_puts_them() {
        let m = Meta { page_size: 4096, flags: 0, root: 7, sequence: 9, freelist: 2, pgid: 11, txid: 5 };
        let page = encode_meta(0, &m);
        let at = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().unwrap());
        assert_eq!(u32::from_le_bytes(page[16..20].try_into().unwrap()), MAGIC);
        assert_eq!(u32::from_le_bytes(page[24..28].try_into().unwrap()), 4096);
        assert_eq!((at(32), at(40), at(48), at(56), at(64)), (7, 9, 2, 11, 5));
        assert_eq!(at(72), fnv64a(&page[16..72]));
    }

    #[test]
    fn leaf_pages_round_trip() {
        type Row<'a> = (u32, &'a [u8], &'a [u8]);
        let table: &[&[Row]] = &[
            &[],
            &[(0, b"k", b"")],
            &[(0, b"a", b"1"), (0, b"bb", b"22"), (BUCKET_LEAF_FLAG, b"ccc", &[0u8; 16])],
            &[(0, b"big", &[7u8; 9000])],
        ];
        for items in table {
            let items: Vec<LeafItem> = items.iter().map(|(flags, key, value)| LeafItem { flags: *flags, key, value }).collect();
            let page = encode_leaf(5, &items);
            assert_eq!(page.len(), leaf_size(&items));
            assert_eq!(decode_header(&page).unwrap().count as usize, items.len());
            assert_eq!(decode_leaf(&page).unwrap(), items);
        }
    }

    #[test]
    fn a_leaf_element_points_from_itself_to_its_key() {
        let page = encode_leaf(3, &[LeafItem { flags: 0, key: b"ab", value: b"xyz" }, LeafItem { flags: 0, key: b"c", value: b"" }]);
        let pos = |i: usize| u32::from_le_bytes(page[16 + 16 * i + 4..16 + 16 * i + 8].try_into().unwrap()) as usize;
        // Element 0 at 16, data starts at 16 + 2 * 16 = 48.
        assert_eq!(pos(0), 32);
        assert_eq!(&page[16 + pos(0)..16 + pos(0) + 5], b"abxyz");
        // Element 1 at 32, its key after element 0's key and value.
        assert_eq!(pos(1), 48 + 5 - 32);
    }

    #[test]
    fn branch_pages_round_trip() {
        let items = [BranchItem { key: b"a", pgid: 4 }, BranchItem { key: b"m", pgid: 9 }, BranchItem { key: b"zz", pgid: 1 << 40 }];
        let page = encode_branch(12, &items);
        assert_eq!(page.len(), branch_size(&items));
        assert_eq!(decode_branch(&page).unwrap(), items);
        assert!(decode_leaf(&page).is_err(), "a branch is not a leaf");
    }

    #[test]
    fn freelists_round_trip_below_and_above_the_u16_count() {
        for n in [0usize, 3, 0xFFFE, 0xFFFF, 70_000] {
            let free: Vec<u64> = (10..10 + n as u64).collect();
            let page = encode_freelist(2, &free);
            assert_eq!(decode_freelist(&page).unwrap(), free, "{n} ids");
        }
    }

    #[test]
    fn decoders_refuse_pages_that_point_outside_themselves() {
        let mut page = encode_leaf(3, &[LeafItem { flags: 0, key: b"k", value: b"v" }]);
        page[16 + 12] = 200; // vsize far past the end
        assert!(decode_leaf(&page).is_err());
        assert!(decode_header(&[0u8; 8]).is_err(), "a truncated header");
        let mut bad_flags = encode_leaf(3, &[]);
        bad_flags[8] = 0x03;
        assert!(decode_header(&bad_flags).is_err(), "two kinds at once");
        assert!(decode_bucket(&[0u8; 8]).is_err());
        assert_eq!(decode_bucket(&encode_bucket(0, 0, b"page")).unwrap(), (0, &b"page"[..]));
    }
}
