//! Leader election end to end: two keel-controller-managers over the Lease
//! `kube-system/kube-controller-manager`, the real keel-scheduler and simulated keel-kubelets.
//! The leader is killed (-9) in the middle of a rollout, later the next one is frozen (SIGSTOP)
//! past its renew deadline and woken; across it all the store's own history shows no pod
//! created for a slot that was already filled and never more than replicas + maxSurge pods,
//! and the managers' logged acts fall in disjoint terms.

mod common;

use common::history::{self, Change};
use common::{LoggedAct, acts_in_log, apply, ok, spawn_kubelets, spawn_manager, spawn_scheduler, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use keel_testkit::Cluster;
use kube::api::{Api, ListParams};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// 10 replicas, maxSurge 3, maxUnavailable 2; minReadySeconds stretches the rollout over several
/// steps so that the kill lands inside it.
const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 10
  minReadySeconds: 2
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 3, maxUnavailable: 2}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "img:v1"}]}
"#;

/// Short election timings (kube's are 15 s / 10 s / 2 s) so that handovers fit in a test.
const ELECTING: &[&str] =
    &["--leader-elect=true", "--leader-elect-lease-duration=6s", "--leader-elect-renew-deadline=4s", "--leader-elect-retry-period=1s"];

async fn lease(client: &kube::Client) -> Option<(String, i32)> {
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-system");
    let spec = leases.get_opt("kube-controller-manager").await.ok().flatten()?.spec?;
    Some((spec.holder_identity.filter(|h| !h.is_empty())?, spec.lease_transitions.unwrap_or(0)))
}

/// The manager whose log announces `identity` as its own.
fn index_of(c: &Cluster, identity: &str) -> usize {
    c.components
        .iter()
        .position(|p| p.name.contains("controller-manager") && p.log().contains(&format!("identity={identity} ")))
        .unwrap_or_else(|| panic!("which process is {identity}?\n{}", c.logs()))
}

async fn rollout_done(pods: &Api<Pod>, replicas: usize, image: &str) -> Option<()> {
    let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?.items;
    let live: Vec<&Pod> = list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let image_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
    let done = live.len() == replicas && live.iter().all(|p| image_of(p) == image && keel_controllers::pod::is_ready(p));
    done.then_some(())
}

/// The acts of one manager, pods only, with their store revision.
fn pod_acts(log: &str) -> Vec<LoggedAct> {
    acts_in_log(log).into_iter().filter(|a| a.kind == "pod").collect()
}

/// `terms_are_disjoint`: grouping every act by (holder, transitions), the terms' revision
/// ranges never overlap — at no point in the store's history did two terms both write.
fn terms_are_disjoint(acts: &[LoggedAct]) -> Result<usize, String> {
    let mut ranges: std::collections::BTreeMap<(String, i32), (i64, i64)> = Default::default();
    for a in acts {
        let Some(rv) = a.rv else { continue };
        let r = ranges.entry((a.holder.clone(), a.transitions)).or_insert((rv, rv));
        *r = (r.0.min(rv), r.1.max(rv));
    }
    let mut sorted: Vec<_> = ranges.into_iter().collect();
    sorted.sort_by_key(|(_, (lo, _))| *lo);
    for pair in sorted.windows(2) {
        let ((a, (_, a_hi)), (b, (b_lo, _))) = (&pair[0], &pair[1]);
        if a_hi > b_lo {
            return Err(format!("term {a:?} wrote up to rev {a_hi}, after term {b:?} began at rev {b_lo}"));
        }
    }
    Ok(sorted.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_manager_acts_at_a_time_across_kill_9_and_freeze_and_no_pod_is_created_twice() {
    let mut c = Cluster::start();
    spawn_scheduler(&mut c);
    spawn_kubelets(&mut c, 3, &[]);
    spawn_manager(&mut c, ELECTING);
    spawn_manager(&mut c, ELECTING);
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let (first, _) = wait_for(&c, Duration::from_secs(30), "a leader", || lease(&client)).await;
    let leader = index_of(&c, &first);
    apply(&c, DEPLOY).await;
    wait_for(&c, Duration::from_secs(60), "10 pods of img:v1", || rollout_done(&pods, 10, "img:v1")).await;

    // kill -9 of the leader while the new ReplicaSet is being scaled up.
    ok(&c, &["set", "image", "deployment/web", "c=img:v2"]).await;
    wait_for(&c, Duration::from_secs(30), "the new ReplicaSet's first pods", || async {
        let list = rss.list(&ListParams::default().labels("app=web")).await.ok()?.items;
        let image = |rs: &ReplicaSet| rs.spec.as_ref()?.template.as_ref()?.spec.as_ref()?.containers.first()?.image.clone();
        list.iter().any(|rs| image(rs).as_deref() == Some("img:v2") && rs.status.as_ref().is_some_and(|s| s.replicas > 0)).then_some(())
    })
    .await;
    c.components[leader].kill9();
    let killed = Instant::now();
    let (second, _) =
        wait_for(&c, Duration::from_secs(30), "the standby leading", || async { lease(&client).await.filter(|(h, _)| h != &first) }).await;
    println!("takeover {:?} after kill -9 (leaseDuration 6 s)", killed.elapsed());
    let standby = index_of(&c, &second);
    let deployments = Api::<Deployment>::namespaced(client.clone(), "default");
    wait_for(&c, Duration::from_secs(60), "the rollout finished by the standby", || rollout_done(&pods, 10, "img:v2")).await;
    assert!(deployments.get("web").await.ok().and_then(|d| d.status).and_then(|s| s.updated_replicas) == Some(10));

    // The killed manager comes back as a standby (a new identity); the leader is frozen past
    // its renew deadline, the other takes over and scales; the frozen one wakes and must not
    // write anything.
    c.components[leader].restart();
    wait_for(&c, Duration::from_secs(20), "the restarted manager electing", || async {
        (c.components[leader].log().matches("leader election on").count() == 2).then_some(())
    })
    .await;
    let acts_before_freeze = acts_in_log(&c.components[standby].log()).len();
    c.components[standby].signal("-STOP");
    let (third, _) = wait_for(&c, Duration::from_secs(30), "a new leader after the freeze", || async {
        lease(&client).await.filter(|(h, _)| h != &second)
    })
    .await;
    ok(&c, &["scale", "deployment/web", "--replicas=12"]).await;
    wait_for(&c, Duration::from_secs(30), "12 pods", || rollout_done(&pods, 12, "img:v2")).await;
    c.components[standby].signal("-CONT");
    ok(&c, &["scale", "deployment/web", "--replicas=13"]).await;
    wait_for(&c, Duration::from_secs(30), "13 pods", || rollout_done(&pods, 13, "img:v2")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woken = c.components[standby].log();
    assert_eq!(acts_in_log(&woken).len(), acts_before_freeze, "the woken manager wrote nothing:\n{woken}");
    assert!(woken.contains("leadership lost"), "it says it stopped its controllers:\n{woken}");

    // The store's history: every pod creation filled a vacancy, never more than 13 pods (10 +
    // maxSurge 3 during the rollout; 13 replicas at the end).
    let history: Vec<Change> = history::read(&c.etcd_servers(), &["/registry/pods/", "/registry/replicasets/"]).await;
    let created = history::every_creation_fills_a_vacancy(&history).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(created >= 23, "10 pods of v1, 10 of v2, 3 more: {created}");
    let highest = history::never_more_than(&history, 13, &history::labelled("app", "web")).unwrap_or_else(|e| panic!("{e}"));
    println!("{created} pod creations, at most {highest} live pods at once");

    // Each manager wrote under its own identity, the terms never overlapped, and every pod
    // creation in the store was reported by the manager that made it (the killed one may have
    // died between a creation and its log line: those precede the standby's first act).
    let mut acts = Vec::new();
    for (i, ids) in [(leader, vec![&first, &third]), (standby, vec![&second])] {
        let mine = acts_in_log(&c.components[i].log());
        assert!(mine.iter().all(|a| ids.contains(&&a.holder)), "manager {i} acted only as {ids:?}");
        acts.extend(mine);
    }
    assert!(acts.iter().any(|a| a.holder == third), "the third leader acted");
    let terms = terms_are_disjoint(&acts).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(terms >= 2, "acts in at least two terms: {terms}");
    let logged: std::collections::BTreeSet<i64> =
        acts.iter().filter(|a| a.kind == "pod" && a.verb == "created").filter_map(|a| a.rv).collect();
    let standby_first = pod_acts(&c.components[standby].log()).iter().filter_map(|a| a.rv).min().unwrap_or(i64::MAX);
    for (rev, key) in history::creations(&history) {
        assert!(logged.contains(&rev) || rev < standby_first, "{key} created at rev {rev} by no manager's report");
    }
}

#[test]
fn the_checkers_can_fail() {
    let rs = |rev, replicas| Change {
        rev,
        key: "/registry/replicasets/default/web-1".into(),
        value: Some(json!({"metadata": {"name": "web-1", "uid": "rs1"}, "spec": {"replicas": replicas}})),
        created: rev == 1,
    };
    let pod = |rev, name: &str| Change {
        rev,
        key: format!("/registry/pods/default/{name}"),
        value: Some(json!({"metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [{"uid": "rs1", "controller": true}]}})),
        created: true,
    };
    let gone = |rev, name: &str| Change { rev, key: format!("/registry/pods/default/{name}"), value: None, created: false };
    let fine = vec![rs(1, 2), pod(2, "a"), pod(3, "b"), gone(4, "a"), pod(5, "c")];
    assert_eq!(history::every_creation_fills_a_vacancy(&fine), Ok(3));
    assert_eq!(history::never_more_than(&fine, 2, &history::labelled("app", "web")), Ok(2));
    let twice = vec![rs(1, 2), pod(2, "a"), pod(3, "b"), pod(4, "c")];
    assert!(history::every_creation_fills_a_vacancy(&twice).is_err_and(|e| e.contains("already had 2 live pods of 2")));
    assert!(history::never_more_than(&twice, 2, &history::labelled("app", "web")).is_err());

    let act = |holder: &str, transitions, rv| LoggedAct {
        verb: "created".into(),
        kind: "pod".into(),
        key: "default/x".into(),
        rv: Some(rv),
        holder: holder.into(),
        transitions,
    };
    assert_eq!(terms_are_disjoint(&[act("a", 0, 5), act("a", 0, 9), act("b", 1, 10), act("a", 2, 20)]), Ok(3));
    assert!(terms_are_disjoint(&[act("a", 0, 5), act("b", 1, 7), act("a", 0, 9)]).is_err());
}
