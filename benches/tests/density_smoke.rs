//! The density run's CI form: `keel-density` at 10 simulated nodes and 100 pods (10
//! Deployments) through every phase, against real processes on loopback. It checks the report
//! has every section and that the pods really ran, bound and went away; it asserts nothing
//! about speed (the numbers are for benches/RESULTS.md).
//!
//! Needs the workspace's binaries in target/debug (keel-store, keel-apiserver, keel-kubelet,
//! keel-scheduler, keel-controller-manager): `cargo build -p keel-store -p keel-apiserver
//! -p keel-kubelet -p keel-scheduler -p keel-controller-manager` first.

use serde_json::Value;
use std::process::Command;

#[test]
fn a_tiny_density_run_reports_every_section_and_its_pods_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(env!("CARGO_BIN_EXE_keel-density"))
        .args([
            "--nodes",
            "10",
            "--pods",
            "100",
            "--pods-per-second",
            "50",
            "--phase-limit",
            "90",
            "--sample-every",
            "1",
            "--list-every",
            "2",
            "--out",
        ])
        .arg(dir.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keel-density failed:\n{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("density.json"))?)?;
    for section in
        ["config", "machine", "phases", "api", "pod_startup", "scheduler", "processes", "control_plane_rss_mib", "timeline", "plot"]
    {
        assert!(r.get(section).is_some_and(|v| !v.is_null()), "section {section} missing:\n{r:#}");
    }
    let phases = r["phases"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert_eq!(names, ["ramp", "update", "scale-down", "delete"]);
    for p in &phases {
        assert_eq!(p["converged"], true, "phase did not converge:\n{p:#}\n{stderr}");
        assert_eq!(p["request_errors"], 0, "{p:#}");
    }
    // Every pod of the ramp was seen Running, and bound by the scheduler.
    assert_eq!(r["pod_startup"]["ramp"]["running"], 100, "{:#}", r["pod_startup"]);
    assert_eq!(r["pod_startup"]["ramp"]["created_to_running_s"]["count"], 100);
    assert_eq!(r["scheduler"]["ramp"]["binds"], 100, "{:#}", r["scheduler"]);
    // The rolling update replaced the pods of one Deployment in ten.
    assert_eq!(r["config"]["updated_deployments"], 1);
    assert!(r["pod_startup"]["update"]["running"].as_u64().unwrap_or(0) >= 10, "{:#}", r["pod_startup"]["update"]);
    // API latency rows from the apiserver's histogram: the pods the ReplicaSets created, the
    // bindings, and a verdict per class.
    let calls = r["api"]["calls"].as_array().cloned().unwrap_or_default();
    let count = |call: &str| calls.iter().find(|c| c["call"] == call).and_then(|c| c["count"].as_f64()).unwrap_or(0.0);
    assert!(count("POST pods resource") >= 110.0, "{calls:#?}");
    assert!(count("POST pods/binding resource") >= 110.0, "{calls:#?}");
    assert!(count("POST deployments resource") >= 10.0, "{calls:#?}");
    assert!(r["api"]["verdicts"]["mutating"]["worst_p99_ms"].is_number(), "{:#}", r["api"]["verdicts"]);
    // The run's own lists: timed client-side and counted by the apiserver as cluster LISTs.
    assert!(r["api"]["lists"]["slowest_cluster_s"].is_number(), "{:#}", r["api"]["lists"]);
    // A tiny run stays far below the max-in-flight limits: no 429 (counted, not hidden).
    assert_eq!(r["api"]["dropped_429"], 0.0, "{:#}", r["api"]);
    assert!(count("LIST pods cluster") >= 1.0, "{calls:#?}");
    // Every process sampled, with CPU used and memory held.
    let procs = r["processes"].as_object().cloned().unwrap_or_default();
    for role in ["store", "apiserver", "controller-manager", "scheduler", "kubelet", "bench"] {
        assert!(procs.get(role).and_then(|p| p["peak_rss_mib"].as_f64()).is_some_and(|m| m > 0.0), "{role}: {procs:#?}");
    }
    assert!(r["timeline"].as_array().is_some_and(|t| !t.is_empty()));
    // The plot is a PNG where a font is installed (it is in CI: fonts-dejavu-core).
    if keel_benches::plot::FONTS.iter().any(|f| std::path::Path::new(f).exists()) {
        let png = std::fs::read(dir.path().join("density.png"))?;
        assert!(png.starts_with(b"\x89PNG"), "plot: {}", r["plot"]);
    }
    Ok(())
}
