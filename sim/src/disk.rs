//! The simulated Raft log disk, in LazyFS's spirit: appends land in a page cache, a sync takes
//! simulated time (1–4 ms, one in five 10–40 ms, drawn from the disk's seed) and makes durable
//! only what was written
//! when it started, and a crash keeps what was synced plus, as a torn write, a random prefix
//! of what was not. So a crash can land between a write, its acknowledgement and its sync, and
//! a store that acknowledges before the sync completes loses acknowledged writes here.
//!
//! `replace` (the log rewritten) and `truncate` are atomic and durable at once, as the store's
//! file disk makes them (temporary file, fsync, rename). A sync that started before a replace
//! finds a new generation when it completes and changes nothing: the replace made everything
//! durable itself. With `lying` set, syncs make nothing durable (the "fsync that lies" bug).

use keel_store::raft::log_store::LogDisk;
use keel_store::seams::{Rng, SplitMix64};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Shortest and longest simulated sync, in milliseconds: most syncs are quick, one in
/// [`SLOW_ONE_IN`] is slow (a device's tail), long enough for acknowledgements to outrun it.
const SYNC_MS: (u64, u64) = (1, 4);
const SLOW_SYNC_MS: (u64, u64) = (10, 40);
const SLOW_ONE_IN: u64 = 5;

struct State {
    /// Everything written, synced or not.
    bytes: Vec<u8>,
    /// The durable prefix of `bytes`.
    synced: usize,
    /// Raised by `replace`: a sync of an older generation completes without effect.
    generation: u64,
    rng: SplitMix64,
    lying: bool,
}

/// One member's simulated log disk; clones share it (it outlives the member's incarnations).
#[derive(Clone)]
pub struct SimLogDisk {
    state: Arc<Mutex<State>>,
}

impl SimLogDisk {
    /// An empty disk whose sync times and torn writes follow `seed`.
    pub fn new(seed: u64, lying: bool) -> SimLogDisk {
        let state = State { bytes: Vec::new(), synced: 0, generation: 0, rng: SplitMix64(seed), lying };
        SimLogDisk { state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A power cut: what was synced stays, and of the rest a random prefix (possibly ending
    /// mid-record: a torn write). Returns the bytes lost.
    pub fn crash(&self) -> usize {
        let mut s = self.lock();
        let unsynced = s.bytes.len() - s.synced;
        let kept = if unsynced == 0 { 0 } else { (s.rng.next_u64() % (unsynced as u64 + 1)) as usize };
        let keep = s.synced + kept;
        s.bytes.truncate(keep);
        s.synced = keep;
        unsynced - kept
    }

    /// Bytes written and not yet synced.
    pub fn unsynced(&self) -> usize {
        let s = self.lock();
        s.bytes.len() - s.synced
    }
}

impl LogDisk for SimLogDisk {
    fn read(&self) -> io::Result<Vec<u8>> {
        Ok(self.lock().bytes.clone())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.bytes.truncate(len as usize);
        s.synced = s.bytes.len();
        Ok(())
    }
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.lock().bytes.extend_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let mut s = self.lock();
        if !s.lying {
            s.synced = s.bytes.len();
        }
        Ok(())
    }
    fn sync_later(&self) -> futures::future::BoxFuture<'static, io::Result<()>> {
        let (generation, upto, took) = {
            let mut s = self.lock();
            let (lo, hi) = if s.rng.next_u64().is_multiple_of(SLOW_ONE_IN) { SLOW_SYNC_MS } else { SYNC_MS };
            let took = lo + s.rng.next_u64() % (hi - lo + 1);
            (s.generation, s.bytes.len(), Duration::from_millis(took))
        };
        let state = self.state.clone();
        Box::pin(async move {
            tokio::time::sleep(took).await;
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if s.generation == generation && !s.lying {
                s.synced = s.synced.max(upto.min(s.bytes.len()));
            }
            Ok(())
        })
    }
    fn replace(&self, contents: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.bytes = contents.to_vec();
        s.synced = s.bytes.len();
        s.generation += 1;
        Ok(())
    }
    fn blocks(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sync_makes_durable_only_what_was_written_when_it_started_and_only_once_done() {
        let d = SimLogDisk::new(7, false);
        d.append(b"aaaa").unwrap();
        let sync = d.sync_later();
        d.append(b"bbbb").unwrap();
        assert_eq!(d.unsynced(), 8, "nothing is durable before the sync completes");
        sync.await.unwrap();
        assert_eq!(d.unsynced(), 4, "the bytes written after it started are not covered");
        let lost = d.crash();
        let kept = d.read().unwrap();
        assert!(kept.starts_with(b"aaaa") && kept.len() == 8 - lost, "synced bytes stay, a prefix of the rest may: {kept:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_before_the_sync_completes_keeps_at_most_a_torn_prefix() {
        let mut kept_whole = false;
        let mut torn = false;
        for seed in 0..32 {
            let d = SimLogDisk::new(seed, false);
            d.append(b"0123456789").unwrap();
            let _unfinished = d.sync_later();
            d.crash();
            let kept = d.read().unwrap();
            assert!(b"0123456789".starts_with(&kept));
            kept_whole |= kept.len() == 10;
            torn |= !kept.is_empty() && kept.len() < 10;
        }
        assert!(torn && kept_whole, "some crashes tear the write, some keep it whole");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lying_disk_never_makes_anything_durable_and_a_replace_always_does() {
        let d = SimLogDisk::new(1, true);
        d.append(b"x").unwrap();
        d.sync().unwrap();
        d.sync_later().await.unwrap();
        assert_eq!(d.unsynced(), 1);
        d.replace(b"yy").unwrap();
        assert_eq!(d.unsynced(), 0);
    }
}
