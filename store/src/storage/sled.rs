//! The on-disk backend on sled 0.34. sled's background flusher is turned off: data becomes
//! durable only in [`Backend::sync`], which the member calls when it flushes or snapshots.
//! The size on disk (a directory walk in sled) is measured at most every
//! [`SIZE_REFRESH`], since the quota check asks after every applied batch.

use super::{Backend, StorageError, WriteBatch};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use std::path::Path;

/// How stale the reported size may be.
const SIZE_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// A sled database in one folder.
#[derive(Clone)]
pub struct SledBackend {
    db: sled::Db,
    dir: std::path::PathBuf,
    size: std::sync::Arc<std::sync::Mutex<(u64, Option<std::time::Instant>)>>,
}

fn err(e: sled::Error) -> StorageError {
    StorageError(format!("sled: {e}"))
}

impl SledBackend {
    /// Open (or create) the database in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(err)?;
        Ok(Self { db, dir: dir.to_path_buf(), size: Default::default() })
    }
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.db.get(key).map_err(err)?.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.db.range(from..to).take(limit) {
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
        self.db.apply_batch(b).map_err(err)
    }

    fn sync(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let db = self.db.clone();
        let dir = self.dir.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                db.flush().map_err(err)?;
                // With its own flusher off, sled's flush writes and `sync_file_range`s its
                // buffers but never fsyncs the file, so neither the file's size nor the disk's
                // cache is guaranteed. Log segments are deleted on the strength of this sync, so
                // it must be a real one.
                let io = |e: std::io::Error| StorageError(format!("syncing sled's files: {e}"));
                for entry in std::fs::read_dir(&dir).map_err(io)? {
                    let path = entry.map_err(io)?.path();
                    if path.is_file() {
                        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
                    }
                }
                std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io)
            })
            .await
            .map_err(|e| StorageError(format!("sync task failed: {e}")))?
        }
        .boxed()
    }

    // Real disk, real clock: this backend is never used in simulation.
    #[allow(clippy::disallowed_methods)]
    fn size_bytes(&self) -> u64 {
        let mut size = self.size.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if size.1.is_none_or(|at| now.duration_since(at) >= SIZE_REFRESH) {
            *size = (self.db.size_on_disk().unwrap_or(size.0), Some(now));
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
}
