//! What a process costs, read from `/proc`: CPU seconds (utime + stime of `/proc/<pid>/stat`,
//! in the kernel's 100 Hz clock ticks), RSS and peak RSS (`VmRSS`, `VmHWM` of
//! `/proc/<pid>/status`), and the machine's load average.
//!
//! Invariants: a process that is gone (or a line of unexpected shape) reads as 0 rather than
//! failing a run that is otherwise measuring; the parsers are pure and tested on real lines.

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// utime + stime in seconds from one `/proc/<pid>/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_seconds(stat: &str) -> f64 {
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / TICKS
}

/// A `/proc/<pid>/status` field (`VmRSS:`, `VmHWM:`) in MiB, rounded to 0.1.
pub fn parse_status_mib(status: &str, field: &str) -> f64 {
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}

/// CPU seconds `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    parse_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// A `/proc/<pid>/status` field of `pid` in MiB.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    parse_status_mib(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default(), field)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_utime_plus_stime_after_the_command_name() {
        let table = [
            ("1234 (keel-apiserver) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 10 0 0", 3.0),
            ("7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0", 0.03),
            ("", 0.0),
        ];
        for (line, want) in table {
            assert!((parse_cpu_seconds(line) - want).abs() < 1e-9, "{line:?}");
        }
    }

    #[test]
    fn status_fields_in_mib() {
        let status = "Name:\tkeel-store\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_status_mib(status, "VmRSS:"), 100.0);
        assert_eq!(parse_status_mib(status, "VmHWM:"), 200.0);
        assert_eq!(parse_status_mib(status, "VmSwap:"), 0.0);
    }
}
