//! The Raft log on disk: one append-only file of records, mirrored in memory from the last
//! purge on. openraft reads entries from memory; the file is for restarts.
//!
//! Record: `[len u32][crc32 u32][kind u8][body]`, `len` counting kind and body. Kinds: an entry
//! (its [`super::codec`] encoding), a truncation (first index removed), a purge (log id), the
//! vote, the commit index. Replaying the records in order rebuilds the log. A torn record at the
//! end (a crash mid-write) is cut off; nothing after it was ever acknowledged.
//!
//! Durability: `append` queues its records and its `IOFlushed` callback; the syncer takes every
//! queued record and callback, writes the records in one `write`, runs one `fdatasync`, then
//! completes the callbacks (group commit). Other records (truncations, purges, the commit
//! index) wait in the queue for the next flush. `save_vote` flushes before it returns. On a
//! disk that does not block (the simulation's), the syncer is a task and awaits the disk's
//! own sync ([`LogDisk::sync_later`], which takes simulated time), completing the callbacks
//! only after it. Only
//! the flush touches the file, never under the log's state lock: under load an ext4 `write`
//! waits for a running `fdatasync` of the same file (the inode lock), and an async worker (or a
//! replication task reading entries) must not wait with it. When purges leave the file mostly
//! dead, it is rewritten (temporary file, fsync, rename, directory fsync).
//!
//! The file is reserved ahead in steps of [`GROW_BYTES`] (`fallocate`), so a flush overwrites
//! reserved space instead of growing the file: its `fdatasync` then has no new file size to
//! write along with the data (which made it about a third slower, and costlier in CPU, on this
//! machine's ext4). Reserved space reads as zeros, and replay stops at a zero length, so the
//! log ends where the records do.
//!
//! The bytes live on a [`LogDisk`]: [`FileDisk`] in production, [`MemoryLogDisk`] (which loses
//! what was not synced when it "crashes") for tests and the simulation.

use super::codec::{self, log_id};
pub use super::log_disk::{FileDisk, GROW_BYTES, LogDisk, MemoryLogDisk};
use super::types::{TypeConfig, typ};
use crate::seams::Bugs;
use bytes::{Buf, BufMut, Bytes};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

const ENTRY: u8 = 1;
const TRUNCATE: u8 = 2;
const PURGE: u8 = 3;
const VOTE: u8 = 4;
const COMMITTED: u8 = 5;

/// Past this size, a purge that leaves most of the file dead rewrites it.
const REWRITE_BYTES: u64 = 64 << 20;

struct State {
    entries: BTreeMap<u64, typ::Entry>,
    vote: Option<typ::Vote>,
    committed: Option<typ::LogId>,
    purged: Option<typ::LogId>,
    file_bytes: u64,
}

/// What waits for the next flush.
#[derive(Default)]
struct Pending {
    /// Records not yet written, in order.
    bytes: Vec<u8>,
    /// Appends waiting for their records to be durable.
    flushed: Vec<IOFlushed<TypeConfig>>,
    /// An append asked for a flush (its callback may be in `flushed`, or, with the
    /// `ack_before_sync` bug, already completed).
    wanted: bool,
}

struct Inner {
    disk: Arc<dyn LogDisk>,
    /// Known bugs switched on by a simulation (none in the binary).
    bugs: Bugs,
    state: Mutex<State>,
    pending: Mutex<Pending>,
    /// Held by a flush from taking the queue until the sync is done, so a rewrite of the file
    /// never races a flush of records it already contains.
    io: Mutex<()>,
    wake: std::sync::Condvar,
    wake_task: tokio::sync::Notify,
    /// Set by [`Syncer`]'s drop: the syncer thread ends (after a last flush).
    stopping: std::sync::atomic::AtomicBool,
}

/// The log store; clones share it (the same object is openraft's reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(body);
    out.put_u32_le(body.len() as u32 + 1);
    out.put_u32_le(h.finalize());
    out.put_u8(kind);
    out.extend_from_slice(body);
}

fn id_bytes(id: &typ::LogId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.leader_id.term.to_be_bytes());
    b[8..].copy_from_slice(&id.index.to_be_bytes());
    b
}

impl LogStore {
    /// Open (or create) the log on `disk`.
    pub fn open(disk: Arc<dyn LogDisk>) -> io::Result<LogStore> {
        LogStore::open_with_bugs(disk, Bugs::default())
    }

    /// [`LogStore::open`], with known bugs switched on (the simulation proves its checkers).
    pub fn open_with_bugs(disk: Arc<dyn LogDisk>, bugs: Bugs) -> io::Result<LogStore> {
        let mut st = State { entries: BTreeMap::new(), vote: None, committed: None, purged: None, file_bytes: 0 };
        let raw = Bytes::from(disk.read()?);
        let valid = replay(&raw, &mut st)?;
        if raw[valid..].iter().any(|b| *b != 0) {
            tracing::warn!(dropped = raw.len() - valid, "cut a torn record off the end of the Raft log");
            disk.truncate(valid as u64)?;
        } else {
            disk.resume(valid as u64)?;
        }
        st.file_bytes = valid as u64;
        Ok(LogStore {
            inner: Arc::new(Inner {
                disk,
                bugs,
                state: Mutex::new(st),
                pending: Default::default(),
                io: Mutex::new(()),
                wake: Default::default(),
                wake_task: Default::default(),
                stopping: Default::default(),
            }),
        })
    }

    /// Start the group-commit syncer: it waits for appends, then writes every queued record,
    /// syncs once and completes the appends. For a disk that blocks, a thread of its own, so
    /// writes and fsyncs never hold up (or make tokio replace) an async worker; otherwise a
    /// task on the caller's runtime (the simulation's disk, which must stay on the simulated
    /// runtime). Either runs until the returned guard is dropped.
    pub fn start_syncer(&self) -> io::Result<Syncer> {
        let me = self.clone();
        if self.inner.disk.blocks() {
            let thread = std::thread::Builder::new().name("raft-log-sync".into()).spawn(move || me.sync_thread())?;
            Ok(Syncer(Running::Thread(self.clone(), Some(thread))))
        } else {
            Ok(Syncer(Running::Task(tokio::spawn(async move { me.sync_task().await }))))
        }
    }

    fn sync_thread(&self) {
        use std::sync::atomic::Ordering;
        loop {
            {
                let mut pending = lock(&self.inner.pending);
                while !pending.wanted && !self.inner.stopping.load(Ordering::Acquire) {
                    pending = self.inner.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                }
                if !pending.wanted {
                    return;
                }
            }
            log_failure(self.flush());
        }
    }

    async fn sync_task(&self) {
        loop {
            let notified = self.inner.wake_task.notified();
            if !lock(&self.inner.pending).wanted {
                notified.await;
                continue;
            }
            log_failure(self.flush_later().await);
        }
    }

    /// Write every queued record in one write, sync once, then complete every append that
    /// waited (with the error, if either failed).
    fn flush(&self) -> io::Result<()> {
        let _io = lock(&self.inner.io);
        let Pending { bytes, flushed, .. } = std::mem::take(&mut *lock(&self.inner.pending));
        let disk = &self.inner.disk;
        let result = if bytes.is_empty() { Ok(()) } else { disk.append(&bytes) }.and_then(|()| self.sync(bytes.len()));
        complete(flushed, &result);
        result
    }

    /// [`LogStore::flush`] on a disk that does not block: the sync takes the disk's time
    /// ([`LogDisk::sync_later`]), awaited without the log's locks.
    async fn flush_later(&self) -> io::Result<()> {
        let (written, flushed, len) = {
            let _io = lock(&self.inner.io);
            let Pending { bytes, flushed, .. } = std::mem::take(&mut *lock(&self.inner.pending));
            (if bytes.is_empty() { Ok(()) } else { self.inner.disk.append(&bytes) }, flushed, bytes.len())
        };
        let result = match written {
            Ok(()) if self.skips_sync(len) => Ok(()),
            Ok(()) => self.inner.disk.sync_later().await,
            Err(e) => Err(e),
        };
        complete(flushed, &result);
        result
    }

    fn sync(&self, len: usize) -> io::Result<()> {
        if self.skips_sync(len) { Ok(()) } else { self.inner.disk.sync() }
    }

    /// The `skip_small_syncs` bug: a batch under 256 bytes is not synced.
    fn skips_sync(&self, len: usize) -> bool {
        self.inner.bugs.skip_small_syncs && len > 0 && len < 256
    }

    /// Queue records for the next flush. Called under the state lock, so records queue in the
    /// order their changes reach the state.
    fn write(&self, st: &mut State, buf: &[u8]) {
        lock(&self.inner.pending).bytes.extend_from_slice(buf);
        st.file_bytes += buf.len() as u64;
    }

    /// Make everything appended so far durable now (benchmarks and tests; openraft's appends
    /// are made durable by the syncer).
    pub fn sync_now(&self) -> io::Result<()> {
        self.flush()
    }

    fn rewrite(&self, st: &mut State) -> io::Result<()> {
        let mut buf = Vec::new();
        if let Some(v) = &st.vote {
            record(VOTE, &codec::to_json(v), &mut buf);
        }
        if let Some(c) = &st.committed {
            record(COMMITTED, &codec::to_json(c), &mut buf);
        }
        if let Some(p) = &st.purged {
            record(PURGE, &id_bytes(p), &mut buf);
        }
        let mut e = Vec::new();
        for entry in st.entries.values() {
            e.clear();
            codec::encode_entry(entry, &mut e);
            record(ENTRY, &e, &mut buf);
        }
        // The queued records' changes are in the state, so in `buf`: they are dropped, not
        // written after it. Appends waiting stay queued; their flush syncs the new file.
        let _io = lock(&self.inner.io);
        lock(&self.inner.pending).bytes.clear();
        self.inner.disk.replace(&buf)?;
        st.file_bytes = buf.len() as u64;
        Ok(())
    }
}

/// The running syncer ([`LogStore::start_syncer`]); dropping it stops it: the thread finishes
/// the flush under way (and any append queued before the drop) and is joined, the task is
/// aborted.
pub struct Syncer(Running);

enum Running {
    Thread(LogStore, Option<std::thread::JoinHandle<()>>),
    Task(tokio::task::JoinHandle<()>),
}

impl Drop for Syncer {
    fn drop(&mut self) {
        match &mut self.0 {
            Running::Thread(store, thread) => {
                store.inner.stopping.store(true, std::sync::atomic::Ordering::Release);
                // Under the queue's lock: the thread is either waiting (and is woken) or will
                // see the flag before it waits again.
                drop(lock(&store.inner.pending));
                store.inner.wake.notify_all();
                if let Some(t) = thread.take()
                    && t.join().is_err()
                {
                    tracing::error!("the Raft log syncer thread panicked");
                }
            }
            Running::Task(task) => task.abort(),
        }
    }
}

fn replay(raw: &Bytes, st: &mut State) -> io::Result<usize> {
    let mut pos = 0;
    while raw.len() - pos >= 9 {
        let mut hdr = &raw[pos..pos + 8];
        let len = hdr.get_u32_le() as usize;
        let crc = hdr.get_u32_le();
        if len == 0 || raw.len() - pos - 8 < len || crc32fast::hash(&raw[pos + 8..pos + 8 + len]) != crc {
            break;
        }
        let kind = raw[pos + 8];
        // Copied: a slice would keep the whole file's contents alive as long as the entry.
        let body = Bytes::copy_from_slice(&raw[pos + 9..pos + 8 + len]);
        match kind {
            ENTRY => {
                let e = codec::decode_entry(body)?;
                st.entries.insert(e.log_id.index, e);
            }
            TRUNCATE => {
                let first = (&body[..]).get_u64();
                st.entries.split_off(&first);
            }
            PURGE => {
                let mut b = &body[..];
                let id = log_id(b.get_u64(), b.get_u64());
                st.entries = st.entries.split_off(&(id.index + 1));
                st.purged = Some(id);
            }
            VOTE => st.vote = Some(codec::from_json(&body)?),
            COMMITTED => st.committed = Some(codec::from_json(&body)?),
            k => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown Raft log record kind {k}"))),
        }
        pos += 8 + len;
    }
    Ok(pos)
}

/// Complete the appends of a flush with its result.
fn complete(flushed: Vec<IOFlushed<TypeConfig>>, result: &io::Result<()>) {
    for cb in flushed {
        cb.io_completed(result.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string())));
    }
}

fn log_failure(result: io::Result<()>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "Raft log write or fsync failed");
    }
}

/// Run a blocking call. On a multi-threaded runtime the caller's worker does it in place (a
/// hand-off to the blocking pool costs more than a fast fsync); elsewhere it goes to the pool.
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(f)
    } else {
        tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(&mut self, range: RB) -> io::Result<Vec<typ::Entry>> {
        Ok(lock(&self.inner.state).entries.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> io::Result<Option<typ::Vote>> {
        Ok(lock(&self.inner.state).vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let st = lock(&self.inner.state);
        let last = st.entries.values().next_back().map(|e| e.log_id).or(st.purged);
        Ok(LogState { last_purged_log_id: st.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &typ::Vote) -> io::Result<()> {
        let mut buf = Vec::new();
        record(VOTE, &codec::to_json(vote), &mut buf);
        {
            let mut st = lock(&self.inner.state);
            self.write(&mut st, &buf);
            st.vote = Some(*vote);
        }
        let me = self.clone();
        if self.inner.disk.blocks() { run_blocking(move || me.flush()).await } else { me.flush() }
    }

    async fn save_committed(&mut self, committed: Option<typ::LogId>) -> io::Result<()> {
        // Not synced: it rides along with the next group commit, and is only a hint on restart.
        let Some(c) = committed else { return Ok(()) };
        let mut buf = Vec::new();
        record(COMMITTED, &codec::to_json(&c), &mut buf);
        let mut st = lock(&self.inner.state);
        self.write(&mut st, &buf);
        st.committed = Some(c);
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<typ::LogId>> {
        Ok(lock(&self.inner.state).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut buf = Vec::new();
        let mut e = Vec::new();
        {
            let mut st = lock(&self.inner.state);
            let mut added = Vec::new();
            for entry in entries {
                e.clear();
                codec::encode_entry(&entry, &mut e);
                record(ENTRY, &e, &mut buf);
                added.push(entry);
            }
            for entry in added {
                st.entries.insert(entry.log_id.index, entry);
            }
            // Queued with its records: a flush that writes them completes it.
            self.write(&mut st, &buf);
            let mut pending = lock(&self.inner.pending);
            pending.wanted = true;
            if self.inner.bugs.ack_before_sync {
                callback.io_completed(Ok(()));
            } else {
                pending.flushed.push(callback);
            }
        }
        self.inner.wake.notify_one();
        self.inner.wake_task.notify_one();
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<typ::LogId>) -> io::Result<()> {
        let first = last.map_or(0, |l| l.index + 1);
        let mut buf = Vec::new();
        record(TRUNCATE, &first.to_be_bytes(), &mut buf);
        let mut st = lock(&self.inner.state);
        self.write(&mut st, &buf);
        st.entries.split_off(&first);
        Ok(())
    }

    async fn purge(&mut self, upto: typ::LogId) -> io::Result<()> {
        let mut buf = Vec::new();
        record(PURGE, &id_bytes(&upto), &mut buf);
        let mut st = lock(&self.inner.state);
        self.write(&mut st, &buf);
        st.entries = st.entries.split_off(&(upto.index + 1));
        st.purged = Some(upto);
        if st.file_bytes > REWRITE_BYTES {
            let live: u64 = st.entries.values().map(|e| 25 + codec::entry_bytes(e).len() as u64).sum();
            if live * 4 < st.file_bytes {
                self.rewrite(&mut st)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_disk::FILE;
    use crate::raft::types::LogCmd;
    use crate::types::MemberId;
    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    fn entry(term: u64, index: u64) -> typ::Entry {
        typ::Entry::new(log_id(term, index), EntryPayload::Normal(LogCmd(Bytes::from(format!("{term}/{index}")))))
    }

    async fn append(s: &mut LogStore, es: Vec<typ::Entry>) {
        s.append(es, IOFlushed::noop()).await.unwrap();
    }

    fn open(dir: &Path) -> LogStore {
        LogStore::open(Arc::new(FileDisk::open(dir).unwrap())).unwrap()
    }

    #[tokio::test]
    async fn dropping_the_syncer_ends_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let syncer = s.start_syncer().unwrap();
        assert_eq!(Arc::strong_count(&s.inner), 3, "the store, the guard and the thread hold the log");
        drop(syncer);
        assert_eq!(Arc::strong_count(&s.inner), 1, "the thread ended and let go of the log");
    }

    fn indexes(s: &LogStore) -> Vec<(u64, u64)> {
        lock(&s.inner.state).entries.values().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect()
    }

    #[tokio::test]
    async fn appends_truncations_purges_and_votes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        append(&mut s, (1..=5).map(|i| entry(1, i)).collect()).await;
        s.truncate_after(Some(log_id(1, 3))).await.unwrap();
        append(&mut s, vec![entry(2, 4)]).await;
        s.purge(log_id(1, 1)).await.unwrap();
        let vote = typ::Vote::new(2, MemberId(7));
        s.save_vote(&vote).await.unwrap();
        let before = indexes(&s);
        assert_eq!(before, vec![(1, 2), (1, 3), (2, 4)]);
        drop(s);
        let mut again = open(dir.path());
        assert_eq!(indexes(&again), before);
        assert_eq!(again.read_vote().await.unwrap(), Some(vote));
        let st = again.get_log_state().await.unwrap();
        assert_eq!((st.last_purged_log_id, st.last_log_id), (Some(log_id(1, 1)), Some(log_id(2, 4))));
    }

    #[tokio::test]
    async fn records_reach_the_file_only_in_a_flush_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        append(&mut s, (1..=4).map(|i| entry(1, i)).collect()).await;
        s.truncate_after(Some(log_id(1, 2))).await.unwrap();
        append(&mut s, vec![entry(2, 3)]).await;
        s.save_committed(Some(log_id(2, 3))).await.unwrap();
        let len = || std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert_eq!(len(), 0, "appends do not write: the flush does, off the caller's thread");
        s.sync_now().unwrap();
        assert!(len() > 0);
        drop(s);
        let mut again = open(dir.path());
        assert_eq!(indexes(&again), vec![(1, 1), (1, 2), (2, 3)]);
        assert_eq!(again.read_committed().await.unwrap(), Some(log_id(2, 3)));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        append(&mut s, (1..=3).map(|i| entry(1, i)).collect()).await;
        s.sync_now().unwrap();
        drop(s);
        let path = dir.path().join(FILE);
        let raw = std::fs::read(&path).unwrap();
        let end = raw.iter().rposition(|b| *b != 0).unwrap() as u64 + 1;
        // A crash mid-write: the last record's end never reached the disk.
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&[0; 3], end - 3).unwrap();
        let mut again = open(dir.path());
        assert_eq!(indexes(&again), vec![(1, 1), (1, 2)]);
        append(&mut again, vec![entry(1, 3)]).await;
        again.sync_now().unwrap();
        drop(again);
        assert_eq!(indexes(&open(dir.path())), vec![(1, 1), (1, 2), (1, 3)], "appends after the cut are readable");
    }

    #[tokio::test]
    async fn the_file_is_reserved_ahead_and_appends_resume_where_the_records_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut s = open(dir.path());
        append(&mut s, (1..=2).map(|i| entry(1, i)).collect()).await;
        s.sync_now().unwrap();
        let used = lock(&s.inner.state).file_bytes;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), GROW_BYTES, "a flush writes into reserved space");
        drop(s);
        let mut again = open(dir.path());
        append(&mut again, vec![entry(1, 3)]).await;
        again.sync_now().unwrap();
        drop(again);
        assert_eq!(indexes(&open(dir.path())), vec![(1, 1), (1, 2), (1, 3)], "entry 3 follows entry 2, not the reserved space");
        // Bytes after the zeros (a write that reached the disk out of order before a crash)
        // are cut off, so no later append can line up with them.
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(b"stale", used + 4096).unwrap();
        let again = open(dir.path());
        assert_eq!(indexes(&again), vec![(1, 1), (1, 2), (1, 3)]);
        assert!(!std::fs::read(&path).unwrap().windows(5).any(|w| w == b"stale"), "the stale bytes are gone");
    }

    #[tokio::test]
    async fn a_crashed_memory_disk_keeps_what_was_synced_only() {
        let disk = MemoryLogDisk::new();
        let mut s = LogStore::open(Arc::new(disk.clone())).unwrap();
        append(&mut s, (1..=3).map(|i| entry(1, i)).collect()).await;
        s.sync_now().unwrap();
        append(&mut s, vec![entry(1, 4)]).await;
        let vote = typ::Vote::new(1, MemberId(2));
        s.save_vote(&vote).await.unwrap();
        append(&mut s, vec![entry(1, 5)]).await;
        drop(s);
        disk.crash();
        let mut again = LogStore::open(Arc::new(disk.clone())).unwrap();
        assert_eq!(indexes(&again), vec![(1, 1), (1, 2), (1, 3), (1, 4)], "the vote's sync made entry 4 durable; 5 was lost");
        assert_eq!(again.read_vote().await.unwrap(), Some(vote));
    }

    #[tokio::test]
    async fn a_mostly_dead_file_is_rewritten_with_the_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let big = Bytes::from(vec![7u8; 1 << 20]);
        for i in 1..=70 {
            append(&mut s, vec![typ::Entry::new(log_id(1, i), EntryPayload::Normal(LogCmd(big.clone())))]).await;
        }
        s.purge(log_id(1, 68)).await.unwrap();
        assert!(std::fs::metadata(dir.path().join(FILE)).unwrap().len() < 4 << 20, "the file was rewritten");
        append(&mut s, vec![entry(1, 71)]).await;
        s.sync_now().unwrap();
        drop(s);
        let again = open(dir.path());
        assert_eq!(indexes(&again), vec![(1, 69), (1, 70), (1, 71)]);
    }
}
