//! Every flag of `etcd --help` in etcd 3.4 and 3.5, so Keel accepts what etcd accepts.
//!
//! [`ETCD_FLAGS`] is the union of the flags the `etcd` server binary registers on its
//! flag set in every release v3.4.0..=v3.4.45 and v3.5.0..=v3.5.33 (119 entries:
//! 29 `Bool`, 90 `Value`). That includes the few flags the binary accepts but
//! `--help` does not describe in some or all releases (`config-file`, `version`,
//! `log-output`, `enable-grpc-gateway`, `unsafe-no-fsync`,
//! `experimental-snapshot-catchup-entries`, ...), plus `help` and `h`, which Go's `flag`
//! package answers itself. Flags that exist only in some releases are still listed; the
//! comment on each entry says where it exists (`3.4` = every 3.4.x, `3.4.10+` = from
//! 3.4.10 on, likewise for 3.5).
//!
//! Sources:
//! - 3.4: `etcdmain/config.go` (flag registration) and `etcdmain/help.go` (the text
//!   `--help` prints) at every `v3.4.*` tag of github.com/etcd-io/etcd; cross-checked
//!   against the Debian `etcd-server` 3.4.23 binary, whose `etcd --help` output matches
//!   `help.go` at v3.4.23 and which accepts / rejects every name here exactly as the
//!   source says (probed with `etcd --version --<flag>`).
//! - 3.5: `server/etcdmain/config.go` and `server/etcdmain/help.go` at every `v3.5.*` tag.
//!
//! Kinds: Go's `flag.Bool`/`BoolVar` (and `IgnoredFlag`, which has `IsBoolFlag`) are
//! [`FlagKind::Bool`]; everything else (strings, ints, uints, durations, URL lists,
//! `flags.NewUniqueStringsValue`, `SelectiveStringValue`, ...) is [`FlagKind::Value`].
//! No flag changed kind between any two releases.
//!
//! Defaults are the text `etcd --help` prints after the flag, without the surrounding
//! quotes, taken from 3.5 when the flag is in 3.5's help and from 3.4 otherwise. Only
//! `logger` (3.4: `capnslog`) and `pre-vote` (3.4: `false`) differ between the two.
//! Where `--help` prints nothing, the default is `""` and the entry's comment gives the
//! real default from the source.
//!
//! Parsing rules of Go's `flag` package that etcd inherits: `-flag` and `--flag` are the
//! same; a `Bool` flag takes its value only as `--flag=value` (`1 0 t f T F true false
//! TRUE FALSE True False`), never from the next argument; a `Value` flag takes
//! `--flag=value` or `--flag value`. Parsing stops at the first non-flag argument (or
//! after `--`); any argument left over makes etcd fail with "'x' is not a valid flag".
//! Every flag can also be set through the environment as `ETCD_<NAME>` (upper case,
//! `-` -> `_`).

/// How a flag takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagKind {
    /// `--flag`, `--flag=true|false`; may repeat.
    Bool,
    /// `--flag value` or `--flag=value`.
    Value,
}

/// One etcd flag.
#[derive(Clone, Copy, Debug)]
pub struct EtcdFlag {
    /// Name without dashes, e.g. `listen-client-urls`.
    pub name: &'static str,
    pub kind: FlagKind,
    /// etcd's default as `etcd --help` prints it ("" when none).
    pub default: &'static str,
}

const fn flag(name: &'static str, kind: FlagKind, default: &'static str) -> EtcdFlag {
    EtcdFlag { name, kind, default }
}

use FlagKind::{Bool, Value};

/// Sorted by name.
pub const ETCD_FLAGS: &[EtcdFlag] = &[
    // 3.4, 3.5
    flag("advertise-client-urls", Value, "http://localhost:2379"),
    // 3.4, 3.5
    flag("auth-token", Value, "simple"),
    // 3.4.10+, 3.5
    flag("auth-token-ttl", Value, "300"),
    // 3.4, 3.5
    flag("auto-compaction-mode", Value, "periodic"),
    // 3.4, 3.5
    flag("auto-compaction-retention", Value, "0"),
    // 3.4, 3.5
    flag("auto-tls", Bool, "false"),
    // 3.4, 3.5; --help prints ''; 0 means the backend default (100ms)
    flag("backend-batch-interval", Value, ""),
    // 3.4, 3.5
    flag("backend-batch-limit", Value, "0"),
    // 3.5
    flag("backend-bbolt-freelist-type", Value, "map"),
    // 3.4, 3.5
    flag("bcrypt-cost", Value, "10"),
    // 3.4, 3.5
    flag("cert-file", Value, ""),
    // 3.4, 3.5
    flag("cipher-suites", Value, ""),
    // 3.4, 3.5
    flag("client-cert-allowed-hostname", Value, ""),
    // 3.4, 3.5
    flag("client-cert-auth", Bool, "false"),
    // 3.5; in --help only in 3.5.12+
    flag("client-cert-file", Value, ""),
    // 3.4, 3.5
    flag("client-crl-file", Value, ""),
    // 3.5; in --help only in 3.5.12+
    flag("client-key-file", Value, ""),
    // 3.4, 3.5; not listed with a default in --help (only in the usage lines)
    flag("config-file", Value, ""),
    // 3.4, 3.5
    flag("cors", Value, "*"),
    // 3.4, 3.5; printed literally; `${name}` is the member name
    flag("data-dir", Value, "${name}.etcd"),
    // 3.4
    flag("debug", Bool, "false"),
    // 3.4, 3.5
    flag("discovery", Value, ""),
    // 3.4, 3.5
    flag("discovery-fallback", Value, "proxy"),
    // 3.4, 3.5
    flag("discovery-proxy", Value, ""),
    // 3.4, 3.5
    flag("discovery-srv", Value, ""),
    // 3.4, 3.5
    flag("discovery-srv-name", Value, ""),
    // 3.4, 3.5
    flag("election-timeout", Value, "1000"),
    // 3.4, 3.5; in --help only in 3.4.29+, 3.5.12+; --help prints no default; source default true
    flag("enable-grpc-gateway", Bool, ""),
    // 3.5
    flag("enable-log-rotation", Bool, "false"),
    // 3.4, 3.5
    flag("enable-pprof", Bool, "false"),
    // 3.4, 3.5
    flag("enable-v2", Bool, "false"),
    // 3.4
    flag("experimental-backend-bbolt-freelist-type", Value, "array"),
    // 3.5; --help prints no default; source default 0
    flag("experimental-bootstrap-defrag-threshold-megabytes", Value, ""),
    // 3.5.5+; in --help only in 3.5.10+
    flag("experimental-compact-hash-check-enabled", Bool, "false"),
    // 3.5.5+; in --help only in 3.5.10+
    flag("experimental-compact-hash-check-time", Value, "1m"),
    // 3.4, 3.5
    flag("experimental-compaction-batch-limit", Value, "1000"),
    // 3.5.16+
    flag("experimental-compaction-sleep-interval", Value, "10ms"),
    // 3.4, 3.5
    flag("experimental-corrupt-check-time", Value, "0s"),
    // 3.5
    flag("experimental-distributed-tracing-address", Value, "localhost:4317"),
    // 3.5
    flag("experimental-distributed-tracing-instance-id", Value, ""),
    // 3.5.11+
    flag("experimental-distributed-tracing-sampling-rate", Value, "0"),
    // 3.5
    flag("experimental-distributed-tracing-service-name", Value, "etcd"),
    // 3.5; in --help only in 3.5.12+; --help prints no default; source default 5s
    flag("experimental-downgrade-check-time", Value, ""),
    // 3.5
    flag("experimental-enable-distributed-tracing", Bool, "false"),
    // 3.4, 3.5
    flag("experimental-enable-lease-checkpoint", Bool, "false"),
    // 3.4.20+, 3.5.2+; in --help only in 3.4.29+, 3.5.12+
    flag("experimental-enable-lease-checkpoint-persist", Bool, "false"),
    // 3.4, 3.5
    flag("experimental-enable-v2v3", Value, ""),
    // 3.4, 3.5
    flag("experimental-initial-corrupt-check", Bool, "false"),
    // 3.5; in --help only in 3.5.12+; --help prints no default; source default false
    flag("experimental-memory-mlock", Bool, ""),
    // 3.4, 3.5
    flag("experimental-peer-skip-client-san-verification", Bool, "false"),
    // 3.5.14+; not in --help; source default 5000
    flag("experimental-snapshot-catchup-entries", Value, ""),
    // 3.5.14+; --help prints no default; source default false
    flag("experimental-stop-grpc-service-on-defrag", Bool, ""),
    // 3.5
    flag("experimental-txn-mode-write-with-shared-buffer", Bool, "true"),
    // 3.4.16+, 3.5
    flag("experimental-warning-apply-duration", Value, "100ms"),
    // 3.4.11+, 3.5
    flag("experimental-watch-progress-notify-interval", Value, "10m"),
    // 3.4, 3.5
    flag("force-new-cluster", Bool, "false"),
    // 3.4, 3.5
    flag("grpc-keepalive-interval", Value, "2h"),
    // 3.4, 3.5
    flag("grpc-keepalive-min-time", Value, "5s"),
    // 3.4, 3.5
    flag("grpc-keepalive-timeout", Value, "20s"),
    // `-h` / `--h`: same as `help`, listed as `etcd -h | --help` in the usage lines
    flag("h", Bool, ""),
    // 3.4, 3.5
    flag("heartbeat-interval", Value, "100"),
    // handled by Go's flag package (prints help, exits 0); also `h`
    flag("help", Bool, ""),
    // 3.4, 3.5
    flag("host-whitelist", Value, "*"),
    // 3.4, 3.5
    flag("initial-advertise-peer-urls", Value, "http://localhost:2380"),
    // 3.4, 3.5
    flag("initial-cluster", Value, "default=http://localhost:2380"),
    // 3.4, 3.5
    flag("initial-cluster-state", Value, "new"),
    // 3.4, 3.5
    flag("initial-cluster-token", Value, "etcd-cluster"),
    // 3.4, 3.5
    flag("initial-election-tick-advance", Bool, "true"),
    // 3.4, 3.5
    flag("key-file", Value, ""),
    // 3.4.25+, 3.5.8+
    flag("listen-client-http-urls", Value, ""),
    // 3.4, 3.5
    flag("listen-client-urls", Value, "http://localhost:2379"),
    // 3.4, 3.5
    flag("listen-metrics-urls", Value, ""),
    // 3.4, 3.5
    flag("listen-peer-urls", Value, "http://localhost:2380"),
    // 3.4, 3.5
    flag("log-level", Value, "info"),
    // 3.4; deprecated alias of log-outputs; not in --help; source default "default"
    flag("log-output", Value, ""),
    // 3.4, 3.5
    flag("log-outputs", Value, "default"),
    // 3.4
    flag("log-package-levels", Value, ""),
    // 3.5
    flag(
        "log-rotation-config-json",
        Value,
        "{\"maxsize\": 100, \"maxage\": 0, \"maxbackups\": 0, \"localtime\": false, \"compress\": false}",
    ),
    // 3.4, 3.5; --help default differs: 'capnslog' in 3.4, 'zap' in 3.5
    flag("logger", Value, "zap"),
    // 3.4.20+, 3.5.5+; printed literally; value is 4294967295
    flag("max-concurrent-streams", Value, "math.MaxUint32"),
    // 3.4, 3.5
    flag("max-request-bytes", Value, "1572864"),
    // 3.4, 3.5
    flag("max-snapshots", Value, "5"),
    // 3.4, 3.5
    flag("max-txn-ops", Value, "128"),
    // 3.4, 3.5
    flag("max-wals", Value, "5"),
    // 3.4, 3.5
    flag("metrics", Value, "basic"),
    // 3.4, 3.5
    flag("name", Value, "default"),
    // 3.4.31+
    flag("next-cluster-version-compatible", Bool, "false"),
    // 3.4, 3.5
    flag("peer-auto-tls", Bool, "false"),
    // 3.4, 3.5
    flag("peer-cert-allowed-cn", Value, ""),
    // 3.4, 3.5
    flag("peer-cert-allowed-hostname", Value, ""),
    // 3.4, 3.5
    flag("peer-cert-file", Value, ""),
    // 3.4, 3.5
    flag("peer-client-cert-auth", Bool, "false"),
    // 3.5; in --help only in 3.5.12+
    flag("peer-client-cert-file", Value, ""),
    // 3.5; in --help only in 3.5.12+
    flag("peer-client-key-file", Value, ""),
    // 3.4, 3.5
    flag("peer-crl-file", Value, ""),
    // 3.4, 3.5
    flag("peer-key-file", Value, ""),
    // 3.4, 3.5
    flag("peer-trusted-ca-file", Value, ""),
    // 3.4, 3.5; --help default differs: 'false' in 3.4, 'true' in 3.5
    flag("pre-vote", Bool, "true"),
    // 3.4, 3.5
    flag("proxy", Value, "off"),
    // 3.4, 3.5
    flag("proxy-dial-timeout", Value, "1000"),
    // 3.4, 3.5
    flag("proxy-failure-wait", Value, "5000"),
    // 3.4, 3.5
    flag("proxy-read-timeout", Value, "0"),
    // 3.4, 3.5
    flag("proxy-refresh-interval", Value, "30000"),
    // 3.4, 3.5
    flag("proxy-write-timeout", Value, "5000"),
    // 3.4, 3.5
    flag("quota-backend-bytes", Value, "0"),
    // 3.5; in --help only in 3.5.12+
    flag("raft-read-timeout", Value, "5s"),
    // 3.5; in --help only in 3.5.12+
    flag("raft-write-timeout", Value, "5s"),
    // 3.5
    flag("self-signed-cert-validity", Value, "1"),
    // 3.4, 3.5
    flag("snapshot-count", Value, "100000"),
    // 3.5
    flag("socket-reuse-address", Bool, "false"),
    // 3.5
    flag("socket-reuse-port", Bool, "false"),
    // 3.4, 3.5
    flag("strict-reconfig-check", Bool, "true"),
    // 3.4.25+, 3.5.8+
    flag("tls-max-version", Value, ""),
    // 3.4.25+, 3.5.8+
    flag("tls-min-version", Value, "TLS1.2"),
    // 3.4, 3.5
    flag("trusted-ca-file", Value, ""),
    // 3.4.10+, 3.5; in --help only in 3.4.29+, 3.5
    flag("unsafe-no-fsync", Bool, "false"),
    // 3.5
    flag("v2-deprecation", Value, "not-yet"),
    // 3.4, 3.5; not listed with a default in --help (only in the usage lines); source default false
    flag("version", Bool, ""),
    // 3.4, 3.5
    flag("wal-dir", Value, ""),
];

/// Long-gone flags that etcd 3.4 and 3.5 still accept and ignore with a warning
/// (`flags.IgnoredFlag`, a boolean-style flag: `--snapshot` or `--snapshot=x`, never
/// taking the next argument). They are not in `--help` and not in [`ETCD_FLAGS`];
/// the `test.*` two exist for etcd's coverage builds. Sorted.
pub const ETCD_IGNORED_FLAGS: &[&str] = &[
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-election-timeout",
    "peer-heartbeat-interval",
    "retry-interval",
    "snapshot",
    "test.coverprofile",
    "test.outputdir",
    "v",
    "vv",
];

/// Looks a flag up by name (without dashes).
pub fn lookup(name: &str) -> Option<&'static EtcdFlag> {
    ETCD_FLAGS.binary_search_by(|f| f.name.cmp(name)).ok().map(|i| &ETCD_FLAGS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique() {
        for w in ETCD_FLAGS.windows(2) {
            assert!(w[0].name < w[1].name, "{} must sort before {}", w[0].name, w[1].name);
        }
        for w in ETCD_IGNORED_FLAGS.windows(2) {
            assert!(w[0] < w[1], "{} must sort before {}", w[0], w[1]);
        }
    }

    #[test]
    fn names_are_bare() {
        for f in ETCD_FLAGS {
            assert!(!f.name.is_empty() && !f.name.starts_with('-') && !f.name.contains('='), "{}", f.name);
            assert!(lookup(f.name).is_some());
        }
        for n in ETCD_IGNORED_FLAGS {
            assert!(lookup(n).is_none(), "{n} is both a flag and ignored");
        }
    }

    #[test]
    fn bool_defaults_are_bools_or_empty() {
        for f in ETCD_FLAGS.iter().filter(|f| f.kind == FlagKind::Bool) {
            assert!(matches!(f.default, "" | "true" | "false"), "{}: {}", f.name, f.default);
        }
    }

    #[test]
    fn spot_checks() {
        assert_eq!(ETCD_FLAGS.len(), 119);
        assert_eq!(lookup("listen-client-urls").unwrap().kind, FlagKind::Value);
        assert_eq!(lookup("enable-v2").unwrap().kind, FlagKind::Bool);
        assert_eq!(lookup("help").unwrap().kind, FlagKind::Bool);
        assert_eq!(lookup("max-wals").unwrap().default, "5");
        assert!(lookup("no-such-flag").is_none());
    }
}
