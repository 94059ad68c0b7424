//! A client-side history: every operation with the time it was invoked and, if the client got
//! an answer, the time and the answer. Times are any monotonic clock (the simulation's).

use std::fmt;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// Linearizable get of one key.
    Get {
        /// Key.
        key: String,
    },
    /// Put.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Delete one key.
    Delete {
        /// Key.
        key: String,
    },
    /// Kubernetes' optimistic write: `if mod_revision(key) == expected { put } else { get }`
    /// (`expected` 0: create if absent).
    CompareAndPut {
        /// Key.
        key: String,
        /// Expected mod revision.
        expected_mod: i64,
        /// Value to put.
        value: String,
    },
    /// Kubernetes' optimistic delete: `if mod_revision(key) == expected { delete } else { get }`.
    CompareAndDelete {
        /// Key.
        key: String,
        /// Expected mod revision.
        expected_mod: i64,
    },
    /// A txn of several puts: one revision for all of them.
    MultiPut {
        /// (key, value) pairs, distinct keys.
        kvs: Vec<(String, String)>,
    },
    /// Put attached to a lease.
    PutWithLease {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Lease ID (granted before, never revoked before).
        lease: i64,
    },
    /// Revoke a lease: its keys are deleted in one revision.
    LeaseRevoke {
        /// Lease ID.
        lease: i64,
    },
}

impl Request {
    /// True when the request can change the store.
    pub fn writes(&self) -> bool {
        !matches!(self, Request::Get { .. })
    }
}

/// What the store answered (the parts a checker can hold it to).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    /// For [`Request::Get`]: the value and mod revision (0 when absent), and the header revision.
    Get {
        /// Value, if the key exists.
        value: Option<String>,
        /// Its mod revision (0 when absent).
        mod_revision: i64,
        /// The store revision in the response header.
        revision: i64,
    },
    /// For [`Request::Put`], [`Request::MultiPut`], [`Request::PutWithLease`]: the header
    /// revision (the put's own revision).
    Put {
        /// Header revision.
        revision: i64,
    },
    /// For [`Request::Delete`].
    Delete {
        /// Keys deleted (0 or 1).
        deleted: i64,
        /// Header revision.
        revision: i64,
    },
    /// For [`Request::LeaseRevoke`]: the header revision.
    Revoke {
        /// Header revision.
        revision: i64,
    },
    /// For [`Request::CompareAndPut`] and [`Request::CompareAndDelete`]: whether the compare
    /// held; on failure the current value.
    Txn {
        /// The compare held and the put happened.
        succeeded: bool,
        /// Header revision.
        revision: i64,
        /// On failure: the value read.
        value: Option<String>,
        /// On failure: its mod revision.
        mod_revision: i64,
    },
}

/// One operation as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Which client (one operation at a time per client).
    pub client: u32,
    /// When it was invoked.
    pub call: u64,
    /// When the answer arrived; `None` when none did (timeout, connection lost): the operation
    /// may have taken effect at any time after `call`, or never.
    pub ret: Option<u64>,
    /// The request.
    pub request: Request,
    /// The answer, with `ret`. An error answer that proves nothing happened is left out of
    /// the history altogether.
    pub response: Option<Response>,
}

impl Operation {
    /// True when the client got an answer.
    pub fn returned(&self) -> bool {
        self.ret.is_some() && self.response.is_some()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.ret.map_or("?".to_string(), |r| r.to_string());
        write!(f, "client {} [{}, {}] {:?} -> ", self.client, self.call, ret, self.request)?;
        match &self.response {
            Some(r) => write!(f, "{r:?}"),
            None => write!(f, "(no answer)"),
        }
    }
}

/// A recorded history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Operations in any order.
    pub ops: Vec<Operation>,
}

impl History {
    /// Record an operation.
    pub fn push(&mut self, op: Operation) {
        self.ops.push(op);
    }

    /// One line per operation, sorted by invocation: the byte-for-byte comparable form.
    pub fn render(&self) -> String {
        let mut ops: Vec<&Operation> = self.ops.iter().collect();
        ops.sort_by_key(|o| (o.call, o.client));
        ops.iter().map(|o| format!("{o}\n")).collect()
    }
}
