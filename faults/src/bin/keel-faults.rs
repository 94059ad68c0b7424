//! `keel-faults`: one run of the real-process fault test, for soaks and for replaying a seed.
//!
//! ```text
//! keel-faults [--seed N] [--secs S] [--members N] [--converge-secs S] [--data-dir DIR] [--real-kubelets] [--print-schedule] [--dump-history]
//! ```
//!
//! Defaults: `--seed` from `KEEL_FAULTS_SEED` (else 1), `--secs` from `KEEL_FAULTS_SOAK_SECS`
//! (else 60). `--print-schedule` prints the seed's schedule and plan (for a full cluster) and exits;
//! `--dump-history` writes the recorded history to `<data-dir>/history.jsonl`;
//! `--real-kubelets` runs a real kubelet per member address instead of `keel up
//! --simulated-nodes 3` (one process hosting the nodes, no containers). Needs root (iptables, cgroups) and the workspace's binaries built next to it.
//! Exits 1 when a checker found a violation, 2 when the run could not be carried out.

use keel_faults::real::run::{Config, run};
use std::process::ExitCode;
use std::time::Duration;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn parse(args: &[String]) -> Result<(Config, bool), String> {
    let mut print_only = false;
    let mut c = Config::new(env_u64("KEEL_FAULTS_SEED").unwrap_or(1), env_u64("KEEL_FAULTS_SOAK_SECS").unwrap_or(60));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().and_then(|v| v.parse::<u64>().ok()).ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "--seed" => c.seed = value("a number")?,
            "--secs" => c.fault_secs = value("seconds")?,
            "--members" => c.members = value("3 or 5")? as usize,
            "--converge-secs" => c.bounds.converge_within = Duration::from_secs(value("seconds")?),
            "--print-schedule" => print_only = true,
            "--dump-history" => c.dump = true,
            "--real-kubelets" => c.simulated_nodes = None,
            "--data-dir" => c.data_dir = Some(it.next().ok_or("--data-dir needs a folder")?.into()),
            "-h" | "--help" => return Err(
                "keel-faults [--seed N] [--secs S] [--members N] [--converge-secs S] [--data-dir DIR] [--real-kubelets] [--print-schedule] [--dump-history]"
                    .into(),
            ),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok((c, print_only))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (c, print_only) = match parse(&args) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("{m}");
            return ExitCode::from(2);
        }
    };
    if print_only {
        // What a full cluster (scheduler and controller-manager built) would get.
        let (steps, plan) = keel_faults::real::run::plans(&c, true, true, true);
        for s in steps {
            println!("fault    {:>7.1}s {}", s.at.as_secs_f64(), s.fault);
        }
        for s in plan {
            println!("workload {:>7.1}s {}", s.at.as_secs_f64(), s.action);
        }
        return ExitCode::SUCCESS;
    }
    match run(&c).await {
        Ok(report) => {
            println!("{report}");
            if report.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("keel-faults: {e}");
            ExitCode::from(2)
        }
    }
}
