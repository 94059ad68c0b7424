//! The seams through which the outside world reaches the store: randomness, wall-clock time and
//! the way a member dials its peers here, and (in `node`) the listeners and the storage backend.
//! Only `main.rs` and the simulation pick the concrete ones. Elapsed time is always
//! `tokio::time`, which the simulation drives.

use futures::future::BoxFuture;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream to a peer.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// How a member reaches a peer's address (`secure`: the peer URL is `https://`).
pub trait Dialer: Send + Sync + 'static {
    /// A connected stream to `addr`.
    fn dial(&self, addr: SocketAddr, secure: bool) -> BoxFuture<'static, std::io::Result<Box<dyn PeerIo>>>;
}

/// Elapsed time as the member's lease deadlines see it. The binary passes [`TokioClock`]; the
/// simulation passes clocks that run fast or slow (drift) to check leases under it.
pub trait LeaseClock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> tokio::time::Instant;
}

/// tokio's clock (the simulation drives it; in production it is the system's monotonic clock).
pub struct TokioClock;

impl LeaseClock for TokioClock {
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// Wall-clock time, for what is defined by it (JWT expiry).
pub trait WallClock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn unix_secs(&self) -> u64;
}

/// The operating system's clock.
pub struct SystemClock;

impl WallClock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place the system clock is read.
    fn unix_secs(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// What the outside world hands a member (besides its listeners and storage).
pub struct Seams {
    /// Randomness (lease IDs).
    pub rng: Box<dyn Rng>,
    /// How peers are dialed.
    pub dialer: std::sync::Arc<dyn Dialer>,
    /// Wall-clock time.
    pub clock: std::sync::Arc<dyn WallClock>,
    /// The clock lease deadlines are kept by.
    pub lease_clock: std::sync::Arc<dyn LeaseClock>,
    /// Known bugs to switch on (the binary never does).
    pub bugs: Bugs,
}

/// Known bugs a simulation switches on to prove its checkers catch them. The binary always
/// passes `Bugs::default()`: none. Each is one branch at the place the bug would live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// A follower serves linearizable reads from its own state, without a read index.
    pub stale_follower_reads: bool,
    /// Watch responses leave out the events of every revision ending in 7.
    pub watch_skips_revisions: bool,
    /// Watchers created without `prev_kv` miss the events of every revision divisible by 7
    /// (the watch hub's selection).
    pub watch_drops_without_prev_kv: bool,
    /// The Raft log acknowledges an append as soon as it is queued, before the flush that
    /// makes it durable (the log store's `append`).
    pub ack_before_sync: bool,
    /// The Raft log's flush skips the sync when the batch is small (under 256 bytes).
    pub skip_small_syncs: bool,
    /// Not a bug but what the simulation sets with the durability faults above (and its lying
    /// disks): a leader that finds a follower's log went back re-replicates to it (openraft's
    /// `allow_log_reversion`) instead of panicking. The panic, inside the simulated runtime,
    /// aborts the whole process (tokio shuts the runtime down mid-poll and a destructor panics
    /// again), so the fault's harm would never reach the checkers as the lost write it is.
    pub replicate_over_reverted_logs: bool,
}

/// A source of random numbers, seeded by whoever builds the member.
pub trait Rng: Send {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64: tiny, fast, and fully determined by its seed.
pub struct SplitMix64(pub u64);

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (SplitMix64(42), SplitMix64(42));
        let xs: Vec<_> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<_> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], SplitMix64(43).next_u64());
    }
}
