//! `keel-load`: drive an etcd v3 endpoint (Keel or etcd) with one workload and print a table and
//! one JSON line.

use clap::Parser;
use keel_benches::load::{self, LoadConfig, Workload};

#[derive(Parser)]
#[command(about = "Load generator for etcd v3 endpoints (Keel or etcd)")]
struct Args {
    /// The workload.
    #[arg(long, value_enum)]
    workload: Workload,
    #[command(flatten)]
    cfg: LoadConfig,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(load::run(args.workload, &args.cfg))?;
    if !args.json {
        println!("{}", result.table());
    }
    println!("{}", result.json());
    Ok(())
}
