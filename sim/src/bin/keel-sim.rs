//! The fuzz binary: run seeds across scenarios, print each seed's options and verdict, and on a
//! failure the exact command that replays it and an excerpt of the violation.
//!
//! `cargo run -p keel-sim --release -- --seeds 1000 --scenario all`
//! `cargo run -p keel-sim --release -- --reproduce 42 --scenario kv`

use clap::Parser;
use keel_sim::run::{Options, Scenario, run};
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Deterministic fault simulation of a Keel cluster")]
struct Args {
    /// Seeds to run (the first is --first-seed).
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Scenario: kv, kube, crash or all.
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenarios: Vec<Scenario> = if args.scenario == "all" {
        Scenario::ALL.to_vec()
    } else {
        match Scenario::parse(&args.scenario) {
            Some(s) => vec![s],
            None => {
                eprintln!("unknown scenario {:?} (kv, kube, crash, all)", args.scenario);
                return ExitCode::from(2);
            }
        }
    };
    if let Some(seed) = args.reproduce {
        let mut failed = false;
        for &s in &scenarios {
            let opts = Options::new(seed, s);
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
    let (mut runs, mut failures, mut undecided) = (0u64, 0u64, 0u64);
    for seed in args.first_seed..args.first_seed + args.seeds {
        for &s in &scenarios {
            let opts = Options::new(seed, s);
            #[allow(clippy::disallowed_methods)] // The run's real duration, for humans; never simulated.
            let started = std::time::Instant::now();
            let out = run(&opts);
            runs += 1;
            undecided += u64::from(out.undecided);
            let ops = out.recorded.history.ops.len();
            let verdict = if out.violations.is_empty() { "ok" } else { "FAILED" };
            // No verdict is not a pass.
            if out.undecided && out.violations.is_empty() {
                failures += 1;
                println!("seed {seed} scenario {}: linearizability UNDECIDED (search budget exhausted)", s.name());
            }
            if args.quiet && runs % 100 == 0 {
                println!("{runs} runs, {failures} failed, {undecided} undecided (seed {seed})");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
            if !args.quiet || !out.violations.is_empty() {
                print!("{opts}");
                println!(
                    "  -> {verdict}: {ops} ops, {} watch streams, {} ms simulated, {:.1} s real{}",
                    out.recorded.watchers.iter().map(|w| w.links.len()).sum::<usize>() + out.recorded.reference.links.len(),
                    out.elapsed.as_millis(),
                    started.elapsed().as_secs_f64(),
                    if out.undecided { ", linearizability undecided" } else { "" }
                );
            }
            if !out.violations.is_empty() {
                failures += 1;
                for v in &out.violations {
                    println!("  VIOLATION {v}");
                }
                println!("  reproduce: cargo run -p keel-sim --release -- --reproduce {seed} --scenario {}", s.name());
                if !args.keep_going {
                    println!("{runs} runs, {failures} failed, {undecided} undecided");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!("{runs} runs, {failures} failed (undecided ones included), {undecided} undecided");
    if failures > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
