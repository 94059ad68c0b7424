//! Range semantics on top of the index: which limit to fetch with, the min/max revision filters,
//! and sorting, in the order etcd's `applierV3backend.Range` applies them.

use keel_proto::etcdserverpb::RangeRequest;
use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::mvccpb::KeyValue;

/// How many key-values to load for `req` (0 = all). Sorting and filtering need everything; a
/// plain limited read loads one extra to learn whether there are more.
pub fn fetch_limit(req: &RangeRequest) -> usize {
    // The raw value, as etcd tests it: an unknown sort order also fetches everything.
    if req.sort_order != SortOrder::None as i32
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
    {
        return 0;
    }
    if req.limit > 0 { req.limit as usize + 1 } else { 0 }
}

/// Apply filters, sort and limit to loaded key-values (in key order). Returns whether the limit
/// cut results off (`more`).
pub fn finish(req: &RangeRequest, kvs: &mut Vec<KeyValue>) -> bool {
    kvs.retain(|kv| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    });
    // etcd compares the raw value: an unknown order (not NONE, ASCEND or DESCEND) sorts nothing.
    let mut order = SortOrder::try_from(req.sort_order).ok();
    if req.sort_target() != SortTarget::Key && order == Some(SortOrder::None) {
        // Results come in ascending key order; another target defaults to ascending.
        order = Some(SortOrder::Ascend);
    }
    if let Some(order @ (SortOrder::Ascend | SortOrder::Descend)) = order {
        let target = req.sort_target();
        // Stable, so equal targets stay in key order.
        kvs.sort_by(|a, b| {
            let o = match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend { o.reverse() } else { o }
        });
    }
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kv(key: &str, create: i64, md: i64, version: i64, value: &str) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            create_revision: create,
            mod_revision: md,
            version,
            value: Bytes::copy_from_slice(value.as_bytes()),
            lease: 0,
        }
    }

    fn keys(kvs: &[KeyValue]) -> Vec<String> {
        kvs.iter().map(|k| String::from_utf8(k.key.to_vec()).unwrap()).collect()
    }

    fn all() -> Vec<KeyValue> {
        vec![kv("a", 4, 9, 3, "z"), kv("b", 2, 2, 1, "y"), kv("c", 3, 5, 2, "x")]
    }

    #[test]
    fn sort_filter_limit_table() {
        let req = |f: &dyn Fn(&mut RangeRequest)| {
            let mut r = RangeRequest::default();
            f(&mut r);
            r
        };
        let table: Vec<(RangeRequest, Vec<&str>, bool)> = vec![
            (req(&|_| {}), vec!["a", "b", "c"], false),
            (req(&|r| r.limit = 2), vec!["a", "b"], true),
            (req(&|r| r.set_sort_order(SortOrder::Descend)), vec!["c", "b", "a"], false),
            (req(&|r| r.set_sort_target(SortTarget::Create)), vec!["b", "c", "a"], false),
            // An unknown order sorts nothing, whatever the target (etcd 3.4 compares raw values).
            (
                req(&|r| {
                    r.set_sort_target(SortTarget::Create);
                    r.sort_order = 3
                }),
                vec!["a", "b", "c"],
                false,
            ),
            (
                req(&|r| {
                    r.set_sort_target(SortTarget::Mod);
                    r.set_sort_order(SortOrder::Descend)
                }),
                vec!["a", "c", "b"],
                false,
            ),
            (req(&|r| r.set_sort_target(SortTarget::Value)), vec!["c", "b", "a"], false),
            (req(&|r| r.set_sort_target(SortTarget::Version)), vec!["b", "c", "a"], false),
            (req(&|r| r.min_mod_revision = 5), vec!["a", "c"], false),
            (req(&|r| r.max_create_revision = 3), vec!["b", "c"], false),
            (
                req(&|r| {
                    r.min_create_revision = 3;
                    r.limit = 1;
                    r.set_sort_order(SortOrder::Descend)
                }),
                vec!["c"],
                true,
            ),
        ];
        for (i, (r, want, more)) in table.into_iter().enumerate() {
            let mut kvs = all();
            let got_more = finish(&r, &mut kvs);
            assert_eq!(keys(&kvs), want, "row {i}");
            assert_eq!(got_more, more, "row {i}");
        }
    }

    #[test]
    fn fetch_limit_loads_one_extra_only_for_plain_reads() {
        let mut r = RangeRequest { limit: 2, ..Default::default() };
        assert_eq!(fetch_limit(&r), 3);
        r.set_sort_order(SortOrder::Ascend);
        assert_eq!(fetch_limit(&r), 0);
    }
}
