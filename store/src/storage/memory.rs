//! An in-memory backend for tests and simulation. It keeps what was synced apart from what was
//! only written, so a simulated crash ([`MemoryBackend::crash`]) loses exactly the unsynced writes.

use super::{Backend, StorageError, WriteBatch};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Map = BTreeMap<Vec<u8>, Bytes>;

/// Shared handle: clones see the same data, which is how a simulated "disk" outlives a host.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    // A std mutex: every critical section is a short map operation, never held across an await.
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    live: Map,
    durable: Map,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget every write since the last `sync`, as a crash would.
    pub fn crash(&self) {
        let mut inner = lock(&self.inner);
        inner.live = inner.durable.clone();
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    // A panic while holding this lock leaves plain maps behind, which are still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(lock(&self.inner).live.get(key).cloned())
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let inner = lock(&self.inner);
        Ok(inner.live.range(from.to_vec()..to.to_vec()).take(limit).map(|(k, v)| (Bytes::copy_from_slice(k), v.clone())).collect())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        for (k, v) in batch.ops {
            match v {
                Some(v) => inner.live.insert(k, Bytes::from(v)),
                None => inner.live.remove(&k),
            };
        }
        Ok(())
    }

    fn sync(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let mut inner = lock(&self.inner);
        inner.durable = inner.live.clone();
        futures::future::ready(Ok(())).boxed()
    }

    fn size_bytes(&self) -> u64 {
        let inner = lock(&self.inner);
        inner.live.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn crash_loses_only_unsynced_writes() {
        let b = MemoryBackend::new();
        let mut w = WriteBatch::default();
        w.put(b"a".to_vec(), b"1".to_vec());
        b.write(w).unwrap();
        b.sync().await.unwrap();
        let mut w = WriteBatch::default();
        w.put(b"b".to_vec(), b"2".to_vec());
        b.write(w).unwrap();
        assert!(b.get(b"b").unwrap().is_some());
        b.crash();
        assert_eq!(b.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(b.get(b"b").unwrap().is_none());
    }
}
