//! Carrying out a fault schedule on a `keel up` cluster: each step's target resolved when it
//! runs (the store leader from each member's status, the active scheduler or
//! controller-manager from its Lease's holder and the identities the parts logged at start),
//! then kill -9, SIGSTOP … SIGCONT, or a partition through [`Net`]. A stopped process is
//! continued by a guard even if the harness panics. Before each step the harness waits for
//! every part to run again (keel up restarts killed ones after its back-off), so faults never
//! pile up.

use super::cluster::{self, KeelUp};
use super::net::Net;
use crate::history::{Component, HolderId};
use crate::schedule::{Fault, Step, Target};
use k8s_openapi::api::coordination::v1::Lease;
use rustix::process::Signal;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long to wait for the cluster to have every part running before a step.
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);
/// How long a leader fault waits for its Lease to name a live part (lease 15 s + retry 2 s,
/// with room).
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// Continues a stopped process when dropped.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        cluster::signal(self.0, Signal::CONT);
    }
}

/// One HTTP/1.1 request to the store's JSON gateway: the body of a 200 answer.
async fn gateway(addr: &str, path: &str) -> Option<String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok().flatten()
}

/// A JSON field's value as text, quoted or not (`"leader":"123"`, `"leader":123`).
pub fn field(json: &str, name: &str) -> Option<String> {
    let at = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = json[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"').to_string())
}

/// The member (1-based) that leads the store now, by asking each.
pub async fn store_leader(members: usize) -> Option<usize> {
    for i in 1..=members {
        let Some(s) = gateway(&format!("127.0.0.{i}:2379"), "/v3/maintenance/status").await else { continue };
        let (me, leader) = (field(&s, "member_id"), field(&s, "leader"));
        if me.is_some() && me == leader {
            return Some(i);
        }
    }
    None
}

/// The holder of `component`'s Lease.
pub async fn lease_holder(client: &kube::Client, component: Component) -> Option<HolderId> {
    let name = component.lease_key().rsplit('/').next()?;
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), "kube-system");
    let lease = tokio::time::timeout(Duration::from_secs(5), leases.get_opt(name)).await.ok()?.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty()).map(HolderId)
}

/// The part (`scheduler-2`) whose latest logged identity is `holder`.
pub fn part_of(up: &KeelUp, prefix: &str, holder: &HolderId) -> Option<String> {
    (1..=up.members).map(|i| format!("{prefix}{i}")).find(|name| super::acts::identities(&up.log(name)).last() == Some(holder))
}

/// Runs a schedule.
pub struct Injector<'a> {
    up: &'a KeelUp,
    client: kube::Client,
    net: Net,
    started: Instant,
    /// What was done, when (from the run's start), in words.
    pub log: Vec<(Duration, String)>,
    /// Faults carried out.
    pub injected: usize,
    /// Steps skipped (target not found, cluster not recovered).
    pub skipped: usize,
}

impl<'a> Injector<'a> {
    /// An injector for `up`; partitions tagged `tag`; times measured from `started`.
    pub fn new(up: &'a KeelUp, client: kube::Client, tag: &str, started: Instant) -> super::Result<Injector<'a>> {
        Ok(Injector { up, client, net: Net::new(tag)?, started, log: Vec::new(), injected: 0, skipped: 0 })
    }

    fn note(&mut self, line: String) {
        self.log.push((self.started.elapsed(), line));
    }

    /// Keeps every kubelet in its cgroup folder (new sockets of a restarted kubelet must be
    /// matched by a later partition).
    pub fn adopt_kubelets(&self) {
        let parts: std::collections::BTreeSet<(usize, String)> =
            (1..=self.up.members).map(|i| (self.up.kubelet_address(i), self.up.kubelet_part(i))).collect();
        for (i, name) in parts {
            if let Some(pid) = self.up.pid(&name) {
                let _ = self.net.adopt_kubelet(i, pid);
            }
        }
    }

    /// The part a target names now: (name, pid).
    pub async fn resolve(&self, t: Target) -> Option<(String, u32)> {
        let name = match t {
            Target::StoreLeader => format!("m{}", store_leader(self.up.members).await?),
            Target::StoreMember(i) => format!("m{i}"),
            Target::Apiserver(i) => format!("apiserver-{i}"),
            Target::Kubelet(i) => self.up.kubelet_part(i),
            Target::ActiveScheduler => part_of(self.up, "scheduler-", &lease_holder(&self.client, Component::Scheduler).await?)?,
            Target::ActiveControllerManager => {
                part_of(self.up, "controller-manager-", &lease_holder(&self.client, Component::ControllerManager).await?)?
            }
        };
        let pid = self.up.pid(&name)?;
        Some((name, pid))
    }

    /// [`Injector::resolve`], waiting up to [`LEADER_WAIT`] for a leader target: after a
    /// leader is killed its Lease names the dead holder until a standby takes over (15 s),
    /// and a leader fault drawn then would otherwise find no live part to hit.
    async fn resolve_waiting(&self, t: Target) -> Option<(String, u32)> {
        let leader = matches!(t, Target::ActiveScheduler | Target::ActiveControllerManager);
        let deadline = Instant::now() + if leader { LEADER_WAIT } else { Duration::ZERO };
        loop {
            if let Some(found) = self.resolve(t).await {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.hold(Duration::from_millis(500)).await;
        }
    }

    /// Sleeps `d` while keeping kubelets adopted.
    async fn hold(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.adopt_kubelets();
            tokio::time::sleep(Duration::from_millis(250).min(until.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Carries out `steps` from `start`.
    pub async fn run(&mut self, steps: &[Step], start: Instant) {
        for step in steps {
            while Instant::now() < start + step.at {
                self.hold(Duration::from_millis(250)).await;
            }
            if !self.up.wait_running(RECOVERY_LIMIT).await {
                self.skipped += 1;
                self.note(format!("skipped {}: the cluster had not recovered from the last fault in {RECOVERY_LIMIT:?}", step.fault));
                continue;
            }
            self.adopt_kubelets();
            match self.apply(step.fault).await {
                Ok(line) => {
                    self.injected += 1;
                    self.note(line);
                }
                Err(why) => {
                    self.skipped += 1;
                    self.note(format!("skipped {}: {why}", step.fault));
                }
            }
        }
        let _ = self.up.wait_running(RECOVERY_LIMIT).await;
    }

    async fn apply(&mut self, f: Fault) -> Result<String, String> {
        match f {
            Fault::Kill(t) => {
                let (name, pid) = self.resolve_waiting(t).await.ok_or(format!("{t} not found"))?;
                cluster::signal(pid, Signal::KILL);
                Ok(format!("{f}: {name} (pid {pid})"))
            }
            Fault::Pause(t, d) => {
                let (name, pid) = self.resolve_waiting(t).await.ok_or(format!("{t} not found"))?;
                let line = format!("{f}: {name} (pid {pid})");
                self.note(format!("start {line}"));
                let stopped = Stopped(pid);
                cluster::signal(pid, Signal::STOP);
                self.hold(d).await;
                drop(stopped);
                Ok(format!("end {line}"))
            }
            Fault::IsolateKubelet(i, d) => {
                let (name, pid) = self.resolve(Target::Kubelet(i)).await.ok_or(format!("kubelet-{i} not found"))?;
                let line = format!("{f}: {name} (pid {pid})");
                self.net.isolate_kubelet(self.up.kubelet_address(i), pid).map_err(|e| e.to_string())?;
                self.note(format!("start {line}"));
                self.hold(d).await;
                self.net.heal().map_err(|e| e.to_string())?;
                Ok(format!("end {line}"))
            }
            Fault::IsolateMember(t, d) => {
                let (name, _) = self.resolve(t).await.ok_or(format!("{t} not found"))?;
                let i: usize = name.trim_start_matches('m').parse().map_err(|_| format!("{name} is not a member"))?;
                let line = format!("{f}: {name}");
                self.net.isolate_member(i, self.up.members).map_err(|e| e.to_string())?;
                self.note(format!("start {line}"));
                self.hold(d).await;
                self.net.heal().map_err(|e| e.to_string())?;
                Ok(format!("end {line}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn gateway_fields_are_read_quoted_or_not() {
        let s = r#"{"header":{"cluster_id":"1","member_id":"42","revision":"7"},"leader":"42","raftTerm":3}"#;
        assert_eq!(field(s, "member_id").as_deref(), Some("42"));
        assert_eq!(field(s, "raftTerm").as_deref(), Some("3"));
        assert_eq!(field(s, "nope"), None);
    }
}
