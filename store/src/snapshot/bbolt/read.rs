//! Reading a bbolt file held in memory: the current meta (the valid one of pages 0 and 1 with
//! the higher txid, as bbolt picks it), then the B+trees of the root bucket and of each
//! top-level bucket, in key order. Every page reference is checked against the high-water
//! mark and the file, and a walk visits at most as many pages as the file has, so a damaged
//! file ends in an error, never in a loop or a panic.

use super::page::{self, BUCKET_LEAF_FLAG, Kind, Meta, PAGE_SIZE};
use crate::error::{Error, Result};

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("snapshot file: {what}"))
}

/// What [`Db::for_each`] calls with each key and value.
pub type Visitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'v;

/// A bbolt file.
pub struct Db<'a> {
    data: &'a [u8],
    meta: Meta,
}

/// Where a bucket's tree is.
#[derive(Clone, Copy)]
enum Root<'a> {
    /// A page of the file.
    Page(u64),
    /// Inline in its parent's value.
    Inline(&'a [u8]),
}

impl<'a> Db<'a> {
    /// Open the bbolt file `data` (without etcd's hash trailer).
    pub fn open(data: &'a [u8]) -> Result<Db<'a>> {
        let first = page::decode_meta(data);
        // Page 1 sits one page size on; the page size comes from a valid page 0, else the default.
        let size = first.as_ref().map(|m| m.page_size as usize).unwrap_or(PAGE_SIZE);
        let second = data.get(size..).ok_or_else(|| corrupt("shorter than two pages")).and_then(page::decode_meta);
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => {
                if a.txid >= b.txid {
                    a
                } else {
                    b
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(e), Err(_)) => return Err(e),
        };
        if meta.page_size < 1024 || !meta.page_size.is_power_of_two() {
            return Err(corrupt(format!("page size {}", meta.page_size)));
        }
        let pages_in_file = data.len() as u64 / u64::from(meta.page_size);
        if meta.pgid > pages_in_file || meta.root >= meta.pgid {
            return Err(corrupt(format!("{} pages claimed, {pages_in_file} in the file", meta.pgid)));
        }
        Ok(Db { data, meta })
    }

    /// The current meta.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The bytes of page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<&'a [u8]> {
        let size = self.meta.page_size as usize;
        if id >= self.meta.pgid {
            return Err(corrupt(format!("page {id} beyond the high-water mark {}", self.meta.pgid)));
        }
        let start = id as usize * size;
        let head = self.data.get(start..start + size).ok_or_else(|| corrupt(format!("page {id} beyond the file")))?;
        let h = page::decode_header(head)?;
        if h.id != id {
            return Err(corrupt(format!("page {id} says it is page {}", h.id)));
        }
        let len = (h.overflow as usize + 1) * size;
        self.data.get(start..start + len).ok_or_else(|| corrupt(format!("page {id} overflows the file")))
    }

    /// The top-level buckets' names, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        self.walk(Root::Page(self.meta.root), &mut |flags, key, _| {
            if flags & BUCKET_LEAF_FLAG != 0 {
                names.push(key.to_vec());
            }
            Ok(())
        })?;
        Ok(names)
    }

    /// Visit every key and value of the top-level bucket `name` in key order; false when there
    /// is no such bucket.
    pub fn for_each(&self, name: &[u8], visit: &mut Visitor<'_>) -> Result<bool> {
        let mut found = None;
        self.walk(Root::Page(self.meta.root), &mut |flags, key, value| {
            if key == name && flags & BUCKET_LEAF_FLAG != 0 {
                found = Some(value);
            }
            Ok(())
        })?;
        let Some(value) = found else { return Ok(false) };
        let (root, inline) = page::decode_bucket(value)?;
        let root = if root == 0 { Root::Inline(inline) } else { Root::Page(root) };
        self.walk(root, &mut |flags, key, value| {
            if flags & BUCKET_LEAF_FLAG != 0 {
                return Err(corrupt(format!("nested bucket {key:?} in {name:?} (etcd has none)")));
            }
            visit(key, value)
        })?;
        Ok(true)
    }

    fn walk(&self, root: Root<'a>, visit: &mut dyn FnMut(u32, &'a [u8], &'a [u8]) -> Result<()>) -> Result<()> {
        let mut budget = self.meta.pgid;
        let mut stack = vec![root];
        while let Some(at) = stack.pop() {
            let bytes = match at {
                Root::Inline(bytes) => bytes,
                Root::Page(id) => {
                    budget = budget.checked_sub(1).ok_or_else(|| corrupt("a page tree visits more pages than the file has"))?;
                    self.page(id)?
                }
            };
            match page::decode_header(bytes)?.kind {
                Kind::Leaf => {
                    for item in page::decode_leaf(bytes)? {
                        visit(item.flags, item.key, item.value)?;
                    }
                }
                Kind::Branch if matches!(at, Root::Page(_)) => {
                    // Children in reverse so the stack pops them in key order.
                    stack.extend(page::decode_branch(bytes)?.iter().rev().map(|b| Root::Page(b.pgid)));
                }
                kind => return Err(corrupt(format!("a {kind:?} page inside a bucket"))),
            }
        }
        Ok(())
    }
}
