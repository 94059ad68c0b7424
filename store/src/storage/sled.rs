//! The on-disk backend on sled 0.34. sled's background flusher is turned off: data becomes
//! durable only in [`Backend::sync`], which the member calls when it flushes or snapshots.
//! The size on disk (a directory walk in sled) is measured at most every 100 ms, since the
//! quota check asks after every applied batch.

use super::{Backend, StorageError, WriteBatch};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use std::path::Path;

/// How stale the reported size may be.
const SIZE_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// A sled database in one folder. The handle sits behind a lock so that defragmentation can
/// replace the whole database with a compact copy.
#[derive(Clone)]
pub struct SledBackend {
    db: std::sync::Arc<std::sync::RwLock<sled::Db>>,
    dir: std::path::PathBuf,
    size: std::sync::Arc<std::sync::Mutex<(u64, Option<std::time::Instant>)>>,
    cache_bytes: u64,
}

fn err(e: sled::Error) -> StorageError {
    StorageError(format!("sled: {e}"))
}

fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StorageError> {
    sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(None).mode(sled::Mode::HighThroughput).open().map_err(err)
}

fn with_suffix(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn sync_parent(dir: &Path) -> std::io::Result<()> {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => std::fs::File::open(p)?.sync_all(),
        _ => Ok(()),
    }
}

impl SledBackend {
    /// Open (or create) the database in `dir`. `cache_bytes` bounds sled's page cache. A
    /// defragmentation cut short by a crash is finished or undone first.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let (copy, old) = (with_suffix(dir, ".defrag"), with_suffix(dir, ".old"));
        let io = |e: std::io::Error| StorageError(format!("recovering a defragmentation: {e}"));
        if !dir.exists() && copy.exists() {
            // The copy was complete (it is renamed only after it is synced).
            std::fs::rename(&copy, dir).map_err(io)?;
            sync_parent(dir).map_err(io)?;
        }
        for leftover in [&copy, &old] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover).map_err(io)?;
            }
        }
        let db = open_db(dir, cache_bytes)?;
        Ok(Self { db: std::sync::Arc::new(std::sync::RwLock::new(db)), dir: dir.to_path_buf(), size: Default::default(), cache_bytes })
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, sled::Db> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrite the database into a fresh copy holding only live records, then swap it in, so
    /// the space of deleted and compacted records goes back to the file system. The caller
    /// keeps writers out meanwhile. Crash-safe: the copy is synced before the swap, and
    /// [`SledBackend::open`] finishes or undoes a swap that was cut short.
    pub fn defragment(&self) -> Result<(), StorageError> {
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        let (copy_dir, old) = (with_suffix(&self.dir, ".defrag"), with_suffix(&self.dir, ".old"));
        let io = |e: std::io::Error| StorageError(format!("defragmenting: {e}"));
        if copy_dir.exists() {
            std::fs::remove_dir_all(&copy_dir).map_err(io)?;
        }
        {
            let copy = open_db(&copy_dir, self.cache_bytes)?;
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in db.iter() {
                let (k, v) = item.map_err(err)?;
                batch.insert(k, v);
                n += 1;
                if n % 4096 == 0 {
                    copy.apply_batch(std::mem::take(&mut batch)).map_err(err)?;
                }
            }
            copy.apply_batch(batch).map_err(err)?;
            copy.flush().map_err(err)?;
            sync_files(&copy_dir)?;
        }
        std::fs::rename(&self.dir, &old).map_err(io)?;
        std::fs::rename(&copy_dir, &self.dir).map_err(io)?;
        sync_parent(&self.dir).map_err(io)?;
        // sled releases its file lock from background threads once every handle is gone.
        let mut tries = 0;
        *db = loop {
            match open_db(&self.dir, self.cache_bytes) {
                Ok(fresh) => break fresh,
                Err(e) if tries < 200 => {
                    tries += 1;
                    tracing::debug!(error = %e.0, "waiting for sled to release the copy");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        std::fs::remove_dir_all(&old).map_err(io)?;
        *self.size.lock().unwrap_or_else(|p| p.into_inner()) = (0, None);
        Ok(())
    }
}

/// fsync every file of a sled folder and the folder itself.
fn sync_files(dir: &Path) -> Result<(), StorageError> {
    let io = |e: std::io::Error| StorageError(format!("syncing sled's files: {e}"));
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() {
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
        }
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.db().get(key).map_err(err)?.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let db = self.db();
        for item in db.range(from..to).take(limit) {
            let (k, v) = item.map_err(err)?;
            out.push((Bytes::copy_from_slice(&k), Bytes::copy_from_slice(&v)));
        }
        Ok(out)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db().apply_batch(b).map_err(err)
    }

    fn sync(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let this = self.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                // The lock keeps a defragmentation from swapping the files mid-sync.
                let db = this.db();
                db.flush().map_err(err)?;
                // With its own flusher off, sled's flush writes and `sync_file_range`s its
                // buffers but never fsyncs the file, so neither the file's size nor the disk's
                // cache is guaranteed. The Raft log is purged on the strength of this sync, so
                // it must be a real one.
                sync_files(&this.dir)
            })
            .await
            .map_err(|e| StorageError(format!("sync task failed: {e}")))?
        }
        .boxed()
    }

    fn defragment(&self) -> Result<(), StorageError> {
        SledBackend::defragment(self)
    }

    // Real disk, real clock: this backend is never used in simulation.
    #[allow(clippy::disallowed_methods)]
    fn size_bytes(&self) -> u64 {
        let mut size = self.size.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if size.1.is_none_or(|at| now.duration_since(at) >= SIZE_REFRESH) {
            *size = (self.db().size_on_disk().unwrap_or(size.0), Some(now));
        }
        size.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synced_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = SledBackend::open(dir.path(), 1 << 20).unwrap();
            let mut w = WriteBatch::default();
            w.put(b"k1".to_vec(), b"v1".to_vec());
            w.put(b"k2".to_vec(), b"v2".to_vec());
            w.delete(b"k1".to_vec());
            b.write(w).unwrap();
            b.sync().await.unwrap();
        }
        let b = SledBackend::open(dir.path(), 1 << 20).unwrap();
        assert!(b.get(b"k1").unwrap().is_none());
        let all = b.scan(b"", b"\xff", 10).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(&all[0].1[..], b"v2");
    }

    #[tokio::test]
    async fn defragmenting_gives_space_back_and_keeps_every_live_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let b = SledBackend::open(&path, 1 << 20).unwrap();
        let mut batch = WriteBatch::default();
        for i in 0..20_000u32 {
            batch.put(i.to_be_bytes().to_vec(), vec![7u8; 512]);
        }
        b.write(batch).unwrap();
        b.sync().await.unwrap();
        let mut batch = WriteBatch::default();
        for i in 100..20_000u32 {
            batch.delete(i.to_be_bytes().to_vec());
        }
        b.write(batch).unwrap();
        b.sync().await.unwrap();
        let before = b.db().size_on_disk().unwrap();
        b.defragment().unwrap();
        let after = b.db().size_on_disk().unwrap();
        assert!(after < before / 2, "{before} -> {after}");
        assert_eq!(b.scan(&[0u8; 4], &[0xff; 4], usize::MAX).unwrap().len(), 100);
        drop(b);
        let again = SledBackend::open(&path, 1 << 20).unwrap();
        assert_eq!(again.get(&50u32.to_be_bytes()).unwrap().unwrap().len(), 512);
        assert!(!with_suffix(&path, ".old").exists() && !with_suffix(&path, ".defrag").exists());
    }

    #[test]
    fn a_defragmentation_cut_short_after_the_first_rename_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let copy = open_db(&with_suffix(&path, ".defrag"), 1 << 20).unwrap();
            copy.insert(b"k", b"v".to_vec()).unwrap();
            copy.flush().unwrap();
        }
        std::fs::create_dir_all(with_suffix(&path, ".old")).unwrap();
        let b = SledBackend::open(&path, 1 << 20).unwrap();
        assert_eq!(b.get(b"k").unwrap().unwrap(), &b"v"[..]);
        assert!(!with_suffix(&path, ".old").exists());
    }
}
