//! Txn compare evaluation, as etcd's `applyCompare`/`compareKV`: a pure function of the compare
//! and the key-values currently in its range.

use keel_proto::etcdserverpb::Compare;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::mvccpb::KeyValue;
use std::cmp::Ordering;

/// True when `cmp` holds for `kvs`, the live keys in the compare's range (possibly none).
///
/// A range compare holds when it holds for every key; an empty range compares as one key with
/// version, create, mod revision and lease 0, except that a VALUE compare on nothing is false.
pub fn holds(cmp: &Compare, kvs: &[KeyValue]) -> bool {
    if kvs.is_empty() {
        if cmp.target() == CompareTarget::Value {
            return false;
        }
        return holds_one(cmp, &KeyValue::default());
    }
    kvs.iter().all(|kv| holds_one(cmp, kv))
}

fn holds_one(cmp: &Compare, kv: &KeyValue) -> bool {
    let ord = match cmp.target() {
        CompareTarget::Value => {
            let want: &[u8] = match &cmp.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_ref().cmp(want)
        }
        CompareTarget::Version => kv.version.cmp(&int_target(cmp)),
        CompareTarget::Create => kv.create_revision.cmp(&int_target(cmp)),
        CompareTarget::Mod => kv.mod_revision.cmp(&int_target(cmp)),
        CompareTarget::Lease => kv.lease.cmp(&int_target(cmp)),
    };
    match cmp.result() {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}

/// The integer the compare carries for its target; 0 when the union holds another kind, as
/// etcd's generated getters return.
fn int_target(cmp: &Compare) -> i64 {
    match (&cmp.target_union, cmp.target()) {
        (Some(TargetUnion::Version(v)), CompareTarget::Version) => *v,
        (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create) => *v,
        (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod) => *v,
        (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => *v,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kv(version: i64, create: i64, md: i64, lease: i64, value: &str) -> KeyValue {
        KeyValue {
            key: Bytes::from_static(b"k"),
            version,
            create_revision: create,
            mod_revision: md,
            lease,
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    fn cmp(target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
        Compare {
            result: result as i32,
            target: target as i32,
            key: Bytes::from_static(b"k"),
            range_end: Bytes::new(),
            target_union: Some(u),
        }
    }

    #[test]
    fn compare_table() {
        use CompareResult::*;
        use CompareTarget::*;
        let k = kv(2, 5, 7, 0, "bar");
        let table: Vec<(Compare, Vec<KeyValue>, bool)> = vec![
            (cmp(Value, Equal, TargetUnion::Value("bar".into())), vec![k.clone()], true),
            (cmp(Value, Greater, TargetUnion::Value("baa".into())), vec![k.clone()], true),
            (cmp(Value, Less, TargetUnion::Value("baa".into())), vec![k.clone()], false),
            (cmp(Value, NotEqual, TargetUnion::Value("x".into())), vec![k.clone()], true),
            (cmp(Version, Equal, TargetUnion::Version(2)), vec![k.clone()], true),
            (cmp(Create, Less, TargetUnion::CreateRevision(6)), vec![k.clone()], true),
            (cmp(Mod, Greater, TargetUnion::ModRevision(7)), vec![k.clone()], false),
            (cmp(Lease, Equal, TargetUnion::Lease(0)), vec![k.clone()], true),
            // missing key: create-if-absent is mod == 0
            (cmp(Mod, Equal, TargetUnion::ModRevision(0)), vec![], true),
            (cmp(Version, Greater, TargetUnion::Version(0)), vec![], false),
            // a value compare on nothing is false whatever the operator
            (cmp(Value, NotEqual, TargetUnion::Value("x".into())), vec![], false),
            // a union of the wrong kind compares against 0
            (cmp(Version, Equal, TargetUnion::ModRevision(2)), vec![k.clone()], false),
            // ranges: every key must match
            (cmp(Version, Equal, TargetUnion::Version(2)), vec![k.clone(), kv(1, 1, 1, 0, "")], false),
        ];
        for (i, (c, kvs, want)) in table.into_iter().enumerate() {
            assert_eq!(holds(&c, &kvs), want, "row {i}");
        }
    }
}
