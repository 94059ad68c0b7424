//! Command-line flags, named as kube-scheduler's where kube-scheduler has them (the rest are
//! what kube puts in its `KubeSchedulerConfiguration` file), turned into a checked
//! [`Config`]. Durations take Go's syntax (`15s`, `1m30s`, `500ms`).

use crate::Error;
use crate::plugins::fit::Strategy;
use crate::queue::QueueConfig;
use crate::schedule::AlgorithmConfig;
use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// keel-scheduler's flags.
#[derive(Clone, Debug, Parser)]
#[command(name = "keel-scheduler", version, about = "Assigns pods to nodes through keel-apiserver, as kube-scheduler does.")]
pub struct Flags {
    /// kubeconfig file with the apiserver's address and credentials.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Address to serve /healthz, /readyz and /metrics on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// HTTPS port for /healthz, /readyz and /metrics (0: do not serve).
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// Serving certificate (PEM); without it a self-signed one is made at start, as kube does.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving certificate's key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Elect a leader through a Lease before scheduling (run several replicas for HA).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a standby waits for a silent leader's lease before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps scheduling without renewing; must be below the lease duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew the lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The lock object's kind (only `leases` is supported, as in current Kubernetes).
    #[arg(long, default_value = "leases")]
    pub leader_elect_resource_lock: String,
    /// The Lease's name.
    #[arg(long, default_value = "kube-scheduler")]
    pub leader_elect_resource_name: String,
    /// The Lease's namespace.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Schedule only pods whose `spec.schedulerName` is this.
    #[arg(long, default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// NodeResourcesFit scoring: `LeastAllocated` (spread) or `MostAllocated` (pack).
    #[arg(long, default_value = "LeastAllocated", value_parser = parse_strategy)]
    pub scoring_strategy: Strategy,
    /// Stop filtering after this percentage of nodes fit (0: kube's adaptive default).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub percentage_of_nodes_to_score: u32,
    /// First back-off after a failed attempt, in seconds.
    #[arg(long, default_value_t = 1)]
    pub pod_initial_backoff_seconds: u64,
    /// Longest back-off, in seconds.
    #[arg(long, default_value_t = 10)]
    pub pod_max_backoff_seconds: u64,
    /// Seed for breaking score ties (default: random at start).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bindings in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub bind_concurrency: u32,
}

/// Everything the scheduler's shell needs, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// The scheduler name pods must ask for.
    pub scheduler_name: String,
    /// The algorithm's settings.
    pub algorithm: AlgorithmConfig,
    /// The queue's settings.
    pub queue: QueueConfig,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// How long one API request (bind, status, delete, event) may take.
    pub request_timeout: Duration,
}

impl Flags {
    /// Checks the flags that clap cannot check alone.
    pub fn config(&self) -> Result<Config, Error> {
        if self.leader_elect_resource_lock != "leases" {
            return Err(Error::Flags(format!(
                "--leader-elect-resource-lock={}: only \"leases\" is supported (endpoints and configmaps locks were removed from Kubernetes)",
                self.leader_elect_resource_lock
            )));
        }
        if self.pod_initial_backoff_seconds == 0 {
            return Err(Error::Flags("--pod-initial-backoff-seconds must be greater than 0".into()));
        }
        if self.pod_max_backoff_seconds < self.pod_initial_backoff_seconds {
            return Err(Error::Flags("--pod-max-backoff-seconds must be at least --pod-initial-backoff-seconds".into()));
        }
        if self.scheduler_name.is_empty() {
            return Err(Error::Flags("--scheduler-name must not be empty".into()));
        }
        if self.leader_elect {
            self.leader("identity-checked-at-start").validate()?;
        }
        Ok(Config {
            scheduler_name: self.scheduler_name.clone(),
            algorithm: AlgorithmConfig {
                percentage_of_nodes_to_score: self.percentage_of_nodes_to_score,
                strategy: self.scoring_strategy,
                ..Default::default()
            },
            queue: QueueConfig {
                initial_backoff: Duration::from_secs(self.pod_initial_backoff_seconds),
                max_backoff: Duration::from_secs(self.pod_max_backoff_seconds),
                ..Default::default()
            },
            bind_concurrency: self.bind_concurrency as usize,
            request_timeout: Duration::from_secs(30),
        })
    }

    /// The leader election settings for `identity`.
    pub fn leader(&self, identity: &str) -> keel_leader::Config {
        keel_leader::Config {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self.leader_elect_resource_name.clone(),
            identity: identity.to_string(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
            release_on_cancel: true,
        }
    }
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "LeastAllocated" => Ok(Strategy::LeastAllocated),
        "MostAllocated" => Ok(Strategy::MostAllocated),
        other => Err(format!("{other:?} is not a scoring strategy (LeastAllocated, MostAllocated)")),
    }
}

/// Go's `time.ParseDuration` for the units flags use (`h`, `m`, `s`, `ms`, `us`, `ns`),
/// possibly combined (`1m30s`) and fractional (`1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 15s, 1m30s, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number: f64 = rest[..end].parse().map_err(|_| bad())?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        let table = [("15s", 15_000), ("500ms", 500), ("1m30s", 90_000), ("1.5s", 1_500), ("2h", 7_200_000), ("0", 0)];
        for (text, ms) in table {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for text in ["", "15", "s", "15x", "-1s", "1..5s"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn flags_default_to_kube_schedulers_and_bad_ones_are_explained() {
        let f = Flags::try_parse_from(["keel-scheduler", "--kubeconfig", "k"]).expect("defaults");
        assert_eq!((f.secure_port, f.leader_elect, f.leader_elect_lease_duration), (10259, true, Duration::from_secs(15)));
        let l = f.leader("me");
        assert_eq!(
            (l.namespace.as_str(), l.name.as_str(), l.renew_deadline, l.retry_period),
            ("kube-system", "kube-scheduler", Duration::from_secs(10), Duration::from_secs(2))
        );
        assert!(f.config().is_ok());
        let f =
            Flags::try_parse_from(["keel-scheduler", "--kubeconfig", "k", "--leader-elect-resource-lock", "endpoints"]).expect("parses");
        assert!(f.config().is_err_and(|e| e.to_string().contains("only \"leases\"")));
        let e = Flags::try_parse_from(["keel-scheduler", "--kubeconfig", "k", "--leader-elect-lease-duration", "soon"])
            .expect_err("bad duration");
        assert!(e.to_string().contains("invalid duration \"soon\""), "{e}");
        let e = Flags::try_parse_from(["keel-scheduler", "--kubeconfig", "k", "--scoring-strategy", "Random"]).expect_err("bad strategy");
        assert!(e.to_string().contains("not a scoring strategy"), "{e}");
        assert!(Flags::try_parse_from(["keel-scheduler"]).is_err(), "--kubeconfig is required");
        let f = Flags::try_parse_from(["keel-scheduler", "--kubeconfig", "k", "--leader-elect=false"]).expect("parses");
        assert!(!f.leader_elect);
    }
}
