//! Where the Raft log's bytes live: the [`LogDisk`] trait, [`FileDisk`] (one file,
//! `raft.log`, reserved ahead in steps of [`GROW_BYTES`] so a sync writes no new file size) and
//! [`MemoryLogDisk`] (which keeps, across a "crash", only what was synced) for tests.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The log file's name in its directory.
pub(crate) const FILE: &str = "raft.log";
/// The log file is reserved ahead in steps of this size (see the module doc).
pub const GROW_BYTES: u64 = 4 << 20;

/// Where the log's bytes live.
pub trait LogDisk: Send + Sync + 'static {
    /// Everything written (after a crash: what was synced, perhaps more).
    fn read(&self) -> io::Result<Vec<u8>>;
    /// Cut the contents to `len` bytes, durably (a torn tail found at open).
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// The contents end at `len`; what [`LogDisk::read`] returned after it is reserved space
    /// (zeros), where the next append goes.
    fn resume(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Append bytes (durable only after [`LogDisk::sync`]).
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Make every append so far durable.
    fn sync(&self) -> io::Result<()>;
    /// For a disk that does not block ([`LogDisk::blocks`] is false): make every append so
    /// far durable, taking the time the device takes (the simulation's disk waits in simulated
    /// time, and a crash meanwhile loses what it had not synced). The syncer task awaits it
    /// without the log's locks, so a [`LogDisk::replace`] may come meanwhile; that makes
    /// everything durable itself. The default syncs at once.
    fn sync_later(&self) -> futures::future::BoxFuture<'static, io::Result<()>> {
        let synced = self.sync();
        Box::pin(async move { synced })
    }
    /// Replace the whole contents, atomically and durably.
    fn replace(&self, contents: &[u8]) -> io::Result<()>;
    /// True when `sync` blocks on a device: the syncer then gets a thread of its own, else it
    /// runs as a task (the simulation's disk, which must stay on the simulated runtime).
    fn blocks(&self) -> bool;
}

/// The log as one file, `raft.log`, in a directory.
pub struct FileDisk {
    dir: PathBuf,
    file: Mutex<Slot>,
}

/// The open file, where the contents end and how far it is reserved.
struct Slot {
    file: Arc<File>,
    end: u64,
    size: u64,
}

impl Slot {
    fn open(path: &Path, create: bool) -> io::Result<Slot> {
        let file = OpenOptions::new().read(true).write(true).create(create).open(path)?;
        let size = file.metadata()?.len();
        Ok(Slot { file: Arc::new(file), end: size, size })
    }
}

impl FileDisk {
    /// Open (or create) the log file in `dir`.
    pub fn open(dir: &Path) -> io::Result<FileDisk> {
        std::fs::create_dir_all(dir)?;
        let slot = Slot::open(&dir.join(FILE), true)?;
        sync_dir(dir)?;
        Ok(FileDisk { dir: dir.to_path_buf(), file: Mutex::new(slot) })
    }

    fn file(&self) -> Arc<File> {
        lock(&self.file).file.clone()
    }
}

/// Reserve the file's bytes `from..to` (zeros, counted in its size). False where the
/// filesystem cannot: appends then grow the file.
fn reserve(file: &File, from: u64, to: u64) -> bool {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), from, to - from).is_ok()
}

impl LogDisk for FileDisk {
    fn read(&self) -> io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        File::open(self.dir.join(FILE))?.read_to_end(&mut raw)?;
        Ok(raw)
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut slot = lock(&self.file);
        slot.file.set_len(len)?;
        slot.file.sync_all()?;
        (slot.end, slot.size) = (len, len);
        Ok(())
    }
    fn resume(&self, len: u64) -> io::Result<()> {
        lock(&self.file).end = len;
        Ok(())
    }
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        // Under the lock: a concurrent `replace` cannot swap the file mid-write.
        let mut slot = lock(&self.file);
        let end = slot.end + buf.len() as u64;
        if end > slot.size {
            let size = end.next_multiple_of(GROW_BYTES);
            if reserve(&slot.file, slot.size, size) {
                slot.size = size;
            }
        }
        slot.file.write_all_at(buf, slot.end)?;
        slot.end = end;
        slot.size = slot.size.max(end);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        // Outside the lock: appends go on while the device syncs.
        self.file().sync_data()
    }
    fn replace(&self, contents: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(FILE))?;
        sync_dir(&self.dir)?;
        *lock(&self.file) = Slot::open(&self.dir.join(FILE), false)?;
        Ok(())
    }
    fn blocks(&self) -> bool {
        true
    }
}

/// A log disk in memory that keeps, across [`MemoryLogDisk::crash`], only what was synced.
/// Clones share the disk (the simulation keeps one outside the member it restarts).
#[derive(Clone, Default)]
pub struct MemoryLogDisk {
    bytes: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl MemoryLogDisk {
    /// An empty disk.
    pub fn new() -> MemoryLogDisk {
        MemoryLogDisk::default()
    }

    /// Lose everything written since the last sync, as a power cut would.
    pub fn crash(&self) {
        let mut b = lock(&self.bytes);
        let synced = b.1;
        b.0.truncate(synced);
    }
}

impl LogDisk for MemoryLogDisk {
    fn read(&self) -> io::Result<Vec<u8>> {
        Ok(lock(&self.bytes).0.clone())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut b = lock(&self.bytes);
        b.0.truncate(len as usize);
        b.1 = b.0.len();
        Ok(())
    }
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        lock(&self.bytes).0.extend_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let mut b = lock(&self.bytes);
        b.1 = b.0.len();
        Ok(())
    }
    fn replace(&self, contents: &[u8]) -> io::Result<()> {
        *lock(&self.bytes) = (contents.to_vec(), contents.len());
        Ok(())
    }
    fn blocks(&self) -> bool {
        false
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
