//! A bbolt file written in one pass: pages 0 and 1 (metas) and 2 (an empty freelist) are
//! reserved, each bucket's leaves are written as they fill and its branch levels when it ends,
//! then the root bucket, then the metas. Every page below the high-water mark is reachable, so
//! `tx.Check()` (what `etcdctl snapshot status` runs) finds nothing to report.
//!
//! Leaves are filled up to a page; a key and value larger than a page get a leaf of their own
//! that spans overflow pages, as bbolt does. A bucket that ends as a single leaf of at most a
//! quarter page is stored inline in its parent, as bbolt stores it. Only the key bucket is large,
//! so only branch levels (one key per page below) are held in memory.

use super::page::{self, BUCKET_LEAF_FLAG, BranchItem, HEADER_SIZE, LeafItem, Meta, PAGE_SIZE};
use crate::error::{Error, Result};
use std::io::{Seek, SeekFrom, Write};

/// The page of the (empty) freelist.
const FREELIST_PAGE: u64 = 2;
/// The first page after the metas and the freelist.
const FIRST_DATA_PAGE: u64 = 3;

fn io(e: std::io::Error) -> Error {
    Error::Internal(crate::error::Internal::Storage(format!("writing a snapshot: {e}")))
}

/// Pages appended in ID order.
struct Pages<W> {
    out: W,
    next: u64,
}

impl<W: Write> Pages<W> {
    /// Place an encoded page at the next ID: set its ID and overflow, pad it to whole pages.
    fn place(&mut self, mut bytes: Vec<u8>) -> Result<u64> {
        let id = self.next;
        let pages = bytes.len().div_ceil(PAGE_SIZE).max(1);
        bytes[0..8].copy_from_slice(&id.to_le_bytes());
        bytes[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        bytes.resize(pages * PAGE_SIZE, 0);
        self.out.write_all(&bytes).map_err(io)?;
        self.next += pages as u64;
        Ok(id)
    }
}

/// One B+tree (a bucket's or the root's) being written, keys in ascending order.
#[derive(Default)]
struct Tree {
    /// The leaf being filled: (flags, key, value).
    leaf: Vec<(u32, Vec<u8>, Vec<u8>)>,
    /// Its encoded size.
    leaf_bytes: usize,
    /// The leaves written so far: (first key, page).
    written: Vec<(Vec<u8>, u64)>,
    /// The last key pushed, to refuse keys out of order.
    last: Option<Vec<u8>>,
}

impl Tree {
    fn push<W: Write>(&mut self, pages: &mut Pages<W>, flags: u32, key: &[u8], value: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::corrupt("snapshot: an empty key"));
        }
        if self.last.as_deref().is_some_and(|last| last >= key) {
            return Err(Error::corrupt(format!("snapshot: key {key:?} out of order")));
        }
        self.last = Some(key.to_vec());
        let size = page::ELEMENT_SIZE + key.len() + value.len();
        if !self.leaf.is_empty() && HEADER_SIZE + self.leaf_bytes + size > PAGE_SIZE {
            self.flush_leaf(pages)?;
        }
        self.leaf.push((flags, key.to_vec(), value.to_vec()));
        self.leaf_bytes += size;
        Ok(())
    }

    fn items(&self) -> Vec<LeafItem<'_>> {
        self.leaf.iter().map(|(flags, key, value)| LeafItem { flags: *flags, key, value }).collect()
    }

    fn flush_leaf<W: Write>(&mut self, pages: &mut Pages<W>) -> Result<()> {
        let first = self.leaf.first().map(|(_, k, _)| k.clone()).unwrap_or_default();
        let id = pages.place(page::encode_leaf(0, &self.items()))?;
        self.written.push((first, id));
        self.leaf.clear();
        self.leaf_bytes = 0;
        Ok(())
    }

    /// Write what is left; the bucket value that points at the tree (or holds it inline).
    fn finish<W: Write>(mut self, pages: &mut Pages<W>, may_inline: bool) -> Result<Vec<u8>> {
        if may_inline && self.written.is_empty() && HEADER_SIZE + self.leaf_bytes <= PAGE_SIZE / 4 {
            return Ok(page::encode_bucket(0, 0, &page::encode_leaf(0, &self.items())));
        }
        if !self.leaf.is_empty() || self.written.is_empty() {
            self.flush_leaf(pages)?;
        }
        let mut level = self.written;
        while level.len() > 1 {
            let mut next = Vec::new();
            let mut group: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut bytes = HEADER_SIZE;
            for (key, id) in level {
                let size = page::ELEMENT_SIZE + key.len();
                if !group.is_empty() && bytes + size > PAGE_SIZE {
                    next.push(write_branch(pages, &group)?);
                    group.clear();
                    bytes = HEADER_SIZE;
                }
                group.push((key, id));
                bytes += size;
            }
            next.push(write_branch(pages, &group)?);
            level = next;
        }
        let root = level.first().map(|(_, id)| *id).unwrap_or_default();
        Ok(page::encode_bucket(root, 0, &[]))
    }
}

fn write_branch<W: Write>(pages: &mut Pages<W>, group: &[(Vec<u8>, u64)]) -> Result<(Vec<u8>, u64)> {
    let items: Vec<BranchItem> = group.iter().map(|(key, pgid)| BranchItem { key, pgid: *pgid }).collect();
    let id = pages.place(page::encode_branch(0, &items))?;
    Ok((group[0].0.clone(), id))
}

/// A bbolt file being written: [`DbWriter::bucket`] for each top-level bucket (any order), then
/// [`DbWriter::finish`].
pub struct DbWriter<W> {
    pages: Pages<W>,
    /// Top-level buckets written: (name, bucket value).
    buckets: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One top-level bucket being written; keys must come in ascending byte order.
pub struct BucketWriter<'a, W> {
    db: &'a mut DbWriter<W>,
    name: Vec<u8>,
    tree: Tree,
}

impl<W: Write + Seek> DbWriter<W> {
    /// Start a file at the beginning of `out`.
    pub fn new(mut out: W) -> Result<DbWriter<W>> {
        out.seek(SeekFrom::Start(FIRST_DATA_PAGE * PAGE_SIZE as u64)).map_err(io)?;
        Ok(DbWriter { pages: Pages { out, next: FIRST_DATA_PAGE }, buckets: Vec::new() })
    }

    /// Start the top-level bucket `name`.
    pub fn bucket(&mut self, name: &[u8]) -> BucketWriter<'_, W> {
        BucketWriter { db: self, name: name.to_vec(), tree: Tree::default() }
    }

    /// Write the root bucket, the freelist and both metas; `out` is left at the file's end.
    pub fn finish(mut self) -> Result<W> {
        self.buckets.sort();
        let mut root = Tree::default();
        for (name, value) in &self.buckets {
            root.push(&mut self.pages, BUCKET_LEAF_FLAG, name, value)?;
        }
        let root_value = root.finish(&mut self.pages, false)?;
        let (root_page, _) = page::decode_bucket(&root_value)?;
        let pgid = self.pages.next;
        let out = &mut self.pages.out;
        out.seek(SeekFrom::Start(0)).map_err(io)?;
        for txid in [0u64, 1] {
            let meta = Meta { page_size: PAGE_SIZE as u32, flags: 0, root: root_page, sequence: 0, freelist: FREELIST_PAGE, pgid, txid };
            out.write_all(&page::encode_meta(txid, &meta)).map_err(io)?;
        }
        let mut free = page::encode_freelist(FREELIST_PAGE, &[]);
        free.resize(PAGE_SIZE, 0);
        out.write_all(&free).map_err(io)?;
        out.seek(SeekFrom::Start(pgid * PAGE_SIZE as u64)).map_err(io)?;
        out.flush().map_err(io)?;
        Ok(self.pages.out)
    }
}

impl<W: Write> BucketWriter<'_, W> {
    /// Add `key` (greater than every key before it) with `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.push(&mut self.db.pages, 0, key, value)
    }

    /// End the bucket.
    pub fn finish(self) -> Result<()> {
        if self.db.buckets.iter().any(|(n, _)| *n == self.name) {
            return Err(Error::corrupt(format!("snapshot: bucket {:?} written twice", self.name)));
        }
        let value = self.tree.finish(&mut self.db.pages, true)?;
        self.db.buckets.push((self.name, value));
        Ok(())
    }
}
