//! Crash test: `kill -9` under concurrent writes, then restart; every acknowledged write must be
//! there with the revision it was acknowledged at.

mod common;

use common::Member;
use common::*;
use keel_proto::etcdserverpb::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let mut m = Member::start(&[]);
    let mut total = 0;
    for round in 0..5u64 {
        let acked: Arc<Mutex<Vec<(String, i64, String)>>> = Default::default();
        let kv = m.kv().await;
        let mut writers = Vec::new();
        for w in 0..8 {
            let mut kv = kv.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    // Keys are rewritten within and across rounds, so history matters too.
                    let key = format!("w{w}/k{}", i % 50);
                    let value = format!("r{round}-{i}");
                    match kv.put(PutRequest { key: b(&key), value: b(&value), ..Default::default() }).await {
                        Ok(r) => acked.lock().unwrap().push((key, r.into_inner().header.unwrap().revision, value)),
                        Err(_) => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        m.kill9();
        for w in writers {
            w.await.unwrap();
        }
        m.restart();
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: no write was acknowledged before the kill");
        total += acked.len();
        let mut kv = m.kv().await;
        let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
        for (key, rev, value) in &acked {
            // The key as of the acknowledged revision is exactly that write.
            let r = kv.range(RangeRequest { key: b(key), revision: *rev, ..Default::default() }).await.unwrap().into_inner();
            let kv0 = r.kvs.first().unwrap_or_else(|| panic!("round {round}: acknowledged {key}@{rev} lost"));
            assert_eq!((kv0.mod_revision, String::from_utf8(kv0.value.to_vec()).unwrap()), (*rev, value.clone()), "round {round}: {key}");
            let e = latest.entry(key).or_default();
            *e = (*e).max(*rev);
        }
        for (key, rev) in latest {
            let now = kv.range(RangeRequest { key: b(key), ..Default::default() }).await.unwrap().into_inner();
            assert!(now.kvs[0].mod_revision >= rev, "round {round}: {key} went back before revision {rev}");
        }
    }
    assert!(total > 100, "the test wrote too little to mean anything ({total} writes)");
}
