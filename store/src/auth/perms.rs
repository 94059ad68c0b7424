//! Permission checks on the request path: each user's granted key ranges, merged into sorted,
//! disjoint intervals per permission kind, so a check is one binary search.
//!
//! Key ranges follow etcd's conventions: an empty `range_end` is the single key, `range_end`
//! `"\0"` is every key from `key` on, anything else is `[key, range_end)`.

use keel_proto::authpb::permission::Type as PermType;

/// The upper end of an interval.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// Exclusive upper key.
    Key(Vec<u8>),
    /// No upper end.
    Unbounded,
}

/// A key range as an interval `[start, end)`; `None` when it holds no key.
fn interval(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, End)> {
    match range_end {
        [] => {
            let mut end = key.to_vec();
            end.push(0);
            Some((key.to_vec(), End::Key(end)))
        }
        [0] => Some((key.to_vec(), End::Unbounded)),
        end if end > key => Some((key.to_vec(), End::Key(end.to_vec()))),
        _ => None,
    }
}

/// A union of key intervals, merged: sorted by start, disjoint and not touching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntervalSet {
    ranges: Vec<(Vec<u8>, End)>,
}

impl IntervalSet {
    /// The union of the given `(key, range_end)` ranges.
    pub fn new<'a>(ranges: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> IntervalSet {
        let mut all: Vec<(Vec<u8>, End)> = ranges.into_iter().filter_map(|(k, e)| interval(k, e)).collect();
        all.sort();
        let mut merged: Vec<(Vec<u8>, End)> = Vec::with_capacity(all.len());
        for (start, end) in all {
            if let Some(last) = merged.last_mut() {
                let touches = match &last.1 {
                    End::Unbounded => true,
                    End::Key(e) => start <= *e,
                };
                if touches {
                    if end > last.1 {
                        last.1 = end;
                    }
                    continue;
                }
            }
            merged.push((start, end));
        }
        IntervalSet { ranges: merged }
    }

    /// True when every key of the range lies in the set.
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let Some((start, end)) = interval(key, range_end) else {
            // An empty range asks for nothing, but etcd still wants the start key allowed.
            return self.covers(key, &[]);
        };
        // The last interval starting at or before `start` is the only one that can hold it.
        let i = self.ranges.partition_point(|(s, _)| s.as_slice() <= start.as_slice());
        let Some((_, have)) = i.checked_sub(1).map(|i| &self.ranges[i]) else { return false };
        match (have, &end) {
            (End::Unbounded, _) => true,
            (End::Key(_), End::Unbounded) => false,
            (End::Key(h), End::Key(e)) => e <= h,
        }
    }

    /// Number of merged intervals.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// What one user may do, derived from its roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPerms {
    /// Holds the `root` role: may do everything.
    pub root: bool,
    /// Ranges it may read.
    pub read: IntervalSet,
    /// Ranges it may write.
    pub write: IntervalSet,
}

impl UserPerms {
    /// The permissions of the given `(type, key, range_end)` grants.
    pub fn new<'a>(root: bool, grants: impl IntoIterator<Item = (i32, &'a [u8], &'a [u8])> + Clone) -> UserPerms {
        let readable = |t: i32| t == PermType::Read as i32 || t == PermType::Readwrite as i32;
        let writable = |t: i32| t == PermType::Write as i32 || t == PermType::Readwrite as i32;
        UserPerms {
            root,
            read: IntervalSet::new(grants.clone().into_iter().filter(|g| readable(g.0)).map(|(_, k, e)| (k, e))),
            write: IntervalSet::new(grants.into_iter().filter(|g| writable(g.0)).map(|(_, k, e)| (k, e))),
        }
    }

    /// May read every key of the range.
    pub fn can_read(&self, key: &[u8], range_end: &[u8]) -> bool {
        self.root || self.read.covers(key, range_end)
    }

    /// May write every key of the range.
    pub fn can_write(&self, key: &[u8], range_end: &[u8]) -> bool {
        self.root || self.write.covers(key, range_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(&str, &str)]) -> IntervalSet {
        IntervalSet::new(ranges.iter().map(|(k, e)| (k.as_bytes(), e.as_bytes())))
    }

    #[test]
    fn single_keys_prefixes_and_open_ranges() {
        let s = set(&[("a", ""), ("/p/", "/p0"), ("z", "\0")]);
        assert!(s.covers(b"a", b""));
        assert!(!s.covers(b"a0", b""), "a single key does not grant its neighbours");
        assert!(!s.covers(b"a", b"b"), "nor the range after it");
        assert!(s.covers(b"/p/x", b""));
        assert!(s.covers(b"/p/", b"/p0"));
        assert!(s.covers(b"/p/a", b"/p/b"));
        assert!(!s.covers(b"/p/a", b"/q"), "a range reaching past the prefix is refused as a whole");
        assert!(!s.covers(b"/o", b""));
        assert!(s.covers(b"zz", b"\0"));
        assert!(s.covers(b"zzz", b"\xff\xff"));
        assert!(!s.covers(b"y", b"\0"));
    }

    #[test]
    fn touching_and_overlapping_grants_merge_into_one_interval() {
        let s = set(&[("b", "d"), ("a", "b"), ("c", "f"), ("f", ""), ("x", "y")]);
        assert_eq!(s.len(), 2);
        assert!(s.covers(b"a", b"f"));
        assert!(s.covers(b"f", b""), "the single key at the end joins too");
        assert!(!s.covers(b"a", b"g"));
        let all = set(&[("", "\0"), ("k", "")]);
        assert_eq!(all.len(), 1);
        assert!(all.covers(b"\0", b"\0"));
    }

    #[test]
    fn empty_set_and_empty_ranges() {
        assert!(!IntervalSet::default().covers(b"a", b""));
        let s = set(&[("m", "n"), ("q", "p")]);
        assert_eq!(s.len(), 1, "a backwards grant holds no key");
        assert!(s.covers(b"m", b"a"), "a backwards request asks for its start key only");
        assert!(!s.covers(b"q", b""));
    }

    #[test]
    fn user_perms_by_type() {
        let grants = [(0, &b"r"[..], &b""[..]), (1, &b"w"[..], &b""[..]), (2, &b"rw"[..], &b""[..])];
        let u = UserPerms::new(false, grants);
        assert!(u.can_read(b"r", b"") && !u.can_write(b"r", b""));
        assert!(!u.can_read(b"w", b"") && u.can_write(b"w", b""));
        assert!(u.can_read(b"rw", b"") && u.can_write(b"rw", b""));
        let root = UserPerms::new(true, []);
        assert!(root.can_read(b"anything", b"\0") && root.can_write(b"x", b""));
    }
}
