//! `keel-failover`: the failover figures of issue 23 on a `keel up` cluster (3 members,
//! `--simulated-nodes 3`): kill -9 of the active scheduler, the active controller-manager, an
//! apiserver and the store leader, and the time to the next pod bound, pod created, request
//! served and write acknowledged. A benchmark: it prints the figures, it asserts nothing.
//!
//! ```text
//! keel-failover [--rounds N] [--data-dir DIR]
//! ```
//!
//! Needs the workspace's binaries built next to it (`keel`, `keel-store`, `keel-apiserver`,
//! `keel-scheduler`, `keel-controller-manager`, `keel-kubelet`). Exits 2 when a round could
//! not be carried out.

use keel_faults::real::cluster::{KeelUp, Options};
use keel_faults::real::failover::{measure, summary};
use std::process::ExitCode;

fn parse(args: &[String]) -> Result<(usize, Option<std::path::PathBuf>), String> {
    let (mut rounds, mut dir) = (3, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).ok_or("--rounds needs a number")?,
            "--data-dir" => dir = Some(it.next().ok_or("--data-dir needs a folder")?.into()),
            _ => return Err("keel-failover [--rounds N] [--data-dir DIR]".into()),
        }
    }
    Ok((rounds, dir))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rounds, data_dir) = match parse(&args) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("{m}");
            return ExitCode::from(2);
        }
    };
    let mut up = match KeelUp::start(&Options { members: 3, data_dir, simulated_nodes: Some(3) }).await {
        Ok(up) => up,
        Err(e) => {
            eprintln!("keel-failover: {e}");
            return ExitCode::from(2);
        }
    };
    let result = measure(&up, rounds).await;
    let code = match result {
        Ok(samples) => {
            println!("| failover | rounds | min | median | max |");
            println!("|---|---|---|---|---|");
            for (subject, n, min, median, max) in summary(&samples) {
                println!("| {subject} | {n} | {:.3} s | {:.3} s | {:.3} s |", min.as_secs_f64(), median.as_secs_f64(), max.as_secs_f64());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keel-failover: {e}; data and logs kept in {}", up.keep().display());
            ExitCode::from(2)
        }
    };
    let _ = tokio::task::spawn_blocking(move || up.stop()).await;
    code
}
