//! The bbolt file format, as much of it as etcd snapshots use: top-level buckets of keys and
//! values (no nested buckets), 4096-byte pages, both metas, a freelist.
//!
//! - [`page`]: page, meta, element and bucket-value layouts (pure encode/decode).
//! - [`write`](mod@write): [`DbWriter`], a one-pass writer.
//! - [`read`]: [`Db`], a reader over a file in memory.
//!
//! Read from bbolt's sources (`page.go`, `node.go`, `bucket.go`, `db.go`, `tx_check.go`); no
//! code is taken from them.

pub mod page;
pub mod read;
pub mod write;

pub use read::Db;
pub use write::{BucketWriter, DbWriter};

#[cfg(test)]
mod tests {
    use super::page::{self, Kind, PAGE_SIZE};
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Cursor;

    type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

    fn write(buckets: &Buckets) -> Vec<u8> {
        let mut db = DbWriter::new(Cursor::new(Vec::new())).unwrap();
        // Out of name order on purpose: the root bucket sorts them.
        for (name, kvs) in buckets.iter().rev() {
            let mut b = db.bucket(name);
            for (k, v) in kvs {
                b.put(k, v).unwrap();
            }
            b.finish().unwrap();
        }
        db.finish().unwrap().into_inner()
    }

    fn read(file: &[u8]) -> Buckets {
        let db = Db::open(file).unwrap();
        let mut out = Buckets::new();
        for name in db.buckets().unwrap() {
            let mut kvs = BTreeMap::new();
            assert!(
                db.for_each(&name, &mut |k, v| {
                    assert!(kvs.insert(k.to_vec(), v.to_vec()).is_none(), "a key twice");
                    Ok(())
                })
                .unwrap()
            );
            out.insert(name, kvs);
        }
        out
    }

    /// What `tx.Check()` checks: every page below the high-water mark is a meta, the freelist,
    /// or reachable from the root exactly once, and keys ascend within and across pages.
    fn check(file: &[u8]) {
        let db = Db::open(file).unwrap();
        let pgid = db.meta().pgid;
        assert_eq!(file.len() as u64, pgid * PAGE_SIZE as u64, "the file is exactly its pages");
        let mut seen: BTreeSet<u64> = [0, 1, db.meta().freelist].into();
        let mut roots = vec![db.meta().root];
        let visit = |id: u64, seen: &mut BTreeSet<u64>| -> Vec<u8> {
            let head = page::decode_header(&file[id as usize * PAGE_SIZE..]).unwrap();
            assert_eq!(head.id, id);
            for p in id..=id + head.overflow as u64 {
                assert!(seen.insert(p), "page {p} referenced twice");
            }
            file[id as usize * PAGE_SIZE..(id as usize + 1 + head.overflow as usize) * PAGE_SIZE].to_vec()
        };
        while let Some(root) = roots.pop() {
            let mut stack = vec![(root, None::<Vec<u8>>)];
            let mut last_key: Option<Vec<u8>> = None;
            while let Some((id, first)) = stack.pop() {
                let bytes = visit(id, &mut seen);
                match page::decode_header(&bytes).unwrap().kind {
                    Kind::Branch => {
                        let items = page::decode_branch(&bytes).unwrap();
                        if let Some(first) = first {
                            assert_eq!(items[0].key, &first[..], "a branch key is its subtree's first key");
                        }
                        stack.extend(items.iter().rev().map(|b| (b.pgid, Some(b.key.to_vec()))));
                    }
                    Kind::Leaf => {
                        let items = page::decode_leaf(&bytes).unwrap();
                        if let Some(first) = first {
                            assert_eq!(items[0].key, &first[..], "a branch key is its leaf's first key");
                        }
                        for item in items {
                            assert!(last_key.as_deref().is_none_or(|l| l < item.key), "keys ascend");
                            last_key = Some(item.key.to_vec());
                            if item.flags & page::BUCKET_LEAF_FLAG != 0 {
                                let (r, _) = page::decode_bucket(item.value).unwrap();
                                if r != 0 {
                                    roots.push(r);
                                }
                            }
                        }
                    }
                    kind => panic!("{kind:?} page in a tree"),
                }
            }
        }
        let all: BTreeSet<u64> = (0..pgid).collect();
        assert_eq!(seen, all, "every page reachable, none beyond the high-water mark");
        assert_eq!(page::decode_freelist(&file[2 * PAGE_SIZE..3 * PAGE_SIZE]).unwrap(), Vec::<u64>::new());
    }

    fn bucket(kvs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> BTreeMap<Vec<u8>, Vec<u8>> {
        kvs.into_iter().collect()
    }

    #[test]
    fn databases_round_trip_and_pass_the_consistency_check() {
        let many = bucket((0..20_000u32).map(|i| (format!("key/{i:08}").into_bytes(), format!("value {i}").into_bytes())));
        let big = bucket([
            (b"a".to_vec(), vec![1u8; 10_000]),
            (b"b".to_vec(), vec![2u8; 4_096]),
            (b"c".to_vec(), b"small".to_vec()),
            (b"d".to_vec(), vec![3u8; 100_000]),
        ]);
        let table: Vec<(&str, Buckets)> = vec![
            ("no buckets", Buckets::new()),
            ("one empty bucket", [(b"alarm".to_vec(), bucket([]))].into()),
            ("small buckets, inline", [(b"a".to_vec(), bucket([(b"k".to_vec(), b"v".to_vec())])), (b"b".to_vec(), bucket([]))].into()),
            ("a bucket of many keys, branch levels", [(b"key".to_vec(), many)].into()),
            ("values larger than a page, overflow", [(b"big".to_vec(), big)].into()),
            (
                "the root bucket itself spans pages",
                (0..300u32).map(|i| (format!("bucket-{i:04}").into_bytes(), bucket([(b"k".to_vec(), vec![9u8; 200])]))).collect(),
            ),
        ];
        for (what, buckets) in table {
            let file = write(&buckets);
            check(&file);
            assert_eq!(read(&file), buckets, "{what}");
        }
    }

    #[test]
    fn buckets_are_inline_exactly_when_bbolt_would_inline_them() {
        // bbolt inlines a single leaf of at most a quarter page: header 16 + (16 + k + v) each.
        let fits = vec![0u8; PAGE_SIZE / 4 - 16 - 16 - 1];
        let too_big = vec![0u8; fits.len() + 1];
        for (value, inline) in [(fits, true), (too_big, false)] {
            let buckets: Buckets = [(b"b".to_vec(), bucket([(b"k".to_vec(), value)]))].into();
            let file = write(&buckets);
            let db = Db::open(&file).unwrap();
            let root = &file[db.meta().root as usize * PAGE_SIZE..];
            let items = page::decode_leaf(root).unwrap();
            let (bucket_root, _) = page::decode_bucket(items[0].value).unwrap();
            assert_eq!(bucket_root == 0, inline);
            assert_eq!(read(&file), buckets);
        }
    }

    #[test]
    fn keys_out_of_order_are_refused() {
        let mut db = DbWriter::new(Cursor::new(Vec::new())).unwrap();
        let mut b = db.bucket(b"key");
        b.put(b"b", b"").unwrap();
        assert!(b.put(b"a", b"").is_err());
        assert!(b.put(b"b", b"").is_err(), "a key twice");
        assert!(b.put(b"", b"").is_err(), "bbolt has no empty keys");
    }

    #[test]
    fn the_newer_valid_meta_wins_and_a_broken_one_is_skipped() {
        let buckets: Buckets = [(b"meta".to_vec(), bucket([(b"x".to_vec(), b"1".to_vec())]))].into();
        let mut file = write(&buckets);
        assert_eq!(Db::open(&file).unwrap().meta().txid, 1);
        file[PAGE_SIZE + 16] ^= 0xff; // page 1's magic
        assert_eq!(Db::open(&file).unwrap().meta().txid, 0, "page 0 still opens the file");
        assert_eq!(read(&file), buckets);
        file[16] ^= 0xff;
        assert!(Db::open(&file).is_err(), "no valid meta");
    }

    #[test]
    fn damaged_files_end_in_errors() {
        let buckets: Buckets = [(b"key".to_vec(), bucket((0..2_000u32).map(|i| (i.to_be_bytes().to_vec(), vec![0u8; 40]))))].into();
        let file = write(&buckets);
        assert!(Db::open(&file[..file.len() - PAGE_SIZE]).is_err(), "truncated");
        // Make a branch page point at itself: the walk must stop.
        let db = Db::open(&file).unwrap();
        let root = db.meta().root as usize;
        let items = page::decode_leaf(&file[root * PAGE_SIZE..]).unwrap();
        let (key_root, _) = page::decode_bucket(items[0].value).unwrap();
        let mut bad = file.clone();
        let at = key_root as usize * PAGE_SIZE + 16 + 8;
        bad[at..at + 8].copy_from_slice(&key_root.to_le_bytes());
        let db = Db::open(&bad).unwrap();
        assert!(db.for_each(b"key", &mut |_, _| Ok(())).is_err());
    }
}
