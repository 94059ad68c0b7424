//! The in-memory key index: for every key, the revisions at which it was written, oldest first,
//! with the metadata a read needs without touching the disk (create revision, version, lease,
//! tombstone). Values stay in the backend, addressed by revision.
//!
//! Invariants:
//! - a key's entries are strictly increasing by [`Rev`];
//! - a tombstone entry means "deleted at this revision"; a later put starts a new generation
//!   (version 1, create revision = that put's revision);
//! - after `compact(at)`, every key keeps at most its newest entry with `main <= at`, and none
//!   if that entry is a tombstone.

use bytes::Bytes;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A full MVCC revision: `main` is shared by everything one request changed, `sub` orders the
/// changes within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rev {
    /// The request's revision.
    pub main: i64,
    /// The change's position within the request.
    pub sub: i64,
}

/// One write of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When the write happened.
    pub rev: Rev,
    /// The revision that created this generation of the key.
    pub create: i64,
    /// 1 for the creating put, +1 for each later put; 0 for a tombstone.
    pub version: i64,
    /// The lease the key was attached to by this write (0 for none).
    pub lease: i64,
    /// True when this write deleted the key.
    pub tombstone: bool,
}

/// Which keys a request addresses, decoded from etcd's `(key, range_end)` convention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Bytes),
    /// `key <= k < end`.
    Span(Bytes, Bytes),
    /// Every key `>= key` (`range_end == "\0"`).
    From(Bytes),
}

impl KeyRange {
    /// Decode etcd's convention.
    pub fn new(key: &Bytes, range_end: &Bytes) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.clone())
        } else if range_end.as_ref() == [0] {
            KeyRange::From(key.clone())
        } else {
            KeyRange::Span(key.clone(), range_end.clone())
        }
    }

    /// True when `k` is inside the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_ref(),
            KeyRange::Span(key, end) => k >= key.as_ref() && k < end.as_ref(),
            KeyRange::From(key) => k >= key.as_ref(),
        }
    }

    /// True when the two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let (a0, a1) = self.bounds();
        let (b0, b1) = other.bounds();
        let a_before_b_end = match &b1 {
            Some(e) => a0.as_ref() < e.as_slice(),
            None => true,
        };
        let b_before_a_end = match &a1 {
            Some(e) => b0.as_ref() < e.as_slice(),
            None => true,
        };
        a_before_b_end && b_before_a_end
    }

    /// `[start, end)`, with `None` for "no end".
    fn bounds(&self) -> (Bytes, Option<Vec<u8>>) {
        match self {
            KeyRange::Single(k) => {
                let mut end = k.to_vec();
                end.push(0);
                (k.clone(), Some(end))
            }
            KeyRange::Span(k, e) => (k.clone(), Some(e.to_vec())),
            KeyRange::From(k) => (k.clone(), None),
        }
    }
}

/// The first key after every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

/// One key's history. Most keys hold a single entry between compactions, so it lives inline
/// in the map: a `Vec` would allocate room for four entries (192 B) on a key's first write.
type History = SmallVec<[Entry; 1]>;

/// All keys and their write history.
#[derive(Default, Debug)]
pub struct KeyIndex {
    keys: BTreeMap<Bytes, History>,
}

/// The newest entry of `entries` at or below revision `at`, if it is not a tombstone.
fn live_at(entries: &[Entry], at: i64) -> Option<&Entry> {
    let n = entries.partition_point(|e| e.rev.main <= at);
    if n == 0 {
        return None;
    }
    let e = &entries[n - 1];
    (!e.tombstone).then_some(e)
}

impl KeyIndex {
    /// The live entry of `key` at revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<&Entry> {
        self.keys.get(key).and_then(|es| live_at(es, at))
    }

    /// Live entries in `range` at revision `at`, in key order.
    pub fn range<'a>(&'a self, range: &KeyRange, at: i64) -> Box<dyn Iterator<Item = (&'a Bytes, &'a Entry)> + 'a> {
        match range {
            KeyRange::Single(k) => {
                Box::new(self.keys.get_key_value(k.as_ref()).into_iter().filter_map(move |(k, es)| live_at(es, at).map(|e| (k, e))))
            }
            KeyRange::Span(k, end) => {
                if end.as_ref() <= k.as_ref() {
                    return Box::new(std::iter::empty());
                }
                let bounds = (Bound::Included(k.clone()), Bound::Excluded(end.clone()));
                Box::new(self.keys.range::<Bytes, _>(bounds).filter_map(move |(k, es)| live_at(es, at).map(|e| (k, e))))
            }
            KeyRange::From(k) => Box::new(
                self.keys
                    .range::<Bytes, _>((Bound::Included(k.clone()), Bound::Unbounded))
                    .filter_map(move |(k, es)| live_at(es, at).map(|e| (k, e))),
            ),
        }
    }

    /// Record a write. `entry.rev` must be newer than every entry of the key.
    pub fn push(&mut self, key: Bytes, entry: Entry) {
        self.keys.entry(key).or_default().push(entry);
    }

    /// Record a write made from the key's live entry at revision `at` ([`KeyIndex::get`] then
    /// [`KeyIndex::push`] with one lookup). Returns that live entry and the new one.
    pub fn write(&mut self, key: Bytes, at: i64, make: impl FnOnce(Option<&Entry>) -> Entry) -> (Option<Entry>, Entry) {
        let history = self.keys.entry(key).or_default();
        let before = live_at(history, at).copied();
        let entry = make(before.as_ref());
        history.push(entry);
        (before, entry)
    }

    /// Drop history older than `at` (see the module invariants). Returns the revisions whose
    /// records are no longer reachable.
    pub fn compact(&mut self, at: i64) -> Vec<Rev> {
        let mut removed = Vec::new();
        self.keys.retain(|_, entries| {
            let n = entries.partition_point(|e| e.rev.main <= at);
            if n == 0 {
                return true;
            }
            let last = &entries[n - 1];
            let drop_to = if last.tombstone && last.rev.main < at { n } else { n - 1 };
            removed.extend(entries.drain(..drop_to).map(|e| e.rev));
            if entries.len() == 1 && entries.spilled() {
                entries.shrink_to_fit(); // back inline: the key's one entry needs no allocation
            }
            !entries.is_empty()
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(main: i64, create: i64, version: i64, tombstone: bool) -> Entry {
        Entry { rev: Rev { main, sub: 0 }, create, version, lease: 0, tombstone }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn index() -> KeyIndex {
        // foo: put@2, put@3, del@5, put@7 ; bar: put@4 ; zoo: put@6
        let mut ix = KeyIndex::default();
        ix.push(b("foo"), e(2, 2, 1, false));
        ix.push(b("foo"), e(3, 2, 2, false));
        ix.push(b("bar"), e(4, 4, 1, false));
        ix.push(b("foo"), e(5, 0, 0, true));
        ix.push(b("zoo"), e(6, 6, 1, false));
        ix.push(b("foo"), e(7, 7, 1, false));
        ix
    }

    #[test]
    fn get_sees_the_key_as_of_each_revision() {
        let ix = index();
        let table = [(1, None), (2, Some(2)), (3, Some(3)), (4, Some(3)), (5, None), (6, None), (7, Some(7))];
        for (at, want) in table {
            assert_eq!(ix.get(b"foo", at).map(|e| e.rev.main), want, "at {at}");
        }
    }

    #[test]
    fn ranges_follow_etcds_key_conventions() {
        let ix = index();
        let keys = |r: KeyRange, at| ix.range(&r, at).map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()).collect::<Vec<_>>();
        assert_eq!(keys(KeyRange::new(&b("foo"), &Bytes::new()), 7), ["foo"]);
        assert_eq!(keys(KeyRange::new(&b("a"), &b("g")), 7), ["bar", "foo"]);
        assert_eq!(keys(KeyRange::new(&b("c"), &Bytes::from_static(b"\0")), 7), ["foo", "zoo"]);
        assert_eq!(keys(KeyRange::new(&Bytes::from_static(b"\0"), &Bytes::from_static(b"\0")), 6), ["bar", "zoo"]);
        assert_eq!(keys(KeyRange::new(&b("z"), &b("a")), 7), Vec::<String>::new());
    }

    #[test]
    fn compaction_keeps_the_newest_live_entry_at_or_below_the_revision() {
        let mut ix = index();
        let removed = ix.compact(5);
        // foo's put@2 and put@3 go; its tombstone@5 stays (at the compacted revision); bar@4
        // stays (newest); zoo/foo@7 untouched.
        let mut mains: Vec<_> = removed.iter().map(|r| r.main).collect();
        mains.sort();
        assert_eq!(mains, [2, 3]);
        assert_eq!(ix.get(b"bar", 5).map(|e| e.rev.main), Some(4));
        assert_eq!(ix.get(b"foo", 7).map(|e| e.rev.main), Some(7));
        assert_eq!(ix.get(b"foo", 5), None);
        // A later compaction takes the tombstone too.
        let removed = ix.compact(6);
        assert_eq!(removed.iter().map(|r| r.main).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(&prefix_end(b"a/")[..], b"a0");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
    }

    #[test]
    fn overlap_of_ranges() {
        let s = |k: &str| KeyRange::Single(b(k));
        let span = |a: &str, z: &str| KeyRange::Span(b(a), b(z));
        assert!(s("a").overlaps(&s("a")));
        assert!(!s("a").overlaps(&s("b")));
        assert!(span("a", "c").overlaps(&s("b")));
        assert!(!span("a", "c").overlaps(&s("c")));
        assert!(KeyRange::From(b("b")).overlaps(&s("z")));
        assert!(!KeyRange::From(b("b")).overlaps(&span("a", "b")));
    }
}
