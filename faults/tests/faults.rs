//! The real-process fault test, short form (issue 23, item 3): a `keel up` cluster on loopback
//! (3 store members, an apiserver, scheduler and controller-manager per member address, one
//! kubelet hosting 3 simulated nodes) under the fixed CI seed's schedule — kill -9 of the store
//! leader, an apiserver, the active scheduler and controller-manager and the kubelet,
//! SIGSTOP/SIGCONT, an iptables partition of a store member — while Deployments are created,
//! scaled, rolled out and back and bare pods come and go; then every checker on the store's
//! history (recorded from revision 1) and the components' logged acts.
//!
//! Then each checker is shown to fire on that same real record with one violation planted in
//! it, so a pass is not a checker that cannot see.
//!
//! Soak: `KEEL_FAULTS_SEEDS=1,2,3 KEEL_FAULTS_SOAK_SECS=1800 cargo test -p keel-faults --test
//! faults` (or `keel-faults --seed N --secs S` for one run). Needs root (iptables, cgroup2) and
//! the binaries: `cargo build -p keel-faults -p keel-store -p keel-apiserver -p keel-scheduler
//! -p keel-controller-manager -p keel-kubelet -p keel-up`.

use keel_faults::check::{self, Bounds};
use keel_faults::history::{Component, History, HolderId, Op, Revision, StoreEvent};
use keel_faults::objects;
use keel_faults::real::run::{Config, run};
use serde_json::{Value, json};

/// Kills the store leader, an apiserver, both active leaders and the kubelet, stops the
/// scheduler and two apiservers, and partitions a member, in 50 s (`keel-faults --seed 72
/// --secs 50 --print-schedule`).
const CI_SEED: u64 = 72;
const CI_FAULT_SECS: u64 = 50;

fn seeds() -> Vec<u64> {
    match std::env::var("KEEL_FAULTS_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![CI_SEED],
    }
}

fn fired(h: &History, checker: &str) -> bool {
    check::all(h, &Bounds::default()).iter().any(|v| v.checker == checker)
}

fn last_revision(h: &History) -> i64 {
    h.events.last().map_or(0, |e| e.revision.0)
}

/// Appends a put of `key` with `object` at the next revision.
fn append(h: &mut History, key: &str, object: Value) {
    let revision = Revision(last_revision(h) + 1);
    let seen = h.events.last().map(|e| e.seen).unwrap_or_default();
    h.events.push(StoreEvent { revision, key: key.to_string(), op: Op::Put, object: Some(object), seen });
}

/// The latest object of every key still present at the end.
fn live(h: &History, prefix: &str) -> Vec<(String, Value)> {
    let mut last: std::collections::BTreeMap<&str, Option<&Value>> = std::collections::BTreeMap::new();
    for e in h.events.iter().filter(|e| e.key.starts_with(prefix)) {
        last.insert(&e.key, if e.op == Op::Put { e.object.as_ref() } else { None });
    }
    last.into_iter().filter_map(|(k, o)| Some((k.to_string(), o?.clone()))).collect()
}

/// Each checker fires on the real record `h` once one violation of its guarantee is planted.
fn every_checker_fires_on_a_planted_violation(h: &History) {
    // A bound pod that is still there gets moved to another node.
    let mut p = h.clone();
    let (key, mut pod) =
        live(&p, objects::PODS).into_iter().find(|(_, o)| objects::node_name(o).is_some()).expect("a bound pod at the end");
    pod["spec"]["nodeName"] = json!("planted-node");
    append(&mut p, &key, pod);
    assert!(fired(&p, check::single_binding::NAME), "single_binding missed a rebinding of {key}");

    // A scheduler act is reported by an identity that never held the Lease.
    let mut p = h.clone();
    let act = p.acts.iter_mut().find(|a| a.component == Component::Scheduler).expect("a scheduler act");
    act.holder = HolderId("planted-second-scheduler".into());
    assert!(fired(&p, check::single_leader::NAME), "single_leader missed an act by a non-holder");

    // A controller-manager act likewise (its acts are logged by the fenced client).
    let mut p = h.clone();
    let act = p.acts.iter_mut().find(|a| a.component == Component::ControllerManager).expect("a controller-manager act");
    act.holder = HolderId("planted-second-manager".into());
    assert!(fired(&p, check::single_leader::NAME), "single_leader missed a controller-manager act by a non-holder");

    // A ReplicaSet that has pods gets replicas + maxSurge + 1 more at the end.
    let mut p = h.clone();
    let (key, pod) = live(&p, objects::PODS)
        .into_iter()
        .find(|(_, o)| objects::controlled_by(o, "ReplicaSet").is_some() && objects::active(o) && !objects::terminating(o))
        .expect("an active ReplicaSet pod at the end");
    for i in 0..12 {
        let mut extra = pod.clone();
        extra["metadata"]["uid"] = json!(format!("planted-uid-{i}"));
        extra["metadata"]["name"] = json!(format!("planted-{i}"));
        append(&mut p, &format!("{key}-planted-{i}"), extra);
    }
    assert!(fired(&p, check::rollout_bounds::NAME), "rollout_bounds missed 12 pods beyond the bound");
    assert!(fired(&p, check::one_pod_per_slot::NAME), "one_pod_per_slot missed 12 pods for filled slots");

    // A Deployment gets a new generation its controller never observes.
    let mut p = h.clone();
    let (key, mut d) = live(&p, objects::DEPLOYMENTS).into_iter().next().expect("a Deployment at the end");
    d["metadata"]["generation"] = json!(objects::generation(&d) + 1);
    d["spec"]["replicas"] = json!(objects::replicas(&d) + 1);
    append(&mut p, &key, d);
    assert!(fired(&p, check::deployments_converge::NAME), "deployments_converge missed an unobserved generation of {key}");

    // The store loses the version an acknowledged write named.
    let mut p = h.clone();
    let w = p.acked.iter().find(|w| w.revision.is_some()).expect("an acknowledged write naming its revision").clone();
    p.events.retain(|e| !(e.key == w.key && Some(e.revision) == w.revision));
    assert!(fired(&p, check::acknowledged_writes_kept::NAME), "acknowledged_writes_kept missed the loss of {w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keel_up_cluster_keeps_every_guarantee_under_the_ci_fault_schedule() {
    assert!(rustix::process::geteuid().is_root(), "the fault test needs root (iptables, cgroups)");
    let bins = keel_faults::real::cluster::bin_dir();
    for b in ["keel", "keel-store", "keel-apiserver", "keel-kubelet", "keel-scheduler", "keel-controller-manager"] {
        assert!(bins.join(b).exists(), "{b} is missing in {}: build it first (see this file's doc)", bins.display());
    }
    let secs = std::env::var("KEEL_FAULTS_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(CI_FAULT_SECS);
    for seed in seeds() {
        let report = match run(&Config::new(seed, secs)).await {
            Ok(r) => r,
            Err(e) => panic!("seed {seed}: the run could not be carried out: {e}"),
        };
        eprintln!("{report}");
        assert!(report.violations.is_empty(), "seed {seed} broke a guarantee (replay: keel-faults --seed {seed} --secs {secs}):\n{report}");
        assert!(report.injected > 0, "seed {seed}: no fault was injected:\n{report}");
        assert!(report.tally.acked.values().sum::<usize>() > 0, "seed {seed}: the workload got nothing acknowledged:\n{report}");
        assert!(report.pods_created > 0, "seed {seed}: no pod in the history:\n{report}");
        assert!(report.acts.iter().all(|(_, n)| *n > 0), "seed {seed}: a component reported no act:\n{report}");
        assert!(report.metrics_compared > 0, "seed {seed}: no component's /metrics was compared with its log:\n{report}");
        assert!(report.settled_after.is_some(), "seed {seed}: the Deployments did not settle:\n{report}");
        every_checker_fires_on_a_planted_violation(&report.history);
    }
}
