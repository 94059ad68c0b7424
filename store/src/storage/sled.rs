//! The on-disk backend on sled 0.34. sled's background flusher is turned off: data becomes
//! durable only in [`Backend::sync`], which the member calls when it flushes or snapshots.
//! The size on disk (a directory walk in sled) is measured at most every 100 ms, since the
//! quota check asks after every applied batch.

use super::{Backend, StorageError, WriteBatch};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// How stale the reported size may be.
const SIZE_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// The open database and the folder it lives in.
struct Live {
    db: sled::Db,
    path: PathBuf,
}

/// A sled database under one base path. Defragmentation writes a compact copy into a new
/// generation folder (`<base>.<n>`) and switches to it by rewriting the pointer file
/// `<base>.current` (temporary file, fsync, rename), so a crash leaves either generation
/// whole; the handle sits behind a lock so the switch is seen by every clone.
#[derive(Clone)]
pub struct SledBackend {
    live: Arc<RwLock<Live>>,
    base: PathBuf,
    size: Arc<Mutex<(u64, Option<std::time::Instant>)>>,
    cache_bytes: u64,
}

fn err(e: sled::Error) -> StorageError {
    StorageError(format!("sled: {e}"))
}

fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StorageError> {
    let config = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(None).mode(sled::Mode::HighThroughput);
    // sled releases its file lock from background threads once the last handle is gone, so a
    // reopen right after a close (tests) may briefly find it held.
    let mut tries = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock && tries < 300 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.map_err(err),
        }
    }
}

fn with_suffix(dir: &Path, suffix: &str) -> PathBuf {
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

/// The generation of a folder: `<base>` is 0, `<base>.<n>` is n.
fn generation(base: &Path, path: &Path) -> u64 {
    let (b, p) = (base.as_os_str().to_string_lossy(), path.as_os_str().to_string_lossy());
    p.strip_prefix(&*b).and_then(|rest| rest.strip_prefix('.')).and_then(|n| n.parse().ok()).unwrap_or(0)
}

impl SledBackend {
    /// Open (or create) the database under `base`. `cache_bytes` bounds sled's page cache.
    /// Folders of other generations (a defragmentation cut short, or finished but not yet
    /// cleaned up) are removed.
    pub fn open(base: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let io = |e: std::io::Error| StorageError(format!("opening {}: {e}", base.display()));
        let pointer = with_suffix(base, ".current");
        let path = match std::fs::read_to_string(&pointer) {
            Ok(name) => base.with_file_name(name.trim()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => base.to_path_buf(),
            Err(e) => return Err(io(e)),
        };
        if let (Some(parent), Some(name)) = (base.parent(), base.file_name()) {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            std::fs::create_dir_all(parent).map_err(io)?;
            let prefix = name.to_string_lossy().to_string();
            for entry in std::fs::read_dir(parent).map_err(io)? {
                let other = entry.map_err(io)?.path();
                let other_name = other.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let is_generation = other_name == prefix
                    || other_name.strip_prefix(&format!("{prefix}.")).is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
                if is_generation && other.is_dir() && other != path {
                    std::fs::remove_dir_all(&other).map_err(io)?;
                }
            }
        }
        let db = open_db(&path, cache_bytes)?;
        Ok(Self { live: Arc::new(RwLock::new(Live { db, path })), base: base.to_path_buf(), size: Default::default(), cache_bytes })
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrite the database into a fresh copy holding only live records, then switch to it,
    /// so the space of deleted and compacted records goes back to the file system. The caller
    /// keeps writers out meanwhile.
    pub fn defragment(&self) -> Result<(), StorageError> {
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        let io = |e: std::io::Error| StorageError(format!("defragmenting: {e}"));
        let next = with_suffix(&self.base, &format!(".{}", generation(&self.base, &live.path) + 1));
        if next.exists() {
            std::fs::remove_dir_all(&next).map_err(io)?;
        }
        let copy = open_db(&next, self.cache_bytes)?;
        let mut batch = sled::Batch::default();
        for (n, item) in live.db.iter().enumerate() {
            let (k, v) = item.map_err(err)?;
            batch.insert(k, v);
            if n % 4096 == 4095 {
                copy.apply_batch(std::mem::take(&mut batch)).map_err(err)?;
            }
        }
        copy.apply_batch(batch).map_err(err)?;
        copy.flush().map_err(err)?;
        sync_files(&next)?;
        // The switch: the pointer names the new generation once it is whole on disk.
        let pointer = with_suffix(&self.base, ".current");
        let tmp = with_suffix(&self.base, ".current.tmp");
        let name = next.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        std::fs::write(&tmp, name.as_bytes()).map_err(io)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &pointer).map_err(io)?;
        sync_parent(&self.base).map_err(io)?;
        let old = std::mem::replace(&mut *live, Live { db: copy, path: next });
        drop(old.db);
        std::fs::remove_dir_all(&old.path).map_err(io)?;
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
        Ok(self.db().db.get(key).map_err(err)?.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let live = self.db();
        for item in live.db.range(from..to).take(limit) {
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
        self.db().db.apply_batch(b).map_err(err)
    }

    fn sync(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let this = self.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                // The lock keeps a defragmentation from swapping the files mid-sync.
                let live = this.db();
                live.db.flush().map_err(err)?;
                // With its own flusher off, sled's flush writes and `sync_file_range`s its
                // buffers but never fsyncs the file, so neither the file's size nor the disk's
                // cache is guaranteed. The Raft log is purged on the strength of this sync, so
                // it must be a real one.
                sync_files(&live.path)
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
            *size = (self.db().db.size_on_disk().unwrap_or(size.0), Some(now));
        }
        size.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of a folder, as a crash would leave it (the files as they are on disk now).
    fn crash_image(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                crash_image(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn synced_writes_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let b = SledBackend::open(&live, 1 << 20).unwrap();
        let mut w = WriteBatch::default();
        w.put(b"k1".to_vec(), b"v1".to_vec());
        w.put(b"k2".to_vec(), b"v2".to_vec());
        w.delete(b"k1".to_vec());
        b.write(w).unwrap();
        b.sync().await.unwrap();
        // (Opened from a copy: sled may hold its lock on the original past a drop.)
        let image = dir.path().join("image");
        crash_image(&live, &image);
        let b = SledBackend::open(&image, 1 << 20).unwrap();
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
        let before = b.db().db.size_on_disk().unwrap();
        b.defragment().unwrap();
        let after = b.db().db.size_on_disk().unwrap();
        assert!(after < before / 2, "{before} -> {after}");
        assert_eq!(b.scan(&[0u8; 4], &[0xff; 4], usize::MAX).unwrap().len(), 100);
        assert_eq!(b.get(&50u32.to_be_bytes()).unwrap().unwrap().len(), 512);
        // (Reopening in this process is avoided: sled may hold its file lock past the drop.)
        assert_eq!(std::fs::read_to_string(with_suffix(&path, ".current")).unwrap(), "db.1");
        assert!(!path.exists() && with_suffix(&path, ".1").exists(), "only the new generation is left");
        b.defragment().unwrap();
        assert!(!with_suffix(&path, ".1").exists() && with_suffix(&path, ".2").exists());
        let mut batch = WriteBatch::default();
        batch.put(b"after".to_vec(), b"v".to_vec());
        b.write(batch).unwrap();
        b.sync().await.unwrap();
        assert_eq!(b.get(b"after").unwrap().unwrap(), &b"v"[..]);
    }

    #[test]
    fn a_defragmentation_cut_short_before_the_switch_leaves_the_old_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live").join("db");
        {
            let b = SledBackend::open(&path, 1 << 20).unwrap();
            let mut batch = WriteBatch::default();
            batch.put(b"k".to_vec(), b"old".to_vec());
            b.write(batch).unwrap();
            b.db().db.flush().unwrap();
        }
        {
            // A copy written but never switched to.
            let copy = open_db(&with_suffix(&path, ".1"), 1 << 20).unwrap();
            copy.insert(b"k", b"copy".to_vec()).unwrap();
            copy.flush().unwrap();
        }
        // Opened from a crash image of the folder (sled may hold its locks past a drop).
        crash_image(&dir.path().join("live"), &dir.path().join("image"));
        let path = dir.path().join("image").join("db");
        let b = SledBackend::open(&path, 1 << 20).unwrap();
        assert_eq!(b.get(b"k").unwrap().unwrap(), &b"old"[..]);
        assert!(!with_suffix(&path, ".1").exists(), "the unfinished copy is removed");
    }
}
