//! Command-line flags and `ETCD_*` variables, parsed the way etcd (Go's `flag` package) parses
//! them, into a [`Config`]. Every flag etcd 3.4/3.5 knows is accepted ([`etcd_flags`]); the ones
//! Keel does not act on are reported once at start-up; unknown flags are refused.

pub mod etcd_flags;
pub mod urls;

use crate::duration;
use crate::tls::TlsFlags;
use etcd_flags::{ETCD_FLAGS, ETCD_IGNORED_FLAGS, FlagKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A flag problem, worded as etcd words it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A flag etcd does not define.
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// A value flag at the end of the arguments.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// A bad value.
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: String,
        /// What was given.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A positional argument.
    #[error("'{0}' is not a valid flag")]
    Positional(String),
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run a member.
    Run(Box<Config>),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// The flags Keel acts on; any other flag that is set has no effect and is named in a warning.
const HONOURED: &[&str] = &[
    "advertise-client-urls",
    "auth-token",
    "auth-token-ttl",
    "auto-tls",
    "bcrypt-cost",
    "cert-file",
    "client-cert-auth",
    "client-crl-file",
    "key-file",
    "peer-auto-tls",
    "peer-cert-allowed-cn",
    "peer-cert-file",
    "peer-client-cert-auth",
    "peer-crl-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "trusted-ca-file",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "data-dir",
    "debug",
    "election-timeout",
    "enable-grpc-gateway",
    "experimental-watch-progress-notify-interval",
    "heartbeat-interval",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "listen-client-urls",
    "listen-metrics-urls",
    "listen-peer-urls",
    "log-level",
    "log-outputs",
    "logger",
    "max-request-bytes",
    "max-txn-ops",
    "name",
    "quota-backend-bytes",
    "snapshot-count",
];

/// How automatic compaction picks its revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Off.
    Off,
    /// Keep history for this long.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// A member's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<urls::Url>,
    /// `--advertise-client-urls`.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`.
    pub listen_peer_urls: Vec<urls::Url>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` as (name, peer URL) pairs.
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-state`.
    pub initial_cluster_state: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes` (0 means etcd's 2 GiB).
    pub quota_backend_bytes: u64,
    /// `--auto-compaction-mode` and `--auto-compaction-retention`.
    pub auto_compaction: AutoCompaction,
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--logger` (`zap` = JSON lines, `capnslog` = text).
    pub logger: String,
    /// `--log-level` (`--debug` means debug).
    pub log_level: String,
    /// `--log-outputs`.
    pub log_outputs: Vec<String>,
    /// `--listen-metrics-urls`.
    pub listen_metrics_urls: Vec<urls::Url>,
    /// `--experimental-watch-progress-notify-interval`.
    pub watch_progress_notify_interval: Duration,
    /// Client-port TLS (`--cert-file`, `--key-file`, `--trusted-ca-file`, …).
    pub client_tls: TlsFlags,
    /// Peer-port TLS (`--peer-cert-file`, …).
    pub peer_tls: TlsFlags,
    /// `--auth-token` as given (`simple` or `jwt,…`).
    pub auth_token: String,
    /// `--auth-token-ttl` (simple tokens).
    pub auth_token_ttl: Duration,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// Flags that were set but have no effect in Keel.
    pub no_effect: Vec<String>,
}

impl Config {
    /// The smallest lease TTL: ceil(1.5 × election timeout) in seconds, as etcd computes it.
    pub fn min_lease_ttl(&self) -> i64 {
        let ms = self.election_timeout.as_millis() as i64 * 3 / 2;
        (ms + 999) / 1000
    }

    /// The space quota in bytes.
    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 { 2 << 30 } else { self.quota_backend_bytes }
    }
}

fn parse_bool(flag: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ConfigError::Invalid { flag: flag.into(), value: v.into(), reason: "parse error".into() }),
    }
}

/// Parse arguments (without the program name) and the environment.
pub fn parse(args: &[String], env: &[(String, String)]) -> Result<(Invocation, Vec<String>), ConfigError> {
    let mut set: BTreeMap<String, String> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(extra) = args.get(i) {
                return Err(ConfigError::Positional(extra.clone()));
            }
            break;
        }
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|s| !s.is_empty()) else {
            return Err(ConfigError::Positional(arg.clone()));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        let Some(flag) = etcd_flags::lookup(name) else {
            if ETCD_IGNORED_FLAGS.contains(&name) {
                warnings.push(format!("flag -{name} is deprecated and ignored"));
                continue;
            }
            return Err(ConfigError::Unknown(name.into()));
        };
        let value = match flag.kind {
            FlagKind::Bool => parse_bool(name, inline.as_deref().unwrap_or("true"))?.to_string(),
            FlagKind::Value => match inline {
                Some(v) => v,
                None => {
                    let v = args.get(i).ok_or_else(|| ConfigError::MissingValue(name.into()))?;
                    i += 1;
                    v.clone()
                }
            },
        };
        set.insert(name.to_string(), value);
    }
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("ETCD_") else { continue };
        let name = rest.to_ascii_lowercase().replace('_', "-");
        let Some(flag) = ETCD_FLAGS.iter().find(|f| f.name == name) else { continue };
        if set.contains_key(&name) {
            warnings.push(format!("environment variable {k} is shadowed by the command-line flag -{name}"));
            continue;
        }
        let value = if flag.kind == FlagKind::Bool { parse_bool(&name, v)?.to_string() } else { v.clone() };
        set.insert(name, value);
    }
    if set.get("help").or(set.get("h")).is_some_and(|v| v == "true") {
        return Ok((Invocation::Help, warnings));
    }
    if set.get("version").is_some_and(|v| v == "true") {
        return Ok((Invocation::Version, warnings));
    }
    Ok((Invocation::Run(Box::new(build(&set)?)), warnings))
}

fn number<T: std::str::FromStr>(set: &BTreeMap<String, String>, name: &str, default: T) -> Result<T, ConfigError> {
    match set.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::Invalid { flag: name.into(), value: v.clone(), reason: "not a number".into() }),
    }
}

fn build(set: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let get = |n: &str, d: &str| set.get(n).cloned().unwrap_or_else(|| d.to_string());
    let list = |n: &str, d: &str| get(n, d).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
    let url_list = |n: &str, d: &str| -> Result<Vec<urls::Url>, ConfigError> {
        list(n, d)
            .iter()
            .map(|u| urls::Url::parse(u).map_err(|reason| ConfigError::Invalid { flag: n.into(), value: u.clone(), reason }))
            .collect()
    };
    let name = get("name", "default");
    let advertise_peer = list("initial-advertise-peer-urls", "http://localhost:2380");
    for u in &advertise_peer {
        urls::Url::parse(u).map_err(|reason| ConfigError::Invalid {
            flag: "initial-advertise-peer-urls".into(),
            value: u.clone(),
            reason,
        })?;
    }
    let initial_cluster_text = match set.get("initial-cluster") {
        Some(v) => v.clone(),
        None => advertise_peer.iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(","),
    };
    let mut initial_cluster = Vec::new();
    for part in initial_cluster_text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((n, u)) = part.split_once('=') else {
            return Err(ConfigError::Invalid { flag: "initial-cluster".into(), value: part.into(), reason: "expected name=url".into() });
        };
        urls::Url::parse(u).map_err(|reason| ConfigError::Invalid { flag: "initial-cluster".into(), value: u.into(), reason })?;
        initial_cluster.push((n.to_string(), u.to_string()));
    }
    let state = get("initial-cluster-state", "new");
    if state != "new" && state != "existing" {
        return Err(ConfigError::Invalid { flag: "initial-cluster-state".into(), value: state, reason: "must be new or existing".into() });
    }
    let mode = get("auto-compaction-mode", "periodic");
    let retention = get("auto-compaction-retention", "0");
    let bad_retention =
        |reason: &str| ConfigError::Invalid { flag: "auto-compaction-retention".into(), value: retention.clone(), reason: reason.into() };
    let auto_compaction = match mode.as_str() {
        "periodic" => {
            // A bare number means hours, as in etcd.
            let d = match retention.parse::<u64>() {
                Ok(h) => Duration::from_secs(h * 3600),
                Err(_) => duration::parse(&retention).map_err(|e| bad_retention(&e))?,
            };
            if d.is_zero() { AutoCompaction::Off } else { AutoCompaction::Periodic(d) }
        }
        "revision" => match retention.parse::<i64>() {
            Ok(0) => AutoCompaction::Off,
            Ok(n) if n > 0 => AutoCompaction::Revision(n),
            _ => return Err(bad_retention("expected a revision count")),
        },
        _ => {
            return Err(ConfigError::Invalid {
                flag: "auto-compaction-mode".into(),
                value: mode,
                reason: "must be periodic or revision".into(),
            });
        }
    };
    let progress = match set.get("experimental-watch-progress-notify-interval") {
        Some(v) => duration::parse(v).map_err(|reason| ConfigError::Invalid {
            flag: "experimental-watch-progress-notify-interval".into(),
            value: v.clone(),
            reason,
        })?,
        None => Duration::from_secs(600),
    };
    let heartbeat_ms: u64 = number(set, "heartbeat-interval", 100)?;
    let election_ms: u64 = number(set, "election-timeout", 1000)?;
    if heartbeat_ms == 0 || election_ms < 5 * heartbeat_ms {
        return Err(ConfigError::Invalid {
            flag: "election-timeout".into(),
            value: election_ms.to_string(),
            reason: format!("must be at least 5 times --heartbeat-interval ({heartbeat_ms} ms)"),
        });
    }
    let mut log_level = get("log-level", "info");
    if set.get("debug").is_some_and(|v| v == "true") {
        log_level = "debug".into();
    }
    let path = |n: &str| set.get(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    let flag = |n: &str| set.get(n).is_some_and(|v| v == "true");
    let client_tls = TlsFlags {
        cert_file: path("cert-file"),
        key_file: path("key-file"),
        trusted_ca_file: path("trusted-ca-file"),
        client_cert_auth: flag("client-cert-auth"),
        crl_file: path("client-crl-file"),
        auto_tls: flag("auto-tls"),
        allowed_cn: None,
    };
    let peer_tls = TlsFlags {
        cert_file: path("peer-cert-file"),
        key_file: path("peer-key-file"),
        trusted_ca_file: path("peer-trusted-ca-file"),
        client_cert_auth: flag("peer-client-cert-auth"),
        crl_file: path("peer-crl-file"),
        auto_tls: flag("peer-auto-tls"),
        allowed_cn: set.get("peer-cert-allowed-cn").filter(|v| !v.is_empty()).cloned(),
    };
    let auth_token = get("auth-token", "simple");
    crate::auth::tokens::TokenKind::parse(&auth_token).map_err(|reason| ConfigError::Invalid {
        flag: "auth-token".into(),
        value: auth_token.clone(),
        reason,
    })?;
    let bcrypt_cost: u32 = number(set, "bcrypt-cost", 10)?;
    if !(4..=31).contains(&bcrypt_cost) {
        return Err(ConfigError::Invalid { flag: "bcrypt-cost".into(), value: bcrypt_cost.to_string(), reason: "must be 4 to 31".into() });
    }
    let no_effect = set.keys().filter(|k| !HONOURED.contains(&k.as_str())).cloned().collect();
    Ok(Config {
        data_dir: PathBuf::from(get("data-dir", &format!("{name}.etcd"))),
        listen_client_urls: url_list("listen-client-urls", "http://localhost:2379")?,
        advertise_client_urls: list("advertise-client-urls", "http://localhost:2379"),
        listen_peer_urls: url_list("listen-peer-urls", "http://localhost:2380")?,
        initial_advertise_peer_urls: advertise_peer,
        initial_cluster,
        initial_cluster_state: state,
        initial_cluster_token: get("initial-cluster-token", "etcd-cluster"),
        max_request_bytes: number(set, "max-request-bytes", 1_572_864)?,
        max_txn_ops: number(set, "max-txn-ops", 128)?,
        quota_backend_bytes: number(set, "quota-backend-bytes", 0)?,
        auto_compaction,
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout: Duration::from_millis(election_ms),
        snapshot_count: number(set, "snapshot-count", 100_000)?,
        logger: get("logger", "zap"),
        log_level,
        log_outputs: list("log-outputs", "default"),
        listen_metrics_urls: url_list("listen-metrics-urls", "")?,
        watch_progress_notify_interval: progress,
        client_tls,
        peer_tls,
        auth_token,
        auth_token_ttl: Duration::from_secs(number(set, "auth-token-ttl", 300)?),
        bcrypt_cost,
        no_effect,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<_> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match parse(&args(s), &env)?.0 {
            Invocation::Run(c) => Ok(*c),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_are_etcds() {
        let c = run("", &[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls[0].addr.to_string(), "127.0.0.1:2379");
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.min_lease_ttl(), 2);
        assert_eq!(c.initial_cluster, vec![("default".to_string(), "http://localhost:2380".to_string())]);
    }

    #[test]
    fn go_flag_syntax() {
        let c = run("-name m1 --data-dir=/tmp/x --listen-client-urls http://127.0.0.2:2379,http://localhost:12379 --max-txn-ops=5", &[])
            .unwrap();
        assert_eq!(c.name, "m1");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.listen_client_urls.len(), 2);
        assert_eq!(c.max_txn_ops, 5);
        let c = run("--client-cert-auth --client-cert-auth --strict-reconfig-check=false", &[]).unwrap();
        assert!(c.client_tls.client_cert_auth);
        assert_eq!(c.no_effect, vec!["strict-reconfig-check".to_string()]);
        let c = run("--peer-auto-tls --peer-cert-allowed-cn m --auth-token-ttl 7 --trusted-ca-file /ca.pem", &[]).unwrap();
        assert!(c.peer_tls.auto_tls && !c.client_tls.auto_tls);
        assert_eq!(c.peer_tls.allowed_cn.as_deref(), Some("m"));
        assert_eq!(c.client_tls.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.auth_token_ttl, Duration::from_secs(7));
        assert!(matches!(run("--auth-token bogus", &[]), Err(ConfigError::Invalid { .. })));
        assert!(matches!(run("--bcrypt-cost 2", &[]), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn unknown_and_malformed_flags_are_refused() {
        assert_eq!(run("--no-such-flag", &[]).unwrap_err(), ConfigError::Unknown("no-such-flag".into()));
        assert_eq!(run("--name", &[]).unwrap_err(), ConfigError::MissingValue("name".into()));
        assert!(matches!(run("--client-cert-auth=maybe", &[]), Err(ConfigError::Invalid { .. })));
        assert_eq!(run("stray", &[]).unwrap_err(), ConfigError::Positional("stray".into()));
        assert!(matches!(run("--max-txn-ops lots", &[]), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn environment_fills_what_flags_do_not_set() {
        let c = run("--name flag", &[("ETCD_NAME", "env"), ("ETCD_MAX_TXN_OPS", "7"), ("ETCD_UNHEARD_OF", "x")]).unwrap();
        assert_eq!(c.name, "flag");
        assert_eq!(c.max_txn_ops, 7);
    }

    #[test]
    fn auto_compaction_modes() {
        assert_eq!(run("--auto-compaction-retention 1", &[]).unwrap().auto_compaction, AutoCompaction::Periodic(Duration::from_secs(3600)));
        assert_eq!(
            run("--auto-compaction-retention 30m", &[]).unwrap().auto_compaction,
            AutoCompaction::Periodic(Duration::from_secs(1800))
        );
        assert_eq!(
            run("--auto-compaction-mode revision --auto-compaction-retention 100", &[]).unwrap().auto_compaction,
            AutoCompaction::Revision(100)
        );
    }
}
