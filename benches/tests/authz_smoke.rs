//! The authorization benchmark's CI form: `keel-authz-bench` at tiny counts (2 namespaces, 14
//! bindings, 4 workers, one round of each mode) against real processes on loopback. It checks
//! the harness — the mode each run started is the mode it measured (the probe a user's RBAC
//! refuses is 403 under Node,RBAC and 200 under AlwaysAllow), every request of the workload
//! was answered 2xx in both modes, every kind of the mix was measured, and the summary has its
//! figures — never a speed (the numbers are for benches/RESULTS.md).
//!
//! Needs keel-store and keel-apiserver in target/debug: `cargo build -p keel-store -p
//! keel-apiserver` first.

use serde_json::Value;
use std::process::Command;

#[test]
fn a_tiny_authz_run_measures_both_modes_and_rbac_is_really_on_in_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("authz.json");
    let out = Command::new(env!("CARGO_BIN_EXE_keel-authz-bench"))
        .args(["--namespaces", "2", "--user-bindings", "10", "--group-bindings", "4", "--pods", "5", "--configmaps", "3"])
        .args(["--deployments", "2", "--workers", "4", "--rounds", "1", "--warmup", "0.5", "--seconds", "2", "--out"])
        .arg(&report)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keel-authz-bench failed:\n{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    assert_eq!(r["plan"]["seeded"], 2 + 14 + 2 * 10, "{:#}", r["plan"]);
    let runs = r["runs"].as_array().cloned().unwrap_or_default();
    let modes: Vec<&str> = runs.iter().filter_map(|x| x["mode"].as_str()).collect();
    assert_eq!(modes, ["AlwaysAllow", "Node,RBAC"]);
    for run in &runs {
        let want = if run["mode"] == "Node,RBAC" { 403 } else { 200 };
        let probes = run["probes"].as_array().cloned().unwrap_or_default();
        assert_eq!(probes.len(), 2, "{run:#}");
        for p in probes {
            assert_eq!(p["code"], want, "{} probe {p}", run["mode"]);
        }
        assert_eq!(run["errors"], serde_json::json!({}), "refused or failed requests in the workload: {run:#}\n{stderr}");
        assert!(run["requests"].as_u64().unwrap_or(0) > 0, "{run:#}");
        for kind in ["LIST pods", "LIST configmaps", "LIST deployments", "GET pod", "GET configmap", "GET deployment", "WATCH pods"] {
            assert!(run["by_kind"][kind]["count"].as_u64().unwrap_or(0) > 0, "{kind} not measured: {run:#}");
        }
        assert!(run["apiserver_cpu_us_per_request"].as_f64().is_some_and(|c| c > 0.0), "{run:#}");
        assert!(run["server_lists"]["count"].as_f64().unwrap_or(0.0) > 0.0, "{run:#}");
    }
    let s = &r["summary"];
    for mode in ["AlwaysAllow", "Node,RBAC"] {
        assert_eq!(s[mode]["runs"], 1, "{s:#}");
        assert!(s[mode]["rps"].as_f64().is_some_and(|x| x > 0.0), "{s:#}");
    }
    assert!(s["throughput_cost"].is_number() && s["met"].is_boolean(), "{s:#}");
    Ok(())
}
