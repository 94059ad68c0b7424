//! The overload test's CI form: `keel-overload` on 5 simulated nodes, 4 pods/s for 4 s, 5× for
//! 4 s, 4 pods/s for 6 s, against real processes on loopback. It checks the harness — every
//! scheduled create has an answer, the final list holds every create answered 201, every
//! process is alive, the windows and the baseline are there — never a speed, and not whether
//! the apiserver throttles (at 20 pods/s it stays under its max-in-flight limits; whether it
//! answers 429 is the full run's finding, not the harness's).
//!
//! Needs the workspace's binaries in target/debug (keel-store, keel-apiserver, keel-kubelet,
//! keel-scheduler, keel-controller-manager).

use serde_json::Value;
use std::process::Command;

#[test]
fn a_tiny_overload_run_answers_every_create_and_loses_none() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("overload.json");
    let out = Command::new(env!("CARGO_BIN_EXE_keel-overload"))
        .args(["--nodes", "5", "--rate", "4", "--factor", "5", "--before", "4", "--burst", "4", "--after", "6", "--window", "1"])
        .arg("--out")
        .arg(&report)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keel-overload failed:\n{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    // 16 + 80 + 24 creates, each with exactly one answer.
    assert_eq!(r["schedule"]["creates"], 120, "{:#}", r["schedule"]);
    let answered: u64 = ["before", "burst", "after"]
        .iter()
        .flat_map(|p| r["answers"][p].as_object().cloned().unwrap_or_default())
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    assert_eq!(answered, 120, "{:#}", r["answers"]);
    assert_eq!(r["answers"]["burst"].as_object().map(|m| m.values().filter_map(Value::as_u64).sum::<u64>()), Some(80));
    let w = &r["writes"];
    assert!(w["answered_201"].as_u64().unwrap_or(0) > 0, "{w:#}");
    assert!(w["listed"].as_u64().unwrap_or(0) >= w["answered_201"].as_u64().unwrap_or(u64::MAX), "{w:#}");
    assert_eq!(w["lost"], 0, "{w:#}");
    assert_eq!(r["verdicts"]["no_write_lost"], true);
    assert_eq!(r["verdicts"]["every_process_alive"], true, "{:#}", r["processes"]);
    for role in ["store", "apiserver", "controller-manager", "scheduler", "kubelet"] {
        assert_eq!(r["processes"][role]["alive"], true, "{role}: {:#}", r["processes"]);
    }
    let timeline = r["timeline"].as_array().cloned().unwrap_or_default();
    assert!(timeline.len() >= 10, "one window per second: {timeline:#?}");
    assert!(r["mutating_p99"]["baseline_ms"].is_number(), "{:#}", r["mutating_p99"]);
    assert!(r["create_latency_client"]["burst"]["count"].as_u64().unwrap_or(0) > 0);
    Ok(())
}
