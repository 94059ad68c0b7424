//! MVCC: every key's history by revision, as etcd's `mvcc` package keeps it.
//!
//! ```text
//!   KeyIndex (memory)                     Backend (disk)
//!   key -> [Entry{rev, create, version,   k<main><sub> -> KeyValue record
//!            lease, tombstone}, ...]      m/compacted  -> revision
//! ```
//!
//! - [`index`]: the in-memory key index (pure).
//! - [`codec`]: record layout in the backend.
//! - [`compare`]: txn compare evaluation (pure).
//! - [`range`]: Range semantics: sort, limit, filters (pure over loaded key-values).
//! - [`store`]: [`Mvcc`], which keeps the index and the backend in step.
//!
//! Revisions: the store starts at revision 1 (etcd's empty store reports 1). Each mutating request
//! takes the next main revision; a request that changes nothing takes none.

pub mod codec;
pub mod compare;
pub mod index;
pub mod range;
pub mod store;

pub use index::{Entry, KeyIndex, KeyRange, Rev, prefix_end};
pub use store::{Mvcc, UnreadPrev, WriteCtx};
