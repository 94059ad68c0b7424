//! etcd's KV as a sequential model: a store revision and, per key, its value and mod revision.
//! A write that changes something raises the revision by one; a delete of a missing key and a
//! failed compare change nothing.

use crate::history::{Request, Response};
use std::collections::BTreeMap;

/// The model's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvState {
    /// Store revision (etcd starts at 1; the model starts wherever the history does).
    pub revision: i64,
    /// Key → (value, mod revision).
    pub kvs: BTreeMap<String, (String, i64)>,
    /// Key → the lease it is attached to.
    pub leases: BTreeMap<String, i64>,
}

impl KvState {
    /// A store at `revision` with no keys.
    pub fn at(revision: i64) -> KvState {
        KvState { revision, kvs: BTreeMap::new(), leases: BTreeMap::new() }
    }

    /// Apply `req`; the new state and the answer the real store must have given.
    pub fn step(&self, req: &Request) -> (KvState, Response) {
        let mut next = self.clone();
        let resp = match req {
            Request::Get { key } => {
                let (value, mod_revision) = self.kvs.get(key).map_or((None, 0), |(v, m)| (Some(v.clone()), *m));
                Response::Get { value, mod_revision, revision: self.revision }
            }
            Request::Put { key, value } => {
                next.revision += 1;
                next.kvs.insert(key.clone(), (value.clone(), next.revision));
                next.leases.remove(key);
                Response::Put { revision: next.revision }
            }
            Request::PutWithLease { key, value, lease } => {
                next.revision += 1;
                next.kvs.insert(key.clone(), (value.clone(), next.revision));
                next.leases.insert(key.clone(), *lease);
                Response::Put { revision: next.revision }
            }
            Request::MultiPut { kvs } => {
                next.revision += 1;
                for (k, v) in kvs {
                    next.kvs.insert(k.clone(), (v.clone(), next.revision));
                    next.leases.remove(k);
                }
                Response::Put { revision: next.revision }
            }
            Request::LeaseRevoke { lease } => {
                let attached: Vec<String> = self.leases.iter().filter(|(_, l)| *l == lease).map(|(k, _)| k.clone()).collect();
                if !attached.is_empty() {
                    next.revision += 1;
                    for k in &attached {
                        next.kvs.remove(k);
                        next.leases.remove(k);
                    }
                }
                Response::Revoke { revision: next.revision }
            }
            Request::CompareAndDelete { key, expected_mod } => {
                let (current, mod_revision) = self.kvs.get(key).map_or((None, 0), |(v, m)| (Some(v.clone()), *m));
                if mod_revision == *expected_mod {
                    // etcd: the compare holds for a missing key and 0; the delete then deletes
                    // nothing and the revision stays.
                    if next.kvs.remove(key).is_some() {
                        next.revision += 1;
                    }
                    next.leases.remove(key);
                    Response::Txn { succeeded: true, revision: next.revision, value: None, mod_revision: 0 }
                } else {
                    Response::Txn { succeeded: false, revision: self.revision, value: current, mod_revision }
                }
            }
            Request::Delete { key } => {
                next.leases.remove(key);
                if next.kvs.remove(key).is_some() {
                    next.revision += 1;
                    Response::Delete { deleted: 1, revision: next.revision }
                } else {
                    Response::Delete { deleted: 0, revision: next.revision }
                }
            }
            Request::CompareAndPut { key, expected_mod, value } => {
                let (current, mod_revision) = self.kvs.get(key).map_or((None, 0), |(v, m)| (Some(v.clone()), *m));
                if mod_revision == *expected_mod {
                    next.revision += 1;
                    next.kvs.insert(key.clone(), (value.clone(), next.revision));
                    next.leases.remove(key);
                    Response::Txn { succeeded: true, revision: next.revision, value: None, mod_revision: 0 }
                } else {
                    Response::Txn { succeeded: false, revision: self.revision, value: current, mod_revision }
                }
            }
        };
        (next, resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Request {
        Request::Put { key: k.into(), value: v.into() }
    }

    #[test]
    fn revisions_rise_only_on_changes() {
        let s = KvState::at(1);
        let (s, r) = s.step(&put("a", "1"));
        assert_eq!(r, Response::Put { revision: 2 });
        let (s, r) = s.step(&Request::Delete { key: "b".into() });
        assert_eq!(r, Response::Delete { deleted: 0, revision: 2 });
        let cas = Request::CompareAndPut { key: "a".into(), expected_mod: 1, value: "x".into() };
        let (s, r) = s.step(&cas);
        assert_eq!(r, Response::Txn { succeeded: false, revision: 2, value: Some("1".into()), mod_revision: 2 });
        let cas = Request::CompareAndPut { key: "a".into(), expected_mod: 2, value: "x".into() };
        let (s, r) = s.step(&cas);
        assert_eq!(r, Response::Txn { succeeded: true, revision: 3, value: None, mod_revision: 0 });
        let (_, r) = s.step(&Request::Get { key: "a".into() });
        assert_eq!(r, Response::Get { value: Some("x".into()), mod_revision: 3, revision: 3 });
    }

    #[test]
    fn a_revoke_deletes_the_keys_still_attached_in_one_revision() {
        let s = KvState::at(1);
        let (s, _) = s.step(&Request::PutWithLease { key: "a".into(), value: "1".into(), lease: 7 });
        let (s, _) = s.step(&Request::PutWithLease { key: "b".into(), value: "1".into(), lease: 7 });
        let (s, _) = s.step(&put("b", "2")); // detached by a plain put
        let (s, r) = s.step(&Request::LeaseRevoke { lease: 7 });
        assert_eq!(r, Response::Revoke { revision: 5 });
        assert!(!s.kvs.contains_key("a") && s.kvs.contains_key("b"));
        let (_, r) = s.step(&Request::LeaseRevoke { lease: 7 });
        assert_eq!(r, Response::Revoke { revision: 5 });
    }

    #[test]
    fn a_multi_put_is_one_revision_and_a_compare_and_delete_needs_the_key() {
        let s = KvState::at(1);
        let (s, r) = s.step(&Request::MultiPut { kvs: vec![("a".into(), "1".into()), ("b".into(), "1".into())] });
        assert_eq!(r, Response::Put { revision: 2 });
        assert_eq!(s.kvs["b"], ("1".to_string(), 2));
        let (s, r) = s.step(&Request::CompareAndDelete { key: "a".into(), expected_mod: 2 });
        assert_eq!(r, Response::Txn { succeeded: true, revision: 3, value: None, mod_revision: 0 });
        let (_, r) = s.step(&Request::CompareAndDelete { key: "a".into(), expected_mod: 0 });
        assert_eq!(r, Response::Txn { succeeded: true, revision: 3, value: None, mod_revision: 0 }, "as etcd: holds, deletes nothing");
        let (_, r) = s.step(&Request::CompareAndDelete { key: "b".into(), expected_mod: 0 });
        assert_eq!(r, Response::Txn { succeeded: false, revision: 3, value: Some("1".into()), mod_revision: 2 });
    }
}
