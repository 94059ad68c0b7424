//! keel-sim: the judges of Keel's robustness testing. Given what clients saw — a history of
//! invoked and returned operations, and the streams watchers received — the checkers decide
//! whether a run kept etcd's guarantees.
//!
//! - [`history`]: operations as clients record them (invoke and return times; a call that timed
//!   out has no result: it may or may not have taken effect).
//! - [`model`]: etcd's KV as a sequential model, revisions included.
//! - [`linearizable_kv`]: is the history linearizable against the model (Wing–Gong search with
//!   memoisation)?
//! - [`watch`]: the watch guarantees (ordered, unique, reliable, atomic, bookmarkable, prev_kv,
//!   events equal to the KV history).
//!
//! Status: the checkers and their self-tests. The turmoil harness that runs real members under
//! faults and records these histories is the next step (see `sim/README.md`).

pub mod history;
pub mod linearizable_kv;
pub mod model;
pub mod watch;
