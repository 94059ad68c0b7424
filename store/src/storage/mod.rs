//! Storage backends: a narrow, ordered byte map with atomic batches and an explicit durability
//! point. The MVCC layer and the lease table are written on top of it; nothing else in the store
//! touches files.
//!
//! Contract every backend keeps:
//! - `write` applies a whole [`WriteBatch`] atomically (all or nothing, even across a crash);
//! - nothing is durable until `sync` returns; after it returns, every earlier `write` survives a
//!   crash (`kill -9`, power loss);
//! - reads see every `write` that returned, synced or not.
//!
//! Implementations: [`sled::SledBackend`] (the default, on disk) and [`memory::MemoryBackend`]
//! (tests and simulation).

pub mod memory;
pub mod sled;

use bytes::Bytes;
use futures::future::BoxFuture;
use std::ops::ControlFlow;

/// A storage failure. The member must stop serving writes when one happens.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> std::io::Error {
        std::io::Error::other(e.0)
    }
}

/// A set of puts and deletes applied atomically.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// `(key, Some(value))` to put, `(key, None)` to delete, in order.
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Bytes of keys and values queued.
    bytes: usize,
}

impl WriteBatch {
    /// Queue a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.ops.push((key, Some(value)));
    }
    /// Queue a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.bytes += key.len();
        self.ops.push((key, None));
    }
    /// Bytes of keys and values queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// Queue everything `other` queued, after what is already here.
    pub fn append(&mut self, other: WriteBatch) {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
    }
}

/// Visit every pair with `from <= key < to` in key order, reading `chunk` pairs at a time, until
/// `visit` answers `Break`.
pub fn scan_each<E: From<StorageError>>(
    backend: &dyn Backend,
    from: &[u8],
    to: &[u8],
    chunk: usize,
    mut visit: impl FnMut(&Bytes, &Bytes) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let mut start = from.to_vec();
    loop {
        let pairs = backend.scan(&start, to, chunk)?;
        let Some((last, _)) = pairs.last() else { return Ok(()) };
        start = last.to_vec();
        start.push(0);
        for (k, v) in &pairs {
            if visit(k, v)?.is_break() {
                return Ok(());
            }
        }
    }
}

/// The ordered byte map the store persists to.
pub trait Backend: Send + Sync + 'static {
    /// One value.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;
    /// Up to `limit` pairs with `from <= key < to`, in key order.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError>;
    /// Apply a batch atomically (not yet durable).
    fn write(&self, batch: WriteBatch) -> Result<(), StorageError>;
    /// Make every earlier write durable. Returns a future so a disk backend can do the blocking
    /// fsync off the async workers while the writer batches the next requests.
    fn sync(&self) -> BoxFuture<'static, Result<(), StorageError>>;
    /// Bytes the backend occupies on disk (or in memory for the memory backend).
    fn size_bytes(&self) -> u64;
    /// Give the space of deleted records back (Maintenance.Defragment). Callers keep writers
    /// out meanwhile. The default has nothing to reclaim.
    fn defragment(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
