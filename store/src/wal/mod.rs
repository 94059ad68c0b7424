//! The write-ahead log: where a write becomes durable. Commands are appended as records and made
//! durable with one `fdatasync` per group; the state machine's own storage (sled) is flushed only
//! in the background, and on start-up the log is replayed over it from the state machine's
//! applied index. This keeps the per-write durability cost to one sequential append.
//!
//! On disk: a folder of segment files `<first index, 16 hex digits>.wal`, each a sequence of
//! records `[payload length u32 LE][crc32 of index+payload u32 LE][index u64 LE][payload]`.
//! Indexes are consecutive. A torn or corrupt record ends the log: it and everything after it
//! are cut off when the log is opened (they were never acknowledged, since acknowledgement waits
//! for the sync that would have completed them).
//!
//! Invariants:
//! - `append` writes, `sync` makes everything appended so far durable (earlier segments were
//!   synced when they were closed);
//! - `release(upto)` only deletes whole segments whose records are all `<= upto`, and is called
//!   only after the state machine's storage is durable up to `upto`.

use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record header.
const HEADER: usize = 16;

/// What the writer needs from a log: the seam between the on-disk [`Wal`] and the in-memory
/// [`MemoryLog`] used by tests and the simulation.
pub trait CommandLog: Send {
    /// The index the next record gets.
    fn next_index(&self) -> u64;
    /// Append a record (not yet durable); returns its index.
    fn append(&mut self, payload: &[u8]) -> io::Result<u64>;
    /// Prepare a sync of everything appended so far; the returned closure does the (blocking)
    /// sync and may run off the async workers.
    fn prepare_sync(&mut self) -> io::Result<SyncFn>;
    /// Drop records `<= upto` that the state machine's storage now holds durably.
    fn release(&mut self, upto: u64) -> io::Result<()>;
    /// Make the next record get `index` when the state machine is already past the log.
    fn skip_to(&mut self, index: u64) -> io::Result<()>;
}

/// A deferred sync.
pub type SyncFn = Box<dyn FnOnce() -> io::Result<()> + Send>;

impl CommandLog for Wal {
    fn next_index(&self) -> u64 {
        Wal::next_index(self)
    }
    fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        Wal::append(self, payload)
    }
    fn prepare_sync(&mut self) -> io::Result<SyncFn> {
        let file = self.flush_for_sync()?;
        Ok(Box::new(move || file.sync_data()))
    }
    fn release(&mut self, upto: u64) -> io::Result<()> {
        Wal::release(self, upto)
    }
    fn skip_to(&mut self, index: u64) -> io::Result<()> {
        Wal::skip_to(self, index)
    }
}

/// A log kept in memory (tests, simulation): records are "durable" once synced, and
/// [`MemoryLog::records`] returns them for a simulated restart.
#[derive(Clone, Default)]
pub struct MemoryLog {
    inner: std::sync::Arc<std::sync::Mutex<MemoryLogInner>>,
}

#[derive(Default)]
struct MemoryLogInner {
    records: Vec<(u64, Bytes)>,
    synced: usize,
    next: u64,
}

impl MemoryLog {
    /// A log whose first record gets index `first`.
    pub fn new(first: u64) -> Self {
        let log = MemoryLog::default();
        log.inner.lock().unwrap_or_else(|p| p.into_inner()).next = first;
        log
    }

    /// Synced records with index `>= from`, as a restart would find them.
    pub fn records(&self, from: u64) -> Vec<(u64, Bytes)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.records[..inner.synced].iter().filter(|(i, _)| *i >= from).cloned().collect()
    }
}

impl CommandLog for MemoryLog {
    fn next_index(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next
    }
    fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let index = inner.next;
        inner.records.push((index, Bytes::copy_from_slice(payload)));
        inner.next += 1;
        Ok(index)
    }
    fn prepare_sync(&mut self) -> io::Result<SyncFn> {
        let inner = self.inner.clone();
        let upto = inner.lock().unwrap_or_else(|p| p.into_inner()).records.len();
        Ok(Box::new(move || {
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.synced = inner.synced.max(upto);
            Ok(())
        }))
    }
    fn release(&mut self, upto: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let n = inner.records.iter().take_while(|(i, _)| *i <= upto).count().min(inner.synced);
        inner.records.drain(..n);
        inner.synced -= n;
        Ok(())
    }
    fn skip_to(&mut self, index: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next = inner.next.max(index);
        Ok(())
    }
}

/// A write-ahead log folder.
pub struct Wal {
    dir: PathBuf,
    /// (first index, path) of every segment, oldest first; the last one is open for appends.
    segments: Vec<(u64, PathBuf)>,
    out: BufWriter<File>,
    out_bytes: u64,
    next_index: u64,
    segment_bytes_max: u64,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:016x}.wal"))
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Read the valid records of one segment file; returns them and the byte length they span.
fn read_segment(path: &Path) -> io::Result<(Vec<(u64, Bytes)>, u64)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while data.len() - at >= HEADER {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let index = u64::from_le_bytes(data[at + 8..at + 16].try_into().expect("8 bytes"));
        if data.len() - at - HEADER < len {
            break;
        }
        let payload = &data[at + HEADER..at + HEADER + len];
        if checksum(index, payload) != crc {
            break;
        }
        out.push((index, Bytes::copy_from_slice(payload)));
        at += HEADER + len;
    }
    Ok((out, at as u64))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Open (or create) the log in `dir`. Returns the log, positioned to append after its last
    /// valid record, and every valid record with index `>= from`.
    pub fn open(dir: &Path, segment_bytes_max: u64, from: u64) -> io::Result<(Wal, Vec<(u64, Bytes)>)> {
        fs::create_dir_all(dir)?;
        let mut segments: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(first) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| u64::from_str_radix(s, 16).ok()) else { continue };
            if path.extension().is_some_and(|e| e == "wal") {
                segments.push((first, path));
            }
        }
        segments.sort();
        let mut records: Vec<(u64, Bytes)> = Vec::new();
        let mut next_index = 0;
        let mut keep = 0;
        let mut drop_before = 0;
        let mut tail_bytes = 0;
        let corrupt = |what: String| {
            io::Error::new(io::ErrorKind::InvalidData, format!("write-ahead log in {}: {what}; refusing to start", dir.display()))
        };
        let last = segments.len().saturating_sub(1);
        for (i, (first, path)) in segments.iter().enumerate() {
            if next_index != 0 && *first != next_index {
                // A jump forward is left by `skip_to`, which starts a new segment only when the
                // state machine is durably past every earlier record; then, and only then, the
                // earlier ones may go.
                if *first < next_index || from < *first {
                    return Err(corrupt(format!("segment {} does not follow record {}", path.display(), next_index - 1)));
                }
                records.clear();
                drop_before = i;
            }
            let (recs, valid_bytes) = read_segment(path)?;
            let mut expected = *first;
            let mut consistent = 0;
            let mut consistent_bytes = 0u64;
            for (index, payload) in &recs {
                if *index != expected {
                    break;
                }
                expected += 1;
                consistent += 1;
                consistent_bytes += (HEADER + payload.len()) as u64;
            }
            keep = i + 1;
            next_index = expected;
            tail_bytes = consistent_bytes;
            records.extend(recs.into_iter().take(consistent).filter(|(index, _)| *index >= from));
            if fs::metadata(path)?.len() != consistent_bytes || consistent_bytes != valid_bytes {
                // Only the open (last) segment can have a torn tail: a closed one was synced
                // whole, so damage there is corruption, and cutting it would lose records.
                if i != last {
                    return Err(corrupt(format!(
                        "closed segment {} is damaged after record {}",
                        path.display(),
                        expected.saturating_sub(1)
                    )));
                }
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(consistent_bytes)?;
                f.sync_all()?;
            }
        }
        for (_, path) in segments.drain(..drop_before) {
            fs::remove_file(path)?;
        }
        let keep = keep - drop_before.min(keep);
        for (_, path) in segments.drain(keep..) {
            fs::remove_file(path)?;
        }
        if segments.is_empty() {
            let first = from.max(1);
            let path = segment_path(dir, first);
            File::create(&path)?.sync_all()?;
            sync_dir(dir)?;
            segments.push((first, path));
            next_index = first;
            tail_bytes = 0;
        }
        let last = &segments.last().expect("at least one segment").1;
        let file = OpenOptions::new().append(true).open(last)?;
        // After a kill -9 the tail may sit unsynced in the page cache; it is about to be replayed
        // and served, so make it durable first.
        file.sync_data()?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            out: BufWriter::with_capacity(256 << 10, file),
            out_bytes: tail_bytes,
            next_index,
            segment_bytes_max,
        };
        Ok((wal, records))
    }

    /// The index the next record gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Skip ahead so the next record gets `index`, when the state machine's storage is durably
    /// past every record of the log (a crash kept more of it than of the log's unsynced tail).
    /// Starts a new segment and deletes the older ones.
    pub fn skip_to(&mut self, index: u64) -> io::Result<()> {
        if index > self.next_index {
            self.next_index = index;
            self.rotate()?;
            let open = self.segments.len() - 1;
            for (_, path) in self.segments.drain(..open) {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// Append one record with the next index (buffered; not durable until [`Wal::sync`]).
    pub fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        if self.out_bytes >= self.segment_bytes_max {
            self.rotate()?;
        }
        let index = self.next_index;
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("record too large"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&checksum(index, payload).to_le_bytes())?;
        self.out.write_all(&index.to_le_bytes())?;
        self.out.write_all(payload)?;
        self.out_bytes += (HEADER + payload.len()) as u64;
        self.next_index += 1;
        Ok(index)
    }

    /// Write buffered records to the file and return a handle whose `sync_data` makes them
    /// durable; the caller may run that off the async workers.
    pub fn flush_for_sync(&mut self) -> io::Result<File> {
        self.out.flush()?;
        self.out.get_ref().try_clone()
    }

    /// Make everything appended so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush_for_sync()?.sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        let path = segment_path(&self.dir, self.next_index);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.out = BufWriter::with_capacity(256 << 10, file);
        self.out_bytes = 0;
        self.segments.push((self.next_index, path));
        Ok(())
    }

    /// Delete segments whose records are all `<= upto` (never the open one).
    pub fn release(&mut self, upto: u64) -> io::Result<()> {
        while self.segments.len() > 1 && self.segments[1].0 <= upto + 1 {
            let (_, path) = self.segments.remove(0);
            fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Number of segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(recs: &[(u64, Bytes)]) -> Vec<(u64, String)> {
        recs.iter().map(|(i, p)| (*i, String::from_utf8(p.to_vec()).unwrap())).collect()
    }

    #[test]
    fn the_memory_log_returns_only_synced_records() {
        let mut log = MemoryLog::new(1);
        log.append(b"a").unwrap();
        log.prepare_sync().unwrap()().unwrap();
        log.append(b"b").unwrap();
        assert_eq!(payloads(&log.records(1)), vec![(1, "a".into())], "b was never synced");
        let sync = log.prepare_sync().unwrap();
        log.append(b"c").unwrap();
        sync().unwrap();
        assert_eq!(payloads(&log.records(2)), vec![(2, "b".into())], "a sync covers what was appended before it was prepared");
        log.release(1).unwrap();
        assert_eq!(payloads(&log.records(0)), vec![(2, "b".into())]);
        log.skip_to(10).unwrap();
        assert_eq!(log.next_index(), 10);
    }

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, recs) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        assert!(recs.is_empty());
        for p in ["a", "b", "c"] {
            wal.append(p.as_bytes()).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let (wal, recs) = Wal::open(dir.path(), 1 << 20, 2).unwrap();
        assert_eq!(payloads(&recs), vec![(2, "b".into()), (3, "c".into())]);
        assert_eq!(wal.next_index(), 4);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        wal.append(b"whole").unwrap();
        wal.append(b"torn-record").unwrap();
        wal.sync().unwrap();
        let path = wal.segments[0].1.clone();
        drop(wal);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let (mut wal, recs) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        assert_eq!(payloads(&recs), vec![(1, "whole".into())]);
        assert_eq!(wal.append(b"next").unwrap(), 2);
        wal.sync().unwrap();
        drop(wal);
        let (_, recs) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        assert_eq!(payloads(&recs), vec![(1, "whole".into()), (2, "next".into())]);
    }

    #[test]
    fn a_corrupt_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        for p in ["one", "two", "three"] {
            wal.append(p.as_bytes()).unwrap();
        }
        wal.sync().unwrap();
        let path = wal.segments[0].1.clone();
        drop(wal);
        let mut data = fs::read(&path).unwrap();
        let second_payload = HEADER + 3 + HEADER;
        data[second_payload] ^= 0xff;
        fs::write(&path, data).unwrap();
        let (_, recs) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        assert_eq!(payloads(&recs), vec![(1, "one".into())]);
    }

    #[test]
    fn damage_in_a_closed_segment_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 64, 1).unwrap();
        for i in 0..20 {
            wal.append(format!("record-{i:02}").as_bytes()).unwrap();
        }
        wal.sync().unwrap();
        let first = wal.segments[0].1.clone();
        drop(wal);
        let mut data = fs::read(&first).unwrap();
        data[HEADER + 2] ^= 0xff;
        fs::write(&first, data).unwrap();
        let err = Wal::open(dir.path(), 64, 1).err().expect("a damaged closed segment must not be cut");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(fs::read_dir(dir.path()).unwrap().count() > 3, "nothing was deleted");
    }

    #[test]
    fn a_jump_over_records_still_needed_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        wal.append(b"needed").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let mut f = File::create(segment_path(dir.path(), 50)).unwrap();
        f.write_all(&3u32.to_le_bytes()).unwrap();
        f.write_all(&checksum(50, b"new").to_le_bytes()).unwrap();
        f.write_all(&50u64.to_le_bytes()).unwrap();
        f.write_all(b"new").unwrap();
        drop(f);
        // The state machine has applied nothing: record 1 is still needed.
        assert!(Wal::open(dir.path(), 1 << 20, 1).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "nothing was deleted");
    }

    #[test]
    fn segments_rotate_and_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 64, 1).unwrap();
        for i in 0..20 {
            wal.append(format!("record-{i:02}").as_bytes()).unwrap();
        }
        wal.sync().unwrap();
        assert!(wal.segment_count() > 3);
        wal.release(10).unwrap();
        drop(wal);
        let (_, recs) = Wal::open(dir.path(), 64, 1).unwrap();
        assert!(recs.first().unwrap().0 <= 11, "records after 10 are kept");
        assert_eq!(recs.last().unwrap().0, 20);
        let (_, recs) = Wal::open(dir.path(), 64, 15).unwrap();
        assert_eq!(recs.first().unwrap().0, 15);
    }

    #[test]
    fn skipping_ahead_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        wal.append(b"old").unwrap();
        wal.sync().unwrap();
        wal.skip_to(50).unwrap();
        assert_eq!(wal.append(b"new").unwrap(), 50);
        wal.sync().unwrap();
        drop(wal);
        let (wal, recs) = Wal::open(dir.path(), 1 << 20, 50).unwrap();
        assert_eq!(payloads(&recs), vec![(50, "new".into())]);
        assert_eq!(wal.next_index(), 51);
    }

    #[test]
    fn a_jump_left_by_an_interrupted_skip_keeps_the_newer_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20, 1).unwrap();
        wal.append(b"old").unwrap();
        wal.sync().unwrap();
        drop(wal);
        // As if `skip_to(50)` created its segment and crashed before deleting the old one.
        let mut f = File::create(segment_path(dir.path(), 50)).unwrap();
        let payload = b"new";
        f.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&checksum(50, payload).to_le_bytes()).unwrap();
        f.write_all(&50u64.to_le_bytes()).unwrap();
        f.write_all(payload).unwrap();
        drop(f);
        // The state machine is durably past record 49, so the older segment may go.
        let (wal, recs) = Wal::open(dir.path(), 1 << 20, 50).unwrap();
        assert_eq!(payloads(&recs), vec![(50, "new".into())]);
        assert_eq!(wal.segment_count(), 1);
    }
}
