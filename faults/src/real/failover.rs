//! Failover figures (issue 23): the time from `kill -9` of a part to the next thing the
//! cluster does that needs that part's role, measured on a `keel up` cluster. A benchmark, not
//! a test: nothing here asserts a time.
//!
//! | subject | killed | the clock stops when |
//! |---|---|---|
//! | [`Subject::Scheduler`] | the Lease holder of `kube-scheduler` | a pod created right after the kill has `spec.nodeName` |
//! | [`Subject::ControllerManager`] | the Lease holder of `kube-controller-manager` | a Deployment scaled up right after the kill has one more pod |
//! | [`Subject::Apiserver`] | `apiserver-k` (k = round) | every one of several clients that held a connection through the balancer got an answer again; the figure is the slowest client whose first request after the kill failed (the one on the killed apiserver), else the slowest one |
//! | [`Subject::StoreLeader`] | the member that leads | a put through keel-etcd (all endpoints) is acknowledged |
//! | [`Subject::StoreLeaderApi`] | (the same kill) | a ConfigMap create through the balancer is acknowledged |
//!
//! Each round starts only when every part runs again and both Leases have a live holder, so
//! rounds do not overlap. Times come from tokio's clock (polls every 20 ms, so a figure is
//! at most that much late).

use super::cluster::{self, KeelUp};
use super::inject::{lease_holder, part_of, store_leader};
use super::{Error, Result};
use crate::history::Component;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rustix::process::Signal;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What is killed, and what is waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// The active scheduler → the next pod bound.
    Scheduler,
    /// The active controller-manager → the next pod created.
    ControllerManager,
    /// An apiserver → the next request served through the balancer.
    Apiserver,
    /// The store leader → the next write acknowledged by the store.
    StoreLeader,
    /// The store leader → the next write acknowledged through the apiservers.
    StoreLeaderApi,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Subject::Scheduler => "kill -9 active scheduler → next pod bound",
            Subject::ControllerManager => "kill -9 active controller-manager → next pod created",
            Subject::Apiserver => "kill -9 an apiserver → next request served (via the balancer)",
            Subject::StoreLeader => "kill -9 store leader → next write acknowledged (keel-etcd)",
            Subject::StoreLeaderApi => "kill -9 store leader → next write acknowledged (apiserver)",
        })
    }
}

/// One measurement.
#[derive(Clone, Debug)]
pub struct Sample {
    /// What was measured.
    pub subject: Subject,
    /// The part killed.
    pub victim: String,
    /// From the kill to the event.
    pub elapsed: Duration,
}

/// The namespace and Deployment the controller-manager rounds scale.
const DEPLOYMENT: &str = "failover";
/// How long one round may wait for its event.
const ROUND_LIMIT: Duration = Duration::from_secs(90);
/// Poll interval.
const POLL: Duration = Duration::from_millis(20);

async fn until<F, Fut>(what: &str, mut f: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < ROUND_LIMIT {
        if f().await {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
    Err(Error::Timeout(format!("{what} within {ROUND_LIMIT:?}")))
}

async fn ok<T, E>(f: impl std::future::Future<Output = std::result::Result<T, E>>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(2), f).await.ok()?.ok()
}

/// Waits until every part runs and each Lease names a live part.
async fn steady(up: &KeelUp, client: &kube::Client) -> Result<()> {
    if !up.wait_running(ROUND_LIMIT).await {
        return Err(Error::Timeout("every part running again".into()));
    }
    for (component, prefix) in [(Component::Scheduler, "scheduler-"), (Component::ControllerManager, "controller-manager-")] {
        until(&format!("a live {} leader", component.name()), || async {
            match lease_holder(client, component).await {
                Some(h) => part_of(up, prefix, &h).and_then(|p| up.pid(&p)).is_some(),
                None => false,
            }
        })
        .await?;
    }
    // Leave the new leaders a moment to sync their caches.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

async fn kill_leader(up: &KeelUp, client: &kube::Client, component: Component, prefix: &str) -> Result<(String, Instant)> {
    let holder = lease_holder(client, component).await.ok_or(Error::Timeout(format!("a {} Lease holder", component.name())))?;
    let part = part_of(up, prefix, &holder).ok_or(Error::Timeout(format!("the part of holder {}", holder.0)))?;
    let pid = up.pid(&part).ok_or(Error::Timeout(format!("{part}'s pid")))?;
    let at = Instant::now();
    cluster::signal(pid, Signal::KILL);
    Ok((part, at))
}

async fn scheduler_round(up: &KeelUp, client: &kube::Client, n: usize) -> Result<Sample> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let name = format!("failover-bind-{n}");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "keel.dev/failover:v1"}]}
    }))
    .map_err(|e| Error::Kube(e.to_string()))?;
    let (victim, at) = kill_leader(up, client, Component::Scheduler, "scheduler-").await?;
    until("the pod created", || async { ok(pods.create(&PostParams::default(), &pod)).await.is_some() }).await?;
    until("the pod bound", || async { ok(pods.get(&name)).await.and_then(|p| p.spec).and_then(|s| s.node_name).is_some() }).await?;
    let elapsed = at.elapsed();
    let _ = ok(pods.delete(&name, &DeleteParams::default().grace_period(0))).await;
    Ok(Sample { subject: Subject::Scheduler, victim, elapsed })
}

async fn live_pods(pods: &Api<Pod>) -> Option<usize> {
    let list = ok(pods.list(&ListParams::default().labels(&format!("app={DEPLOYMENT}")))).await?;
    Some(list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count())
}

async fn controller_manager_round(up: &KeelUp, client: &kube::Client, n: usize) -> Result<Sample> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let want = n + 2;
    let (victim, at) = kill_leader(up, client, Component::ControllerManager, "controller-manager-").await?;
    let patch = json!({"spec": {"replicas": want}});
    until("the Deployment scaled", || async {
        ok(deployments.patch(DEPLOYMENT, &PatchParams::default(), &Patch::Merge(&patch))).await.is_some()
    })
    .await?;
    until("a new pod", || async { live_pods(&pods).await.is_some_and(|c| c >= want) }).await?;
    Ok(Sample { subject: Subject::ControllerManager, victim, elapsed: at.elapsed() })
}

async fn apiserver_round(up: &KeelUp, n: usize) -> Result<Sample> {
    let victim = format!("apiserver-{}", n % up.members + 1);
    // Several clients, each holding a connection through the balancer (round robin spreads
    // them over the apiservers).
    let mut clients = Vec::new();
    for _ in 0..6 {
        let c = super::driver::client(&up.kubeconfig()).await?;
        let pods: Api<Pod> = Api::namespaced(c, "default");
        ok(pods.list(&ListParams::default().limit(1))).await.ok_or(Error::Timeout("a list before the kill".into()))?;
        clients.push(pods);
    }
    let pid = up.pid(&victim).ok_or(Error::Timeout(format!("{victim}'s pid")))?;
    let at = Instant::now();
    cluster::signal(pid, Signal::KILL);
    let served = clients.iter().map(|pods| async move {
        let mut first_failed = false;
        let mut first = true;
        loop {
            let answered = ok(pods.list(&ListParams::default().limit(1))).await.is_some();
            if first && !answered {
                first_failed = true;
            }
            first = false;
            if answered {
                return (first_failed, at.elapsed());
            }
            if at.elapsed() > ROUND_LIMIT {
                return (first_failed, ROUND_LIMIT);
            }
            tokio::time::sleep(POLL).await;
        }
    });
    let results = futures::future::join_all(served).await;
    let affected: Vec<Duration> = results.iter().filter(|(f, _)| *f).map(|(_, d)| *d).collect();
    let elapsed = affected.iter().max().copied().unwrap_or_else(|| results.iter().map(|(_, d)| *d).max().unwrap_or_default());
    Ok(Sample { subject: Subject::Apiserver, victim: format!("{victim} ({} of 6 clients hit)", affected.len()), elapsed })
}

async fn store_round(up: &KeelUp, client: &kube::Client, etcd: &keel_etcd::Client, n: usize) -> Result<Vec<Sample>> {
    let leader = store_leader(up.members).await.ok_or(Error::Timeout("a store leader".into()))?;
    let victim = format!("m{leader}");
    let pid = up.pid(&victim).ok_or(Error::Timeout(format!("{victim}'s pid")))?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let at = Instant::now();
    cluster::signal(pid, Signal::KILL);
    let key = format!("/keel-failover/{n}");
    let direct = async {
        until("a store write", || async { ok(etcd.put_if(&key, b"x".to_vec(), 0, 0)).await.is_some() }).await.map(|_| at.elapsed())
    };
    let through_api = until("an apiserver write", || async {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("failover-{n}")}})).unwrap_or_default();
        ok(configmaps.create(&PostParams::default(), &cm)).await.is_some()
    });
    let through_api = async { through_api.await.map(|_| at.elapsed()) };
    let (direct, through_api) = tokio::join!(direct, through_api);
    Ok(vec![
        Sample { subject: Subject::StoreLeader, victim: victim.clone(), elapsed: direct? },
        Sample { subject: Subject::StoreLeaderApi, victim, elapsed: through_api? },
    ])
}

/// Runs `rounds` rounds of every subject on `up`; the samples in the order taken.
pub async fn measure(up: &KeelUp, rounds: usize) -> Result<Vec<Sample>> {
    let client = super::driver::client(&up.kubeconfig()).await?;
    let etcd = keel_etcd::Client::connect(&up.endpoints(), &keel_etcd::Config::default(), Arc::new(keel_etcd::Tcp))
        .map_err(|e| Error::History(format!("connecting to the store: {e}")))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": DEPLOYMENT},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": DEPLOYMENT}},
                 "template": {"metadata": {"labels": {"app": DEPLOYMENT}},
                              "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "keel.dev/failover:v1"}]}}}
    }))
    .map_err(|e| Error::Kube(e.to_string()))?;
    until("the Deployment created", || async { ok(deployments.create(&PostParams::default(), &d)).await.is_some() }).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    until("its first pod", || async { live_pods(&pods).await.is_some_and(|c| c >= 1) }).await?;
    let mut out = Vec::new();
    for n in 0..rounds {
        steady(up, &client).await?;
        out.push(scheduler_round(up, &client, n).await?);
        eprintln!("keel-failover: {}", line(out.last()));
        steady(up, &client).await?;
        out.push(controller_manager_round(up, &client, n).await?);
        eprintln!("keel-failover: {}", line(out.last()));
        steady(up, &client).await?;
        out.push(apiserver_round(up, n).await?);
        eprintln!("keel-failover: {}", line(out.last()));
        steady(up, &client).await?;
        for s in store_round(up, &client, &etcd, n).await? {
            eprintln!("keel-failover: {}", line(Some(&s)));
            out.push(s);
        }
    }
    Ok(out)
}

fn line(s: Option<&Sample>) -> String {
    s.map_or(String::new(), |s| format!("{}: {} in {:.3} s", s.subject, s.victim, s.elapsed.as_secs_f64()))
}

/// Per subject: (subject, samples, min, median, max).
pub fn summary(samples: &[Sample]) -> Vec<(Subject, usize, Duration, Duration, Duration)> {
    let mut by: std::collections::BTreeMap<Subject, Vec<Duration>> = std::collections::BTreeMap::new();
    for s in samples {
        by.entry(s.subject).or_default().push(s.elapsed);
    }
    by.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, mut v)| {
            v.sort();
            (k, v.len(), v[0], v[v.len() / 2], v[v.len() - 1])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_gives_min_median_max_per_subject() {
        let s = |subject, ms| Sample { subject, victim: String::new(), elapsed: Duration::from_millis(ms) };
        let rows = summary(&[s(Subject::Scheduler, 300), s(Subject::Scheduler, 100), s(Subject::Scheduler, 200), s(Subject::Apiserver, 5)]);
        assert_eq!(rows[0], (Subject::Scheduler, 3, Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(300)));
        assert_eq!(rows[1].1, 1);
    }
}
