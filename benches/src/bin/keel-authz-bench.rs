//! keel-authz-bench: what RBAC costs keel-apiserver on a list-heavy workload (issue 19),
//! measured, never asserted. Starts one keel-store and a secured keel-apiserver (client CA,
//! `Node,RBAC`) from this binary's folder, seeds kube's default policy plus
//! `--user-bindings` RoleBindings and `--group-bindings` ClusterRoleBindings and the
//! namespaces' objects, then runs `--rounds` rounds of AlwaysAllow and Node,RBAC in A B B A order, each with a
//! fresh apiserver over the same store, and prints one JSON line per run on stderr and the
//! summary (medians, RBAC's cost against the 5 % target) on stdout and in `--out`.

use anyhow::Context;
use clap::Parser;
use keel_benches::authz::run::{RunSpec, run, seed};
use keel_benches::authz::summary::summarize;
use keel_benches::authz::{MODES, Plan, round_order};
use keel_benches::procstat;
use keel_testkit::Cluster;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
struct Args {
    /// Namespaces the bindings and objects are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Users with an `edit` RoleBinding in their namespace.
    #[arg(long, default_value_t = 900)]
    user_bindings: usize,
    /// Groups with a `view` ClusterRoleBinding.
    #[arg(long, default_value_t = 100)]
    group_bindings: usize,
    /// Pods per namespace.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// ConfigMaps per namespace.
    #[arg(long, default_value_t = 30)]
    configmaps: usize,
    /// Deployments per namespace.
    #[arg(long, default_value_t = 20)]
    deployments: usize,
    /// Concurrent clients (one identity and connection each).
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Rounds; each runs both modes, even rounds AlwaysAllow first, odd ones Node,RBAC first.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Warm-up of each run, seconds (not recorded).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Measured phase of each run, seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "authz.json")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let plan = Plan {
        namespaces: a.namespaces.max(1),
        user_bindings: a.user_bindings,
        group_bindings: a.group_bindings,
        pods: a.pods.max(1),
        configmaps: a.configmaps.max(1),
        deployments: a.deployments.max(1),
        workers: a.workers.max(1),
    };
    let load_before = procstat::loadavg();
    let mut cluster = Cluster::builder().secure(true).start();
    let admin = cluster.client().await;
    let seeded = seed(&admin, &plan).await.context("seeding")?;
    eprintln!("seeded {seeded} objects ({} bindings beyond kube's defaults)", plan.user_bindings + plan.group_bindings);
    let kubeconfigs: Vec<PathBuf> = (0..plan.workers)
        .map(|w| {
            let me = plan.worker(w);
            let groups: Vec<&str> = me.groups.iter().map(String::as_str).collect();
            cluster.kubeconfig_for(&me.user, &groups)
        })
        .collect();
    // The seeding apiserver goes; each run starts its own over the same store.
    cluster.apiservers[0].terminate(Duration::from_secs(10));
    let mut runs = Vec::new();
    let mut measured = Vec::new();
    for round in 0..a.rounds.max(1) {
        for mode in round_order(round) {
            let spec = RunSpec {
                mode: mode.to_string(),
                round,
                warmup: Duration::from_secs_f64(a.warmup.max(0.0)),
                seconds: Duration::from_secs_f64(a.seconds.max(0.5)),
            };
            let (line, m) = run(&mut cluster, &plan, &kubeconfigs, &spec).await.with_context(|| format!("round {round}, {mode}"))?;
            eprintln!("{line}");
            runs.push(line);
            measured.push(m);
        }
    }
    let summary = summarize(&measured, MODES[0], MODES[1]);
    let report = json!({
        "plan": {"namespaces": plan.namespaces, "user_bindings": plan.user_bindings, "group_bindings": plan.group_bindings,
            "pods": plan.pods, "configmaps": plan.configmaps, "deployments": plan.deployments, "workers": plan.workers,
            "rounds": a.rounds, "warmup_s": a.warmup, "seconds": a.seconds, "seeded": seeded},
        "machine": {"nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_before": load_before, "loadavg_after": procstat::loadavg()},
        "summary": summary,
        "runs": runs,
    });
    std::fs::write(&a.out, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", a.out.display()))?;
    println!("{}", json!({"report": a.out.display().to_string(), "summary": report["summary"], "machine": report["machine"]}));
    Ok(())
}
