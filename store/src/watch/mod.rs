//! Watch: many watchers multiplexed on one stream, fed by the writer, with bounded memory.
//!
//! ```text
//!  writer --notify(events, rev)--> WatchHub --(per stream Outbox)--> stream sender --> gRPC
//!                                     ^
//!                                     |  catch-up from history (MVCC records by revision)
//!                                  syncer task
//! ```
//!
//! Each watcher is **synced** (gets events straight from `notify`) or **unsynced** (behind:
//! fed from history by the syncer until it reaches the hub's revision). A watcher whose stream's
//! outbox is full becomes unsynced instead of blocking the writer or growing memory: a slow reader
//! only slows itself, as etcd's synced/unsynced/victim groups do.
//!
//! Guarantees kept per watcher: events in revision order, no duplicates, no gaps, a revision's
//! events in one response; a progress response for revision R on a stream is queued only when
//! every watcher of that stream is synced, i.e. after every event `<= R` was queued before it.
//!
//! Lock order: the hub's mutex is taken alone; the syncer takes the state machine's read lock
//! only while *not* holding the hub's mutex.

pub mod hub;
pub mod syncer;

pub use hub::{StreamHandle, WatchHub};
