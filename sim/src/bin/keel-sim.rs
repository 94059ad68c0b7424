//! The fuzz binary: run seeds across scenarios, print each seed's options and verdict, and on a
//! failure the exact command that replays it and an excerpt of the violation.
//!
//! `cargo run -p keel-sim --release -- --seeds 1000 --scenario all`
//! `cargo run -p keel-sim --release -- --reproduce 42 --scenario kv`

use clap::Parser;
use keel_sim::run::CpBugs;
use keel_sim::run::{Options, Scenario, run};
use keel_store::seams::Bugs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Deterministic fault simulation of a Keel cluster")]
struct Args {
    /// Seeds to run: a count (starting at --first-seed) or an inclusive range `A..B`.
    #[arg(long, default_value = "10")]
    seeds: String,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Scenario: kv, kube, crash, membership, controlplane, or all (the four store scenarios).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Replay one seed and print its whole history.
    #[arg(long)]
    reproduce: Option<u64>,
    /// Keep going after a failure.
    #[arg(long)]
    keep_going: bool,
    /// Print only failures and the summary.
    #[arg(long)]
    quiet: bool,
    /// Switch on a known bug (to see a checker catch it): stale_follower_reads,
    /// watch_skips_revisions, watch_drops_without_prev_kv, ack_before_sync, skip_small_syncs;
    /// controlplane: scheduler_ignores_lease, controller_manager_ignores_lease,
    /// replicaset_ignores_expectations, scheduler_ignores_assume_cache,
    /// deployment_ignores_max_surge.
    #[arg(long)]
    bug: Vec<String>,
    /// Run one seed of one scenario in this process (what --seeds runs in a child per seed):
    /// exit 0 passed, 1 failed, 3 undecided.
    #[arg(long, hide = true)]
    one: Option<u64>,
}

/// The seeds `--seeds` names: `N` (from `first`) or `A..B` (inclusive).
fn seed_range(seeds: &str, first: u64) -> Result<std::ops::RangeInclusive<u64>, String> {
    let bad = || format!("--seeds {seeds:?}: expected a count or A..B");
    match seeds.split_once("..") {
        Some((a, b)) => Ok(a.trim().parse().map_err(|_| bad())?..=b.trim().parse().map_err(|_| bad())?),
        None => {
            let n: u64 = seeds.trim().parse().map_err(|_| bad())?;
            Ok(first..=(first + n).saturating_sub(1))
        }
    }
}

/// The bugs named (unknown names are refused).
fn bugs(names: &[String]) -> Result<(Bugs, CpBugs), String> {
    let mut b = Bugs::default();
    let mut cp = CpBugs::default();
    for n in names {
        let flag = match n.as_str() {
            "scheduler_ignores_lease" => &mut cp.scheduler_ignores_lease,
            "controller_manager_ignores_lease" => &mut cp.controller_manager_ignores_lease,
            "replicaset_ignores_expectations" => &mut cp.replicaset_ignores_expectations,
            "scheduler_ignores_assume_cache" => &mut cp.scheduler_ignores_assume_cache,
            "deployment_ignores_max_surge" => &mut cp.deployment_ignores_max_surge,
            "stale_follower_reads" => &mut b.stale_follower_reads,
            "watch_skips_revisions" => &mut b.watch_skips_revisions,
            "watch_drops_without_prev_kv" => &mut b.watch_drops_without_prev_kv,
            "ack_before_sync" => &mut b.ack_before_sync,
            "skip_small_syncs" => &mut b.skip_small_syncs,
            other => return Err(format!("unknown bug {other:?}")),
        };
        *flag = true;
    }
    Ok((b, cp))
}

/// One seed of one scenario, reported; the exit code says how it went.
fn one(seed: u64, s: Scenario, quiet: bool, (bugs, cp_bugs): (Bugs, CpBugs)) -> ExitCode {
    let mut opts = Options::new(seed, s);
    opts.bugs = bugs;
    opts.cp_bugs = cp_bugs;
    #[allow(clippy::disallowed_methods)] // The run's real duration, for humans; never simulated.
    let started = std::time::Instant::now();
    let out = run(&opts);
    let failed = !out.violations.is_empty();
    if !quiet || failed || out.undecided {
        print!("{opts}");
        println!(
            "  -> {}: {}, {} ms simulated, {:.1} s real{}",
            if failed {
                "FAILED"
            } else if out.undecided {
                "UNDECIDED"
            } else {
                "ok"
            },
            match &out.recorded.controlplane {
                Some(cp) => format!(
                    "{} pod versions, {} acts",
                    cp.lines().filter(|l| l.starts_with("pod ")).count(),
                    cp.lines().filter(|l| l.starts_with("act ")).count()
                ),
                None => format!(
                    "{} ops, {} watch streams",
                    out.recorded.history.ops.len(),
                    out.recorded.watchers.iter().map(|w| w.links.len()).sum::<usize>() + out.recorded.reference.links.len()
                ),
            },
            out.elapsed.as_millis(),
            started.elapsed().as_secs_f64(),
            if out.undecided { ", linearizability undecided (search budget exhausted)" } else { "" }
        );
    }
    for v in &out.violations {
        println!("  VIOLATION {v}");
    }
    if failed && std::env::var_os("KEEL_SIM_DUMP").is_some() {
        println!("{}", out.recorded.render());
    }
    if failed || out.undecided {
        println!("  reproduce: cargo run -p keel-sim --release -- --reproduce {seed} --scenario {}", s.name());
    }
    if failed {
        ExitCode::FAILURE
    } else if out.undecided {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // KEEL_SIM_LOG=<filter> (e.g. `turmoil=trace,keel_controllers=debug`): the components' and
    // turmoil's logs on stderr, without wall-clock timestamps, so two replays can be diffed.
    if let Ok(filter) = std::env::var("KEEL_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .without_time()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let bugs = match bugs(&args.bug) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let scenarios: Vec<Scenario> = if args.scenario == "all" {
        Scenario::ALL.to_vec()
    } else {
        match Scenario::parse(&args.scenario) {
            Some(s) if s.control_plane() && !cfg!(feature = "controlplane") => {
                eprintln!("this keel-sim was built without its `controlplane` feature (cargo build -p keel-sim builds it with)");
                return ExitCode::from(2);
            }
            Some(s) => vec![s],
            None => {
                eprintln!("unknown scenario {:?} (kv, kube, crash, membership, controlplane, nodes, all)", args.scenario);
                return ExitCode::from(2);
            }
        }
    };
    if let Some(seed) = args.one {
        let Some(&s) = scenarios.first().filter(|_| scenarios.len() == 1) else {
            eprintln!("--one takes exactly one --scenario");
            return ExitCode::from(2);
        };
        return one(seed, s, args.quiet, bugs);
    }
    if let Some(seed) = args.reproduce {
        let mut failed = false;
        for &s in &scenarios {
            let mut opts = Options::new(seed, s);
            (opts.bugs, opts.cp_bugs) = bugs;
            print!("{opts}");
            let out = run(&opts);
            println!("{}", out.recorded.render());
            for v in &out.violations {
                println!("VIOLATION {v}");
            }
            if out.undecided {
                println!("UNDECIDED: the linearizability search ran out of budget");
            }
            failed |= !out.violations.is_empty() || out.undecided;
        }
        return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let (mut runs, mut failures, mut undecided, mut no_verdict) = (0u64, 0u64, 0u64, 0u64);
    // Every run in a process of its own: a run's schedule must not depend on what ran before
    // it in the same process, so a failure here replays with --reproduce.
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find this program to run each seed in a process of its own");
        return ExitCode::from(2);
    };
    let seeds = match seed_range(&args.seeds, args.first_seed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    for seed in seeds {
        for &s in &scenarios {
            let mut child = std::process::Command::new(&me);
            child.args(["--one", &seed.to_string(), "--scenario", s.name()]);
            if args.quiet {
                child.arg("--quiet");
            }
            for b in &args.bug {
                child.args(["--bug", b]);
            }
            let status = match child.status() {
                Ok(status) => status,
                Err(e) => {
                    eprintln!("cannot run seed {seed}: {e}");
                    return ExitCode::from(2);
                }
            };
            // 0 passed, 1 failed, 3 undecided; anything else (a panic, an abort, a signal) means
            // the run ended without a verdict, which is never a pass.
            let code = match status.code() {
                Some(c @ (0 | 1 | 3)) => c,
                other => {
                    no_verdict += 1;
                    let how = match (other, std::os::unix::process::ExitStatusExt::signal(&status)) {
                        (_, Some(sig)) => format!("killed by signal {sig}"),
                        (Some(c), None) => format!("exited with code {c}"),
                        (None, None) => "ended".into(),
                    };
                    println!("seed {seed} scenario {}: NO VERDICT: the run's process {how}", s.name());
                    println!("  reproduce: cargo run -p keel-sim --release -- --reproduce {seed} --scenario {}", s.name());
                    1
                }
            };
            runs += 1;
            if code == 3 {
                undecided += 1;
            }
            if code != 0 {
                failures += 1;
            }
            if args.quiet && runs % 100 == 0 {
                println!("{runs} runs, {failures} failed, {undecided} undecided, {no_verdict} without a verdict (seed {seed})");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
            if code != 0 && !args.keep_going {
                println!(
                    "{runs} runs, {failures} failed (undecided and verdict-less ones included), {undecided} undecided, {no_verdict} without a verdict"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{runs} runs, {failures} failed (undecided and verdict-less ones included), {undecided} undecided, {no_verdict} without a verdict"
    );
    if failures > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
