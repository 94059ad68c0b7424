//! The async shell of the overload test: issues the [`Schedule`]'s creates open-loop (each a
//! task, at most `in_flight` at once), scrapes the apiserver's request histogram every
//! `window` into [`Window`]s, waits for the last answers, lists the pods and checks them
//! against the creates answered 201, and reads `/proc` for every process of the control plane.
//!
//! Invariants: every scheduled create ends in exactly one [`Answer`] (a create still running
//! `answer_limit` after it was sent is a transport error); the pods are listed only once every
//! create has its answer, and in pages (`limit` + `continue`), as a client of a large
//! collection lists; the wall clock is not used (elapsed time only, tokio's).

use super::{Answer, PHASES, Schedule, Window, alive, lost, name, p99_between, recovery, tally};
use crate::controlplane::ControlPlane;
use crate::error::Error;
use crate::procstat;
use crate::promtext::{self, Class};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The label every pod of the test carries.
pub const LABEL: &str = "overload";

/// How the shell runs.
#[derive(Clone, Debug)]
pub struct Shell {
    /// Creates in flight at most.
    pub in_flight: usize,
    /// Scrape interval (issue 24: 5 s).
    pub window: Duration,
    /// Longest a create may take before it counts as a transport error.
    pub answer_limit: Duration,
    /// The pods' namespace.
    pub namespace: String,
}

/// Pod `k`: one container with small requests (the density pods' shape).
pub fn pod(namespace: &str, k: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name(k), "namespace": namespace, "labels": {LABEL: "true"}},
        "spec": {"containers": [{"name": "c", "image": "registry.example/pause:3.9",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})
}

/// One answered create.
#[derive(Clone, Debug)]
struct Answered {
    k: usize,
    phase: usize,
    /// Seconds after the start, when answered.
    at: f64,
    answer: Answer,
    seconds: f64,
}

async fn create(client: kube::Client, path: String, body: Vec<u8>, limit: Duration) -> Answer {
    let Ok(req) = http::Request::post(path).header("content-type", "application/json").body(Body::from(body)) else {
        return Answer::Transport;
    };
    let send = async {
        let res = client.send(req).await.ok()?;
        let code = res.status().as_u16();
        let retry_after = res.headers().contains_key(http::header::RETRY_AFTER);
        // Read the body so the connection is reused.
        let _ = res.into_body().collect_bytes().await;
        Some(Answer::of(code, retry_after))
    };
    tokio::time::timeout(limit, send).await.ok().flatten().unwrap_or(Answer::Transport)
}

fn sampler(client: kube::Client, every: Duration, t0: Instant) -> (Arc<Mutex<Vec<Window>>>, tokio::task::JoinHandle<()>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let windows = out.clone();
    let task = tokio::spawn(async move {
        let mut before = crate::density::run::scrape(&client).await.unwrap_or_default();
        let mut from = 0.0;
        for k in 1u32.. {
            tokio::time::sleep_until(t0 + every * k).await;
            // A failed scrape (the apiserver too busy to answer) leaves a gap; the next window
            // then covers both intervals.
            let Ok(now) = crate::density::run::scrape(&client).await else { continue };
            let to = t0.elapsed().as_secs_f64();
            let mutating = promtext::by_class(&promtext::interval(&now, &before), Class::Mutating);
            if let Ok(mut w) = windows.lock() {
                w.push(Window { from, to, mutating });
            }
            before = now;
            from = to;
        }
    });
    (out, task)
}

async fn list_names(client: &kube::Client, namespace: &str) -> Result<HashSet<String>, Error> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut names = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().labels(&format!("{LABEL}=true")).limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list_metadata(&lp).await?;
        names.extend(page.items.into_iter().filter_map(|p| p.metadata.name));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(names);
        }
    }
}

/// The status code of a GET of `path` (`None`: no answer).
async fn get_code(client: &kube::Client, path: &str) -> Option<u16> {
    let req = http::Request::get(path).body(Body::from(Vec::new())).ok()?;
    let res = client.send(req).await.ok()?;
    Some(res.status().as_u16())
}

fn ms_quantiles(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let q = |q: f64| crate::startup::percentile(&v, q).map(|s| (s * 1e4).round() / 10.0);
    json!({"count": v.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)})
}

/// Runs the schedule against `cp` and returns the report. The creates go through `creates` (a
/// client that must not retry 429s); `client` samples the metrics and reads the pods back.
pub async fn run(
    cp: &ControlPlane,
    client: kube::Client,
    creates: kube::Client,
    schedule: &Schedule,
    shell: &Shell,
) -> Result<Value, Error> {
    let t0 = Instant::now();
    let (windows, sampler_task) = sampler(client.clone(), shell.window, t0);
    let answers: Arc<Mutex<Vec<Answered>>> = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(shell.in_flight.max(1)));
    let path = format!("/api/v1/namespaces/{}/pods", shell.namespace);
    let mut tasks = Vec::new();
    for (k, (due, phase)) in schedule.due().into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(due)).await;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            let at = t0.elapsed().as_secs_f64();
            if let Ok(mut a) = answers.lock() {
                a.push(Answered { k, phase, at, answer: Answer::NotSent, seconds: 0.0 });
            }
            continue;
        };
        let (client, path, answers, limit) = (creates.clone(), path.clone(), answers.clone(), shell.answer_limit);
        let body = pod(&shell.namespace, k).to_string().into_bytes();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = create(client, path, body, limit).await;
            let (at, seconds) = (t0.elapsed().as_secs_f64(), sent.elapsed().as_secs_f64());
            drop(permit);
            if let Ok(mut a) = answers.lock() {
                a.push(Answered { k, phase, at, answer, seconds });
            }
        }));
    }
    // Every create gets its answer (each is bounded by answer_limit).
    futures::stream::iter(tasks).for_each_concurrent(None, |t| async move { drop(t.await) }).await;
    let answered_by = t0.elapsed().as_secs_f64();
    // One more window so the last answers are in the histogram, then stop sampling.
    tokio::time::sleep(shell.window + Duration::from_millis(200)).await;
    sampler_task.abort();
    let windows = windows.lock().map(|w| w.clone()).unwrap_or_default();
    let answers = answers.lock().map(|a| a.clone()).unwrap_or_default();

    let existing = list_names(&client, &shell.namespace).await?;
    let created: Vec<String> = answers.iter().filter(|a| a.answer == Answer::Created).map(|a| name(a.k)).collect();
    let lost_writes = lost(created.iter().map(String::as_str), &existing);
    // A name missing from the list is read once more by itself: a GET says whether the write
    // is gone (404) or only the list missed it.
    let mut lost_get = serde_json::Map::new();
    for n in lost_writes.iter().take(100) {
        let code = get_code(&client, &format!("/api/v1/namespaces/{}/pods/{n}", shell.namespace)).await;
        let k = answers.iter().find(|a| a.answer == Answer::Created && name(a.k) == *n);
        lost_get.insert(
            n.clone(),
            json!({"get": code, "phase": k.map(|a| PHASES[a.phase]), "answered_at_s": k.map(|a| a.at), "create_s": k.map(|a| a.seconds)}),
        );
    }
    let uncertain: Vec<&Answered> = answers.iter().filter(|a| a.answer.uncertain()).collect();
    let uncertain_exist = uncertain.iter().filter(|a| existing.contains(&name(a.k))).count();
    let refused_exist =
        answers.iter().filter(|a| matches!(a.answer, Answer::Throttled { .. } | Answer::NotSent) && existing.contains(&name(a.k))).count();

    let burst_start = schedule.start_of(1);
    let burst_end = schedule.start_of(2);
    let baseline = p99_between(&windows, 0.0, burst_start);
    let recovered = baseline.and_then(|b| recovery(&windows, burst_end, b));
    let processes: serde_json::Map<String, Value> = cp
        .pids()
        .into_iter()
        .map(|(role, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (role, json!({"alive": alive(&stat), "pid": pid, "peak_rss_mib": procstat::status_mib(pid, "VmHWM:"), "cpu_s": procstat::cpu_seconds(pid)}))
        })
        .collect();
    let all_alive = processes.values().all(|p| p["alive"] == true);
    let per_phase_latency: serde_json::Map<String, Value> = PHASES
        .iter()
        .enumerate()
        .map(|(p, n)| {
            let v = answers.iter().filter(|a| a.phase == p && a.answer == Answer::Created).map(|a| a.seconds).collect();
            (n.to_string(), ms_quantiles(v))
        })
        .collect();
    let timeline: Vec<Value> = windows
        .iter()
        .map(|w| {
            let inside: Vec<&Answered> = answers.iter().filter(|a| a.at > w.from && a.at <= w.to).collect();
            let count = |key: &str| inside.iter().filter(|a| a.answer.key() == key).count();
            json!({"from_s": (w.from * 10.0).round() / 10.0, "to_s": (w.to * 10.0).round() / 10.0,
                "mutating_p99_ms": w.p99().map(|s| (s * 1e4).round() / 10.0), "mutating_calls": w.mutating.count,
                "created": count("created"), "throttled": count("429_with_retry_after") + count("429_without_retry_after"),
                "other_errors": inside.iter().filter(|a| matches!(a.answer, Answer::Other(_) | Answer::Transport)).count()})
        })
        .collect();
    let pairs: Vec<(usize, Answer)> = answers.iter().map(|a| (a.phase, a.answer.clone())).collect();
    let t = tally(&pairs);
    let with_ra: u64 = PHASES.iter().map(|p| t[*p]["429_with_retry_after"].as_u64().unwrap_or(0)).sum();
    let without_ra: u64 = PHASES.iter().map(|p| t[*p]["429_without_retry_after"].as_u64().unwrap_or(0)).sum();
    Ok(json!({
        "schedule": {"rate": schedule.rate, "factor": schedule.factor, "seconds": schedule.seconds, "creates": answers.len(),
            "in_flight_cap": shell.in_flight, "answer_limit_s": shell.answer_limit.as_secs_f64()},
        "answers": t,
        "create_latency_client": per_phase_latency,
        "all_answered_at_s": answered_by,
        "writes": {"answered_201": created.len(), "listed": existing.len(), "lost": lost_writes.len(),
            "lost_names": lost_writes.iter().take(20).collect::<Vec<_>>(), "lost_checked_by_get": lost_get,
            "uncertain": uncertain.len(), "uncertain_that_exist": uncertain_exist, "refused_that_exist": refused_exist},
        "mutating_p99": {"baseline_ms": baseline.map(|s| s * 1000.0), "recovery_s": recovered.map(|r| r.0), "stayed_recovered": recovered.map(|r| r.1),
            "tolerance": super::RECOVERY_TOLERANCE, "burst_from_s": burst_start, "burst_to_s": burst_end},
        "processes": processes,
        "verdicts": {
            "got_429_with_retry_after": with_ra > 0,
            "429_without_retry_after": without_ra,
            "every_process_alive": all_alive,
            "no_write_lost": lost_writes.is_empty(),
            "recovered_within_30s": recovered.map(|r| r.0 <= super::RECOVERY_TARGET_S),
        },
        "timeline": timeline,
    }))
}
